"""No defense: the baseline goes through the same code path as every defense."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from splitleak.defenses.base import DEFENSES


@DEFENSES.register
@dataclass(frozen=True)
class NoDefense:
    """Plain split learning."""

    name: ClassVar[str] = "none"
    label: ClassVar[str] = "no defense"
    strength: ClassVar[str | None] = None
    symbol: ClassVar[str] = ""
    training_speed: ClassVar[float] = 1.0  # training throughput relative to no defense (sweep estimates)

    def penalty(self, x: Tensor, z: Tensor) -> Tensor | None:
        return None

    def transform(self, generator: torch.Generator | None = None) -> nn.Module | None:
        return None

    def params(self) -> dict[str, Any]:
        return asdict(self)
