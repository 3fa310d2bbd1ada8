"""No defense: the baseline goes through the same code path as every defense."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class NoDefense:
    """Plain split learning."""

    name: ClassVar[str] = "none"

    def penalty(self, x: Tensor, z: Tensor) -> Tensor | None:
        return None

    def transform(self, generator: torch.Generator | None = None) -> nn.Module | None:
        return None

    def params(self) -> dict[str, Any]:
        return asdict(self)
