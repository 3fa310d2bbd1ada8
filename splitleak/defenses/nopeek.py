"""NoPeek (Vepakomma et al. 2020): penalise distance correlation between inputs and activations."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from splitleak.defenses.base import DEFENSES

from splitleak._validate import finite_number
from splitleak.metrics.dependence import as_rows, distance_correlation


@DEFENSES.register
@dataclass(frozen=True)
class NoPeek:
    """loss = CE + alpha * dCor(x, z) per minibatch (the authors' biased V-statistic, exact).

    Its cost is O(n^2 d) in the activation width d; a sign-sketched approximation was measured
    and trains less private models (BENCHMARKS.md), so the penalty stays exact.
    """

    alpha: float = 1.0
    name: ClassVar[str] = "nopeek"
    label: ClassVar[str] = "NoPeek"
    strength: ClassVar[str | None] = "alpha"
    symbol: ClassVar[str] = "α"
    training_speed: ClassVar[float] = 0.95  # training throughput relative to no defense (sweep estimates; 1.0 measured at cut 2, benchmarks/results/defense_training.md)

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", finite_number("nopeek alpha", self.alpha, minimum=0.0))

    def penalty(self, x: Tensor, z: Tensor) -> Tensor | None:
        return self.alpha * distance_correlation(as_rows(x), as_rows(z))

    def transform(self, generator: torch.Generator | None = None) -> nn.Module | None:
        return None

    def params(self) -> dict[str, Any]:
        return asdict(self)
