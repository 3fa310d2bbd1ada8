"""Client-side detection of a training-hijacking server: SplitGuard (Erdogan, Küpçü, Çiçek,
"SplitGuard: Detecting and Mitigating Training-Hijacking Attacks in Split Learning", WPES 2022;
authors' code: github ege-erdogan/splitguard, `label-changing/splitguard.ipynb`).

The client cannot see what the server computes, only the gradient it sends back through z. Now
and then (probability `p_fake` per step, after `warmup` steps) SplitGuard sends a *fake* batch:
activations of its own images with labels it has randomised. It keeps the gradient its first
layer would get from the server's reply and never applies it. An honest server's gradient for
wrong labels points away from its gradient for the right ones; a hijacking server (FSHA) ignores
the labels and answers both alike. With F the fake gradients and the regular gradients split at
random into R1 and R2 (means F̄, R̄1, R̄2; mean norms |F|, |R1|, |R2|; R̄ = (R̄1 + R̄2)/2,
|R| = (|R1| + |R2|)/2):

    d  = θ(F̄, R̄) · ||F| - |R|| / m  -  θ(R̄1, R̄2) · ||R1| - |R2|| / m,   m = ||F| - |R|| + ||R1| - |R2||
    SG = sigmoid(alpha · d) ** beta                                   (θ: angle in radians)

High (→ 1) for an honest server, near sigmoid(0)^beta = 0.25 (beta 2) or below when fake and
regular gradients look alike. Means are running sums over the whole run, as the authors' code
keeps every gradient; the detector alarms at the first step whose score (or the mean of its last
`window` scores) is below `threshold`.

`Detector` is the protocol training calls (`splitleak.training.train`, `TrainConfig.detector`);
`DETECTORS` the registry. Randomness (whether to send a fake, which images, the label shift, the
R1/R2 split, the fake batch's transform draws) comes from the run's "train/detector" stream, kept
in the detector's state for `--resume`.

Deviations from the authors' code (docs/defenses.md#detecting-a-hijacking-server):

* A fake batch is an *extra* exchange: `batch_size` images drawn from the client's training set,
  sent before the step's regular batch. The authors turn a loader batch into the fake one and skip
  the client's update for it; here the client keeps every update and pays the time instead.
* Labels are shifted by one draw s in [1, K-1] per fake batch (y + s mod K), so every label is
  wrong; the authors draw s in [1, 8] for K = 10. `fake_fraction` (authors' B_F / batch size)
  says how many labels of the batch are randomised (default all, their B_F = 64 at batch 64).
* The decision rule (threshold 0.5, window 1) is ours: the notebook computes the score and
  leaves the decision to the client; measured separation on Fashion-MNIST in the docs.
* A fake batch's transform (noise, dropout) draws from the detector's stream, so the regular
  steps draw exactly what they would without the detector.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor

from splitleak._config import FromDict
from splitleak._validate import finite_number, positive_int
from splitleak.errors import InputError
from splitleak.registry import Registry


class Detector(Protocol):
    """A client-side detector of a hijacking server (see `SplitGuard`)."""

    name: ClassVar[str]
    alarm_step: int | None
    generator: torch.Generator  # its own stream; a fake batch's transform draws from it too

    def wants_fake(self, step: int) -> bool:
        """Whether the client sends a fake batch before regular step `step` (1-based)."""
        ...

    def fake_batch(self, x: Tensor, y: Tensor, batch_size: int, num_classes: int) -> tuple[Tensor, Tensor]:
        """A fake batch: inputs drawn from (x, y) and their randomised labels."""
        ...

    def observe(self, step: int, gradient: Tensor, *, fake: bool) -> None:
        """The client's first-layer gradient from the server's reply at `step`."""
        ...

    def watches(self, step: int) -> bool:
        """Whether regular step `step` is recorded (its gradient must be kept)."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...

    def describe(self) -> dict[str, Any]: ...


DETECTORS: Registry[Any] = Registry("detector", group="splitleak.detectors")
"""Client-side detectors of a hijacking server, by name (`splitguard`)."""


def _angle(u: Tensor, v: Tensor) -> Tensor:
    """The angle between two vectors in radians (0 when one of them is zero)."""
    norms = u.norm() * v.norm()
    if norms == 0:
        return torch.zeros((), dtype=u.dtype)
    return torch.arccos(torch.clamp(torch.dot(u, v) / norms, -1.0, 1.0))


