"""The Defense protocol: an optional loss term and an optional activation transform."""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from torch import Tensor, nn


class Defense(Protocol):
    """A defense hooks into training (a penalty) and into the client's output (a transform)."""

    name: ClassVar[str]

    def penalty(self, x: Tensor, z: Tensor) -> Tensor | None:
        """Extra loss for a batch of inputs `x` and their activations `z`, or None."""
        ...

    def transform(self) -> nn.Module | None:
        """A module applied to activations at training and inference, or None."""
        ...

    def params(self) -> dict[str, Any]:
        """JSON-able parameters that rebuild this defense."""
        ...
