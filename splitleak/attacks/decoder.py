"""Black-box decoder inversion (He, Zhang, Lee, ACSAC 2019: the "inverse network").

The attacker queries the client with its own auxiliary images, collects (activation, image)
pairs and trains a convolutional decoder z -> x with an l2 loss; the decoder's shape is
derived from the activation shape. It then decodes the activations it observes.

Memory: the auxiliary images' activations are queried once and held when they fit
`Access.activation_memory` (evaluate's `activation_memory`), else queried batch by batch in
every epoch (one more pass of the client per epoch; under a defense that draws, each epoch then
sees fresh draws instead of one fixed release of each auxiliary image).

Randomness: the decoder's weights and the batch order come from the "init" and "order" streams
of `access.seed` (splitleak.attacks._optim.attack_generator), new on every `fit`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from splitleak._random import build
from splitleak.attacks._optim import attack_generator
from splitleak.attacks.base import ATTACKS, Access, AttackConfig, ThreatModel, WorkSize
from splitleak.data import InputSpec
from splitleak.errors import InputError
from splitleak.progress import ProgressFactory, silent


@dataclass(frozen=True)
class DecoderConfig(AttackConfig):
    """Budget and hyper-parameters of the decoder attack."""

    what: ClassVar[str] = "decoder"
    budget_fields: ClassVar[tuple[str, ...]] = ("epochs",)

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    width: int = 32


def _conv_block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]


class Decoder(nn.Module):
    """Maps activations of `z_shape` to images of `spec.shape` in `spec.value_range`."""

    def __init__(self, z_shape: tuple[int, ...], spec: InputSpec, width: int = 32) -> None:
        super().__init__()
        c_out, height, width_px = spec.shape
        self.out_size = (height, width_px)
        self.low, self.high = spec.value_range
        layers: list[nn.Module] = []
        if len(z_shape) == 1:  # a vector: project onto a quarter-resolution feature map
            h0, w0 = math.ceil(height / 4), math.ceil(width_px / 4)
            layers += [nn.Linear(z_shape[0], width * h0 * w0), nn.ReLU(), nn.Unflatten(1, (width, h0, w0))]
            channels, h = width, h0
        elif len(z_shape) == 3:
            channels, h = z_shape[0], z_shape[1]
        else:
            raise InputError(f"decoder takes vector or [C, H, W] activations, got shape {z_shape}")
        layers += _conv_block(channels, width)
        for _ in range(max(0, round(math.log2(height / h)))):  # x2 upsampling stages, halving channels
            narrower = max(16, width // 2)
            layers += [nn.ConvTranspose2d(width, narrower, 4, stride=2, padding=1), nn.BatchNorm2d(narrower), nn.ReLU()]
            width = narrower
        layers += _conv_block(width, width // 2)
        layers += [nn.Conv2d(width // 2, c_out, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        if z.dim() == 4:  # NHWC: oneDNN's faster layout for these convolutions (a CPU training step 1.2-1.4x; weights stay NCHW)
            z = z.contiguous(memory_format=torch.channels_last)
        x = self.net(z)
        if tuple(x.shape[-2:]) != self.out_size:
            x = F.interpolate(x, size=self.out_size, mode="bilinear", align_corners=False)
        return (self.low + (self.high - self.low) * torch.sigmoid(x)).contiguous()


class _AuxFeatures:
    """The activations of the auxiliary images, by index: queried once and held when they fit
    `access.activation_memory`, else queried afresh for every batch (memory bound: an
    epoch then costs one more pass of the client over the auxiliary images, and a client that
    draws answers each epoch with fresh draws)."""

    def __init__(self, access: Access, device: str) -> None:
        assert access.query is not None and access.aux is not None
        self.query, self.x, self.device = access.query, access.aux.x, device
        size = len(self.x) * math.prod(access.activation_shape) * 4  # float32
        self.held: Tensor | None = None
        if access.activation_memory is None or size <= access.activation_memory:
            with torch.no_grad():
                self.held = torch.cat([self.query(self.x[i : i + 1024].to(device)).cpu() for i in range(0, len(self.x), 1024)])
        self.shape = tuple(self.held.shape[1:]) if self.held is not None else tuple(access.activation_shape)

    def __call__(self, idx: Tensor) -> Tensor:
        if self.held is not None:
            return self.held[idx].to(self.device)
        with torch.no_grad():
            return self.query(self.x[idx].to(self.device))


IMAGES_PER_SECOND = 1000.0  # fit throughput in image-epochs per second, one core, small-cnn


@ATTACKS.register
class DecoderAttack:
    """He et al.'s black-box inverse network."""

    name: ClassVar[str] = "decoder"
    label: ClassVar[str] = "Decoder"
    reference: ClassVar[str] = "He, Zhang, Lee 2019 (black-box inverse network)"
    config_class: ClassVar[type[DecoderConfig]] = DecoderConfig
    threat_model: ClassVar[ThreatModel] = ThreatModel(
        summary="black-box: queries the client with its own auxiliary data",
        query_access=True,
        aux_data=True,
        min_aux=16,
    )

    @classmethod
    def estimate_seconds(cls, config: DecoderConfig, size: WorkSize) -> float:
        """Rough seconds of one core for fit + reconstruct (sweep --dry-run)."""
        return config.epochs * size.aux / IMAGES_PER_SECOND

    def __init__(self, config: DecoderConfig | None = None, *, progress: ProgressFactory = silent) -> None:
        self.config = config or DecoderConfig()
        self.progress = progress
        self.decoder: Decoder | None = None
        self.device = "cpu"
        self.history: list[float] = []

    def fit(self, access: Access) -> "DecoderAttack":
        """Train the decoder on (query(aux), aux) pairs; a second fit starts over (same result)."""
        self.threat_model.check(self.name, access)
        assert access.query is not None and access.aux is not None
        cfg = self.config
        self.decoder, self.history, self.device = None, [], access.device
        order = attack_generator(access.seed, self.name, "order")
        x_aux = access.aux.x
        features = _AuxFeatures(access, self.device)
        z_shape = features.shape
        decoder = build(lambda: Decoder(z_shape, access.spec, cfg.width), attack_generator(access.seed, self.name, "init")).to(self.device)
        optimiser = torch.optim.Adam(decoder.parameters(), lr=cfg.lr)
        n = len(x_aux)
        history: list[float] = []
        decoder.train()
        with self.progress(total=cfg.epochs * n, desc="decoder attack: fit") as bar:
            for _ in range(cfg.epochs):
                perm = torch.randperm(n, generator=order)
                total = 0.0
                for i in range(0, n, cfg.batch_size):
                    idx = perm[i : i + cfg.batch_size]
                    if len(idx) < 2:  # BatchNorm needs two samples
                        continue
                    z, x = features(idx), x_aux[idx].to(self.device)
                    loss = F.mse_loss(decoder(z), x)
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                    optimiser.step()
                    total += loss.item() * len(idx)
                    bar.update(len(idx))
                history.append(total / n)
                bar.set_postfix(mse=f"{history[-1]:.4f}")
        decoder.eval()
        self.decoder, self.history = decoder, history
        return self

    @torch.no_grad()
    def reconstruct(self, z: Tensor) -> Tensor:
        if self.decoder is None:
            raise RuntimeError("call fit() before reconstruct()")
        return torch.cat([self.decoder(z[i : i + 1024].to(self.device)).cpu() for i in range(0, len(z), 1024)])

    def budget(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self.config), "final_train_mse": self.history[-1] if self.history else None}
