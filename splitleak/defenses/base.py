"""The Defense protocol: an optional loss term and an optional activation transform."""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor, nn


class Defense(Protocol):
    """A defense hooks into training (a penalty) and into the client's output (a transform)."""

    name: ClassVar[str]

    def penalty(self, x: Tensor, z: Tensor) -> Tensor | None:
        """Extra loss for a batch of inputs `x` and their activations `z`, or None."""
        ...

    def transform(self, generator: torch.Generator | None = None) -> nn.Module | None:
        """A module applied to activations at training and inference, or None.

        A transform that draws random numbers (noise, a dropout mask) draws them from
        `generator` only -- never from torch's global generator -- and is a
        `splitleak._random.Stochastic`, so `drawing_from` can lend it another stream; without a
        generator it uses its own, seeded 0.
        """
        ...

    def params(self) -> dict[str, Any]:
        """JSON-able parameters that rebuild this defense."""
        ...
