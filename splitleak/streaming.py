"""Activations within a memory budget: how `evaluate` holds the test images' activations.

`EvalConfig.activation_memory` (bytes) bounds the activation tensors evaluate holds at once.
`ActivationPlan` decides, from the activation shape and the image counts:

* whether the scored release (and, for an adaptive attacker, its estimate: a second tensor of
  the same size) of all scored images fits. Then evaluate runs as it always has: one release of
  every image from the "evaluate/activations" stream, held whole.
* Otherwise evaluate **streams**: the images are cut into chunks of `chunk` images (as many as
  fit), and chunk k's release (then the adaptive estimate's other releases) is drawn from its own
  stream "evaluate/activations/chunk/<k>" every time it is needed, so it is the same release for
  every attack. Nothing else holds the whole set of activations.
* dCor(x, z) uses at most `dcor_images` images: as many as fit with `dcor_statistics`' float64
  working copy (12 bytes per activation value: the float32 activations and their float64 copy).
* Attacks that fit on the observed activations (`Access.observed`: sdar, fora) get those of the
  first chunk when streaming (`observed_images`).
* Forward passes of the client take 1,024 images, or, when streaming, as many as keep their
  activations within an eighth of the budget (`batch`).

`Releases` computes a chunk's release, logits and estimate on demand.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from splitleak._random import drawing_from, generator
from splitleak._validate import all_finite
from splitleak.adaptive import Adaptive
from splitleak.errors import NumericalError
from splitleak.memory import DEFAULT_ACTIVATION_MEMORY

__all__ = ["DEFAULT_ACTIVATION_MEMORY", "ActivationPlan", "Releases", "client_outputs", "finite", "observed", "rows_within"]

ACTIVATION_BYTES = 4  # float32 activations
DCOR_BYTES = ACTIVATION_BYTES + 8  # dcor_statistics holds a float64 copy beside them
FORWARD_BATCH = 1024  # images per forward pass of the client, at most
FORWARD_SHARE = 8  # one forward pass's output takes at most this fraction of the budget


def rows_within(budget: int, row_bytes: int) -> int:
    """How many rows of `row_bytes` fit in `budget` bytes (0 when not even one)."""
    return budget // max(row_bytes, 1)


@dataclass(frozen=True)
class ActivationPlan:
    """How one evaluation holds activations of `activation_shape` within `budget` bytes.

    `scored`: test images attacked and scored; `dcor_asked`: images asked for dCor(x, z);
    `copies`: full-size activation tensors per image (2 with an adaptive estimate, else 1).
    """

    budget: int
    activation_shape: tuple[int, ...]
    scored: int
    dcor_asked: int
    copies: int = 1

    @property
    def values(self) -> int:
        """Activation values per image."""
        return math.prod(self.activation_shape)

    @property
    def streamed(self) -> bool:
        """True when the scored activations do not fit the budget whole."""
        return self.scored * self.copies * self.values * ACTIVATION_BYTES > self.budget

    @property
    def chunk(self) -> int:
        """Images per chunk: all of them when nothing is streamed, else as many as fit (at least 1)."""
        if not self.streamed:
            return self.scored
        return max(1, rows_within(self.budget, self.copies * self.values * ACTIVATION_BYTES))

    @property
    def dcor_images(self) -> int:
        """Images dCor(x, z) uses: those asked for, at most as many as fit with dCor's float64 copy."""
        return min(self.dcor_asked, rows_within(self.budget, self.values * DCOR_BYTES))

    @property
    def batch(self) -> int:
        """Images per forward pass of the client: 1,024 (as always when nothing is streamed: the
        batch changes the head's logits in the last bits), fewer when streaming and their
        activations would take more than an eighth of the budget (a forward pass's intermediate
        tensors are a few times its output: at resnet18's layer1, 1,024 images' are about 1 GB)."""
        if not self.streamed:
            return FORWARD_BATCH
        return max(1, min(FORWARD_BATCH, rows_within(self.budget // FORWARD_SHARE, self.values * ACTIVATION_BYTES)))

    @property
    def observed_images(self) -> int:
        """Observed activations an attack may fit on (`Access.observed`): the first chunk's."""
        return self.chunk

    def spans(self) -> list[slice]:
        """The chunks' rows, in order."""
        return [slice(i, min(i + self.chunk, self.scored)) for i in range(0, self.scored, self.chunk)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "activation_memory": self.budget,
            "activation_shape": list(self.activation_shape),
            "streamed": self.streamed,
            "chunk_images": self.chunk,
            "scored_images": self.scored,
            "observed_images": self.observed_images,
            "forward_batch": self.batch,
            "dcor_images": self.dcor_images,
            "dcor_images_asked": self.dcor_asked,
        }


def finite(z: Tensor) -> Tensor:
    """`z`, refused when the encoder produced NaN or infinite activations."""
    if not all_finite(z):
        raise NumericalError("the encoder produced NaN or infinite activations on the test set")
    return z


@torch.no_grad()
def client_outputs(model: nn.Module, x: Tensor, device: str, batch: int = FORWARD_BATCH) -> tuple[Tensor, Tensor]:
    """(activations, logits) of `model` (a SplitModel in eval mode) on `x`, in batches, on the CPU.
    Written into preallocated tensors: no second copy of the activations is made."""
    zs: Tensor | None = None
    logits: Tensor | None = None
    for i in range(0, len(x), batch):
        out, z = model(x[i : i + batch].to(device))
        if zs is None or logits is None:
            zs = torch.empty((len(x), *z.shape[1:]), dtype=z.dtype)
            logits = torch.empty((len(x), *out.shape[1:]), dtype=out.dtype)
        zs[i : i + batch] = z.cpu()
        logits[i : i + batch] = out.cpu()
    assert zs is not None and logits is not None, "no images"
    return finite(zs), logits


def observed(model: nn.Module, adaptive: Adaptive | None, x: Tensor, first: Tensor, device: str) -> Tensor:
    """What the attacker observes of `x` whose scored release is `first`: that release, or the
    adaptive attacker's estimate over `adaptive.releases` releases (`first` the first of them)."""
    if adaptive is None:
        return first
    client: Callable[[Tensor], Tensor] = model.client  # type: ignore[assignment]
    return finite(adaptive.observe(client, x, first=first, device=device))


class Releases:
    """The test images' releases chunk by chunk (a streamed evaluation), each chunk from its own
    stream "evaluate/activations/chunk/<k>": the same numbers however often it is computed."""

    def __init__(self, model: nn.Module, x: Tensor, plan: ActivationPlan, adaptive: Adaptive | None, *, device: str, seed: int) -> None:
        self.model, self.x, self.plan, self.adaptive, self.device, self.seed = model, x, plan, adaptive, device, seed
        self.spans = plan.spans()

    def _stream(self, k: int) -> torch.Generator:
        return generator(self.seed, "evaluate", "activations", "chunk", str(k))

    def logits(self) -> Tensor:
        """The head's logits on every scored image (each chunk's scored release, then dropped)."""
        return torch.cat([self._scored(k, self._stream(k))[1] for k in range(len(self.spans))])

    def observed(self, k: int) -> Tensor:
        """Chunk k's observation: its scored release, or the adaptive estimate (its further
        releases drawn from the same stream, after the scored one)."""
        stream = self._stream(k)
        z, _ = self._scored(k, stream)
        with drawing_from(self.model, stream):
            return observed(self.model, self.adaptive, self.x[self.spans[k]], z, self.device)

    def _scored(self, k: int, stream: torch.Generator) -> tuple[Tensor, Tensor]:
        model = self.model.to(self.device).eval()
        with drawing_from(model, stream):
            return client_outputs(model, self.x[self.spans[k]], self.device, self.plan.batch)
