"""NoPeek (Vepakomma et al. 2020): penalise distance correlation between inputs and activations."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from splitleak._validate import finite_number
from splitleak.metrics.dependence import distance_correlation


@dataclass(frozen=True)
class NoPeek:
    """loss = CE + alpha * dCor(x, z) per minibatch (the authors' biased V-statistic)."""

    alpha: float = 1.0
    name: ClassVar[str] = "nopeek"

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", finite_number("nopeek alpha", self.alpha, minimum=0.0))

    def penalty(self, x: Tensor, z: Tensor) -> Tensor | None:
        return self.alpha * distance_correlation(x.flatten(1), z.flatten(1))

    def transform(self) -> nn.Module | None:
        return None

    def params(self) -> dict[str, Any]:
        return asdict(self)
