"""Activation dropout (He, Zhang, Lee 2020): the client zeroes a random fraction of activations.

Unlike `nn.Dropout`, the mask is drawn at inference too: the server (and any attacker) only
ever sees a randomly thinned activation, which is what makes it a privacy defense rather than
a regulariser. Kept entries are scaled by 1 / (1 - rate) so the head sees the same expectation.
Chosen over channel pruning because it adds per-query randomness that a white-box attacker
cannot undo, and it needs nothing beyond the activation-transform hook the noise defense uses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from splitleak._random import Stochastic
from splitleak.defenses.base import DEFENSES
from splitleak._validate import finite_number
from splitleak.errors import InputError


class AlwaysDropout(Stochastic):
    """Inverted dropout with rate `rate`, active in training and evaluation alike, its mask drawn
    from its generator (see splitleak._random.Stochastic)."""

    def __init__(self, rate: float, generator: torch.Generator | None = None) -> None:
        super().__init__(generator)
        self.rate = rate

    def forward(self, z: Tensor) -> Tensor:
        if self.rate == 0:
            return z
        keep = self.rand(z.shape, dtype=torch.float32, device=z.device) >= self.rate  # contiguous draw (see noise.py)
        return z * keep.to(z.dtype) / (1 - self.rate)

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


@DEFENSES.register
@dataclass(frozen=True)
class ActivationDropout:
    """Zero each activation with probability `rate` at training and inference."""

    rate: float = 0.5
    name: ClassVar[str] = "dropout"
    label: ClassVar[str] = "dropout"
    strength: ClassVar[str | None] = "rate"
    symbol: ClassVar[str] = "p"
    training_speed: ClassVar[float] = 0.9  # training throughput relative to no defense (sweep estimates)

    def __post_init__(self) -> None:
        rate = finite_number("dropout rate", self.rate, minimum=0.0)
        if rate >= 1:
            raise InputError(f"dropout rate must be < 1, got {rate}")
        object.__setattr__(self, "rate", rate)

    def penalty(self, x: Tensor, z: Tensor) -> Tensor | None:
        return None

    def transform(self, generator: torch.Generator | None = None) -> nn.Module | None:
        return AlwaysDropout(self.rate, generator)

    def estimate(self, releases: Tensor) -> Tensor:
        """The adaptive attacker's estimate of the clean activation from k releases [k, ...] of it
        (splitleak.adaptive). A kept entry is z / (1 - rate) exactly and a dropped one 0, so any
        non-zero release gives z back: (1 - rate) x the mean of the non-zero releases. An entry
        dropped in all k releases (probability rate^k) is estimated as 0, as is a z of 0."""
        kept = (releases != 0).sum(0)
        return (1 - self.rate) * releases.sum(0) / kept.clamp(min=1)

    def params(self) -> dict[str, Any]:
        return asdict(self)