def splitguard_raw(fake: Tensor, fake_norm: Tensor, r1: Tensor, r1_norm: Tensor, r2: Tensor, r2_norm: Tensor) -> float:
    """SplitGuard's d from the mean gradients (flat) and mean norms of F, R1 and R2."""
    regular, regular_norm = (r1 + r2) / 2, (r1_norm + r2_norm) / 2
    apart, within = (fake_norm - regular_norm).abs(), (r1_norm - r2_norm).abs()
    scale = apart + within
    if scale == 0:
        return 0.0
    return float((_angle(fake, regular) * apart - _angle(r1, r2) * within) / scale)


def splitguard_score(fakes: Tensor, r1: Tensor, r2: Tensor, *, alpha: float = 5.0, beta: float = 2.0) -> float:
    """SplitGuard's score of fake gradients `fakes` [F, P] against regular ones `r1`, `r2` [R, P]."""
    if min(len(fakes), len(r1), len(r2)) == 0:
        raise InputError("splitguard_score needs at least one fake and one gradient in each regular group")
    parts = [(g.mean(0), g.norm(dim=1).mean()) for g in (fakes, r1, r2)]
    return squash(splitguard_raw(*parts[0], *parts[1], *parts[2]), alpha, beta)


def squash(d: float, alpha: float, beta: float) -> float:
    """sigmoid(alpha d) ** beta (the authors' squashing of d into [0, 1])."""
    return (1.0 / (1.0 + math.exp(-max(min(alpha * d, 700.0), -700.0)))) ** beta


