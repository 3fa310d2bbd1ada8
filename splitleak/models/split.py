"""SplitModel: the client's encoder, the activation transform a defense adds, and the server's head."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from splitleak.cuts import Cut
from splitleak.data import InputSpec


class SplitModel(nn.Module):
    """encoder (client) -> transform (defense, e.g. noise) -> head (server).

    `client(x)` is exactly what the server receives: the cut-layer activation after the
    defense's transform. Inputs are in `spec.value_range`; normalisation, when the spec has
    one, happens inside the model so attacks work in the input's own range.
    """

    def __init__(
        self,
        encoder: nn.Module,
        head: nn.Module,
        spec: InputSpec,
        *,
        transform: nn.Module | None = None,
        arch: str = "custom",
        cut: Cut = 0,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.transform = transform if transform is not None else nn.Identity()
        self.spec = spec
        self.arch = arch
        self.cut = cut
        mean = spec.mean if spec.mean is not None else (0.0,) * spec.shape[0]
        std = spec.std if spec.std is not None else (1.0,) * spec.shape[0]
        self.register_buffer("_mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def client(self, x: Tensor) -> Tensor:
        """The activation the server sees for inputs `x` [B, C, H, W]."""
        return self.transform(self.encoder((x - self._mean) / self._std))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return (logits, z) with z the server-side activation."""
        z = self.client(x)
        return self.head(z), z

    @torch.no_grad()
    def predict(self, x: Tensor, batch_size: int = 1024) -> Tensor:
        """Logits for `x`, in batches, without gradients (mode left as it is)."""
        return torch.cat([self(x[i : i + batch_size])[0] for i in range(0, len(x), batch_size)])
