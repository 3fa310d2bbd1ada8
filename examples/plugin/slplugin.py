"""A splitleak plugin in one file: an attack, a defense and a metric, found through entry points.

Install it next to splitleak (`pip install -e examples/plugin`), and `splitleak attacks` lists
`meanimage`, `splitleak train --defense clip --defense-param clip.bound=2` trains with the
clipping defense, and `splitleak evaluate ... --attacks meanimage --metrics ssim,l1` runs both.
docs/architecture.md walks through it; tests/test_plugins.py runs every command on it.
"""

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from splitleak.attacks.base import Access, AttackConfig, ThreatModel, WorkSize
from splitleak.metrics.specs import MetricSpec


@dataclass(frozen=True)
class MeanImageConfig(AttackConfig):
    what: ClassVar[str] = "meanimage"
    shrink: float = 1.0


class MeanImageAttack:
    """Guesses the auxiliary data's mean image for every activation."""

    name: ClassVar[str] = "meanimage"
    label: ClassVar[str] = "Mean image"
    config_class: ClassVar[type] = MeanImageConfig
    threat_model: ClassVar[ThreatModel] = ThreatModel(summary="has auxiliary data only", aux_data=True, min_aux=2)

    @classmethod
    def estimate_seconds(cls, config: MeanImageConfig, size: WorkSize) -> float:
        return 0.001 * size.aux

    def __init__(self, config: MeanImageConfig | None = None, *, progress: Any = None) -> None:
        self.config = config or MeanImageConfig()
        self.mean: Tensor | None = None

    def fit(self, access: Access) -> "MeanImageAttack":
        self.threat_model.check(self.name, access)
        self.mean = access.aux.x.mean(0) * self.config.shrink
        return self

    def reconstruct(self, z: Tensor) -> Tensor:
        return self.mean.expand(len(z), *self.mean.shape).clone()

    def budget(self) -> dict[str, Any]:
        return asdict(self.config)


class Clip(nn.Module):
    def __init__(self, bound: float) -> None:
        super().__init__()
        self.bound = bound

    def forward(self, z: Tensor) -> Tensor:
        return z.clamp(-self.bound, self.bound)


@dataclass(frozen=True)
class ClipDefense:
    """Clips every activation to [-bound, bound]."""

    bound: float = 1.0
    name: ClassVar[str] = "clip"
    label: ClassVar[str] = "clip"
    strength: ClassVar[str] = "bound"
    symbol: ClassVar[str] = "c"
    training_speed: ClassVar[float] = 1.0

    def penalty(self, x: Tensor, z: Tensor) -> Tensor | None:
        return None

    def transform(self, generator: torch.Generator | None = None) -> nn.Module | None:
        return Clip(self.bound)  # deterministic: needs no generator

    def params(self) -> dict[str, Any]:
        return asdict(self)


def l1(x: Tensor, x_hat: Tensor) -> Tensor:
    return (x - x_hat).abs().flatten(1).mean(1)


L1 = MetricSpec(name="l1", level="sample", leakage_direction="lower", description="Mean absolute error per sample.", fn=l1, reconstruction=True, label="L1")