@dataclass(frozen=True)
class SplitGuardConfig(FromDict):
    """SplitGuard's parameters (defaults: the authors' notebook; threshold and window: ours)."""

    what: ClassVar[str] = "splitguard detector"

    p_fake: float = 0.1  # probability of a fake batch per step (P_F)
    fake_fraction: float = 1.0  # share of a fake batch's labels that are randomised (B_F / batch)
    warmup: int = 20  # steps before SplitGuard starts (N)
    alpha: float = 5.0  # squashing multiplier
    beta: float = 2.0  # squashing exponent
    threshold: float = 0.5  # alarm when the (windowed) score falls below this
    window: int = 1  # scores averaged for the decision (1: the latest alone)

    def __post_init__(self) -> None:
        finite_number("p_fake", self.p_fake, minimum=0.0)
        finite_number("fake_fraction", self.fake_fraction, minimum=0.0)
        if not 0 < self.p_fake < 1 or not 0 < self.fake_fraction <= 1:
            raise InputError(f"splitguard: p_fake must be in (0, 1) and fake_fraction in (0, 1], got {self.p_fake} and {self.fake_fraction}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise InputError(f"splitguard: warmup must be a whole number >= 0, got {self.warmup!r}")
        finite_number("alpha", self.alpha, minimum=0.0)
        finite_number("beta", self.beta, minimum=0.0)
        finite_number("threshold", self.threshold, minimum=0.0)
        positive_int("window", self.window)
        if self.alpha == 0 or self.beta == 0 or self.threshold > 1:
            raise InputError(f"splitguard: alpha and beta must be > 0 and threshold in [0, 1], got {self.alpha}, {self.beta}, {self.threshold}")


class _Running:
    """Running sum of gradients and of their norms (exact means without keeping every gradient)."""

    def __init__(self) -> None:
        self.total: Tensor | None = None
        self.norms = torch.zeros((), dtype=torch.float64)
        self.count = 0

    def add(self, g: Tensor) -> None:
        g = g.detach().flatten().to("cpu", torch.float64)
        self.total = g.clone() if self.total is None else self.total + g
        self.norms = self.norms + g.norm()
        self.count += 1

    def means(self) -> tuple[Tensor, Tensor]:
        assert self.total is not None
        return self.total / self.count, self.norms / self.count

    def state(self) -> dict[str, Any]:
        return {"total": self.total, "norms": self.norms, "count": self.count}

    def load(self, state: Mapping[str, Any]) -> None:
        self.total, self.norms, self.count = state["total"], state["norms"], int(state["count"])


@DETECTORS.register
class SplitGuard:
    """SplitGuard (see the module docstring): fake batches with randomised labels, a score from
    the angle and magnitude of their gradients against the regular ones, an alarm below a threshold."""

    name: ClassVar[str] = "splitguard"
    label: ClassVar[str] = "SplitGuard"
    training_speed: ClassVar[float] = 0.9  # sweep estimates: a fake batch (one more exchange) on 10% of steps at the default p_fake

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        return dataclasses.asdict(SplitGuardConfig.from_dict(dict(params)))

    def __init__(self, config: SplitGuardConfig, generator: torch.Generator) -> None:
        self.config, self.generator = config, generator
        self.groups = {"fake": _Running(), "r1": _Running(), "r2": _Running()}
        self.scores: list[tuple[int, float]] = []
        self.alarm_step: int | None = None

    @classmethod
    def setup(cls, params: Mapping[str, Any], generator: torch.Generator) -> SplitGuard:
        return cls(SplitGuardConfig.from_dict(dict(params)), generator)

    def _draw(self) -> float:
        return float(torch.rand((), generator=self.generator))

    def watches(self, step: int) -> bool:
        return step > self.config.warmup

    def wants_fake(self, step: int) -> bool:
        return self.watches(step) and self._draw() < self.config.p_fake

    def fake_batch(self, x: Tensor, y: Tensor, batch_size: int, num_classes: int) -> tuple[Tensor, Tensor]:
        """`batch_size` distinct images of (x, y), the first `fake_fraction` of their labels shifted."""
        if num_classes < 2:
            raise InputError("splitguard needs at least 2 classes to randomise labels")
        idx = torch.randperm(len(x), generator=self.generator)[: min(batch_size, len(x))]
        shift = int(torch.randint(1, num_classes, (), generator=self.generator))
        labels = y[idx].clone()
        changed = math.ceil(self.config.fake_fraction * len(idx))
        labels[:changed] = (labels[:changed] + shift) % num_classes
        return x[idx], labels

    def observe(self, step: int, gradient: Tensor, *, fake: bool) -> None:
        if not fake:
            self.groups["r1" if self._draw() < 0.5 else "r2"].add(gradient)
            return
        self.groups["fake"].add(gradient)
        if self.groups["r1"].count and self.groups["r2"].count:
            self._score(step)

    def _score(self, step: int) -> None:
        parts = [m for name in ("fake", "r1", "r2") for m in self.groups[name].means()]
        score = squash(splitguard_raw(*parts), self.config.alpha, self.config.beta)
        self.scores.append((step, score))
        recent = [s for _, s in self.scores[-self.config.window :]]
        if self.alarm_step is None and len(recent) == self.config.window and sum(recent) / len(recent) < self.config.threshold:
            self.alarm_step = step

    def state_dict(self) -> dict[str, Any]:
        return {
            "groups": {name: group.state() for name, group in self.groups.items()},
            "scores": [list(s) for s in self.scores],
            "alarm_step": self.alarm_step,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name, group in self.groups.items():
            group.load(state["groups"][name])
        self.scores = [(int(step), float(score)) for step, score in state["scores"]]
        self.alarm_step = state["alarm_step"]
        self.generator.set_state(state["generator"])

    def describe(self) -> dict[str, Any]:
        """What the checkpoint records: name, parameters, the alarm step (None: no alarm), how
        many fake batches were sent and every score with its step."""
        return {
            "name": self.name,
            "params": dataclasses.asdict(self.config),
            "alarm_step": self.alarm_step,
            "fakes": self.groups["fake"].count,
            "scores": [[step, score] for step, score in self.scores],
        }


def check_detector_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """`params` of detector `name`, checked, with its defaults filled in (InputError if bad)."""
    return DETECTORS.get_entry(name).check_params(dict(params))


def make_detector(name: str, params: Mapping[str, Any], generator: torch.Generator) -> Detector:
    """The registered detector `name`, drawing from `generator`."""
    return DETECTORS.get_entry(name).setup(params, generator)


__all__ = ["DETECTORS", "Detector", "SplitGuard", "SplitGuardConfig", "check_detector_params", "make_detector", "splitguard_raw", "splitguard_score", "squash"]
