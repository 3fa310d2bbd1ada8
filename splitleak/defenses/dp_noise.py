"""dp-noise: the Gaussian mechanism on activations (docs/defenses.md#dp-noise).

Each sample's activation, flattened, is clipped to L2 norm <= C, then N(0, s^2) is added to
every coordinate, a fresh draw on every release, at training and at inference. Under
replace-one adjacency (one input x replaced by any other x') the clipped activation moves by at
most 2C in L2, so s = 2C / mu with mu from the analytic Gaussian mechanism (Balle & Wang, ICML
2018) makes each release (epsilon, delta)-DP with respect to the input it encodes: what is
protected is one input per query, against any attacker, whatever it knows. It says nothing of
the training set as a whole, and K releases of one input (one per training epoch, plus any
inference queries) compose to sqrt(K) mu-GDP (`splitleak.dp.epsilon_after`).

Replace-one (not add/remove-one) because a release is a function of one input: there is no
"absent" input to compare with. The accounting is pure Python in `splitleak.dp`, so reports can
state the guarantee without torch. "classic" calibration (Dwork & Roth, Theorem 3.22) is offered
for comparison and refused for epsilon >= 1, where it does not hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from splitleak import dp
from splitleak._config import short_number
from splitleak._validate import finite_number
from splitleak.defenses.base import DEFENSES
from splitleak.defenses.noise import AdditiveNoise
from splitleak.errors import InputError


class L2Clip(nn.Module):
    """Scales each sample (dimension 0) down to L2 norm <= `clip`; shorter ones pass unchanged."""

    def __init__(self, clip: float) -> None:
        super().__init__()
        self.clip = clip

    def forward(self, z: Tensor) -> Tensor:
        norms = torch.linalg.vector_norm(z.reshape(len(z), -1), dim=1)
        factor = (self.clip / norms.clamp(min=1e-12)).clamp(max=1.0)
        return z * factor.view(-1, *([1] * (z.dim() - 1))).to(z.dtype)

    def extra_repr(self) -> str:
        return f"clip={self.clip}"


@DEFENSES.register
@dataclass(frozen=True)
class DPNoise:
    """Per-sample L2 clipping at `clip`, then Gaussian noise calibrated to (epsilon, delta)."""

    epsilon: float = 8.0
    delta: float = 1e-5
    clip: float = 1.0
    calibration: Literal["analytic", "classic"] = "analytic"
    name: ClassVar[str] = "dp-noise"
    label: ClassVar[str] = "DP noise"
    strength: ClassVar[str | None] = "epsilon"  # smaller is stronger
    symbol: ClassVar[str] = "ε"
    training_speed: ClassVar[float] = 0.9  # training throughput relative to no defense (sweep estimates)

    def __post_init__(self) -> None:
        object.__setattr__(self, "epsilon", finite_number("dp-noise epsilon", self.epsilon))
        object.__setattr__(self, "delta", finite_number("dp-noise delta", self.delta))
        clip = finite_number("dp-noise clip", self.clip)
        if clip <= 0:
            raise InputError(f"dp-noise clip must be > 0, got {clip:g}")
        object.__setattr__(self, "clip", clip)
        dp.calibrated_mu(self.epsilon, self.delta, self.calibration)  # refuses what cannot be calibrated

    @property
    def std(self) -> float:
        """The noise std per coordinate."""
        return dp.noise_std(self.epsilon, self.delta, dp.sensitivity(self.clip), self.calibration)

    @classmethod
    def describe_params(cls, params: Mapping[str, Any]) -> str:
        """'DP noise ε=8', with δ and C when they are not the defaults."""
        text = f"DP noise ε={short_number(params.get('epsilon', float('nan')))}"
        extra = [f"{k}={short_number(params[key])}" for k, key, default in (("δ", "delta", 1e-5), ("C", "clip", 1.0)) if params.get(key, default) != default]
        return text + (f" ({', '.join(extra)})" if extra else "")

    @classmethod
    def guarantee(cls, params: Mapping[str, Any], releases: int = 1) -> str:
        """The guarantee in words (splitleak.dp.guarantee)."""
        return dp.guarantee(params, releases)

    def penalty(self, x: Tensor, z: Tensor) -> Tensor | None:
        return None

    def transform(self, generator: torch.Generator | None = None) -> nn.Module | None:
        return nn.Sequential(L2Clip(self.clip), AdditiveNoise(self.std, "gaussian", generator))

    def estimate(self, releases: Tensor) -> Tensor:
        """The adaptive attacker's estimate of the clipped activation from k releases [k, ...]: the
        mean (the Gaussian maximum-likelihood estimate; its noise std falls as std / sqrt(k))."""
        return releases.mean(0)

    def params(self) -> dict[str, Any]:
        return asdict(self)
