"""NoPeek (Vepakomma et al. 2020): penalise distance correlation between inputs and activations."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from splitleak._validate import finite_number
from splitleak.metrics.dependence import as_rows, distance_correlation
from splitleak.metrics.sketch import sign_sketch

@dataclass(frozen=True)
class NoPeek:
    """loss = CE + alpha * dCor(x, z) per minibatch (the authors' biased V-statistic).

    ``sketch`` > 0 (experimental): each side wider than that many columns is folded to it by a
    fresh random sign sketch every step (`splitleak.metrics.sketch`), which keeps pairwise
    distances on average and makes the penalty cost O(n d + n^2 sketch) instead of O(n^2 d).
    It trains less private models at wide cuts (benchmarks/results/nopeek_sketch.md), so the
    default is 0: the exact dCor of the paper.
    """

    alpha: float = 1.0
    sketch: int = 0
    name: ClassVar[str] = "nopeek"

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", finite_number("nopeek alpha", self.alpha, minimum=0.0))
        if isinstance(self.sketch, bool) or not isinstance(self.sketch, int) or self.sketch < 0:
            raise ValueError(f"nopeek sketch must be a whole number >= 0 (0: exact dCor), got {self.sketch!r}")

    def penalty(self, x: Tensor, z: Tensor) -> Tensor | None:
        xf, zf = as_rows(x), as_rows(z)
        if self.sketch:
            xf, zf = sign_sketch(xf, self.sketch), sign_sketch(zf, self.sketch)
        return self.alpha * distance_correlation(xf, zf)

    def transform(self) -> nn.Module | None:
        return None

    def params(self) -> dict[str, Any]:
        return asdict(self)
