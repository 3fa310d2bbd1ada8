"""The Defense protocol: an optional loss term and an optional activation transform, plus what
reports and sweeps need to know about it (label, main knob, training cost); and the registry."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

from splitleak._config import short_number
from splitleak.errors import InputError
from splitleak.registry import Registry


class Defense(Protocol):
    """A defense hooks into training (a penalty) and into the client's output (a transform).

    Class attributes: `name` (registry key), `label` (for reports: "NoPeek"), `strength` (the
    parameter that sets how strong it is, or None), `symbol` (how reports write that parameter,
    "α"), `training_speed` (training throughput relative to no defense, for sweep estimates).
    The strength's direction is the defense's own (a larger NoPeek α protects more, a larger
    dp-noise ε less): reports only sort a defense's runs by it, ascending, and label them.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    strength: ClassVar[str | None]
    symbol: ClassVar[str]
    training_speed: ClassVar[float]

    def penalty(self, x: Tensor, z: Tensor) -> Tensor | None:
        """Extra loss for a batch of inputs `x` and their activations `z`, or None."""
        ...

    def transform(self, generator: torch.Generator | None = None) -> nn.Module | None:
        """A module applied to activations at training and inference, or None.

        A transform that draws random numbers (noise, a dropout mask) draws them from
        `generator` only -- never from torch's global generator -- and is a
        `splitleak._random.Stochastic`, so `drawing_from` can lend it another stream; without a
        generator it uses its own, seeded 0.
        """
        ...

    def params(self) -> dict[str, Any]:
        """JSON-able parameters that rebuild this defense."""
        ...


class DefenseSession:
    """The part of a defense that lives through one training run.

    The default holds nothing: it adds the defense's penalty and has no state. A trainable defense
    (attacker-aware training: a simulated inversion network it trains against) returns a subclass
    from its `session(model=..., generator=..., device=...)` method, owning modules and an
    optimiser, updating them in `after_step`, and saving them with `state_dict`. The generator it
    is given is the run's "train/defense" stream; training saves and restores it for `--resume`.
    """

    def __init__(self, defense: Any) -> None:
        self.defense = defense

    def penalty(self, x: Tensor, z: Tensor) -> Tensor | None:
        return self.defense.penalty(x, z)

    def after_step(self, x: Tensor, z: Tensor, y: Tensor) -> Mapping[str, float]:
        """Called after the client's update with the batch and its (detached) activations."""
        return {}

    def modules(self) -> Mapping[str, nn.Module]:
        """Modules the defense owns (saved in the checkpoint under `defense.<name>.`)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state:
            raise InputError(f"defense {self.defense.name!r} keeps no state, but {sorted(state)} was given")


def start_session(defense: Any, *, model: Any, generator: torch.Generator, device: torch.device) -> DefenseSession:
    """The defense's session for one run: its own `session(...)` if it has one, else the default."""
    factory = getattr(defense, "session", None)
    return factory(model=model, generator=generator, device=device) if factory is not None else DefenseSession(defense)


def describe(cls: Any, params: Mapping[str, Any]) -> str:
    """A defense's label with its main knob, as reports show it: 'NoPeek α=5', 'dropout p=0.5'."""
    own = getattr(cls, "describe_params", None)
    if own is not None:
        return own(params)
    strength = getattr(cls, "strength", None)
    label = getattr(cls, "label", cls.name)
    if strength is None:
        return label
    if strength in params:
        return f"{label} {getattr(cls, 'symbol', strength)}={short_number(params[strength])}"
    shown = ", ".join(f"{k}={short_number(v)}" for k, v in sorted(params.items()))
    return f"{label} {shown}".strip()


def strength_of(cls: Any, params: Mapping[str, Any]) -> float:
    """The defense's main knob as a number: 0 without one, NaN when the parameters lack it."""
    strength = getattr(cls, "strength", None)
    if strength is None:
        return 0.0
    value = params.get(strength, math.nan)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def defense_record(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """What reports show of a defense, recorded in each run's provenance so that readers need no
    registry (nor torch): its label with parameters, its strength and its rank among the registered
    defenses (the reports' order). A defense this splitleak does not know (a foreign model's
    "unknown") gets its name as the label, a NaN strength (written as null) and the last rank."""
    known = name in DEFENSES
    strength = strength_of(DEFENSES[name], params) if known else math.nan
    return {
        "label": describe(DEFENSES[name], params) if known else name,
        "strength": None if math.isnan(strength) else strength,
        "rank": list(DEFENSES).index(name) if known else len(DEFENSES),
    }


def _check_defense(cls: Any) -> None:
    missing = [a for a in ("name", "penalty", "transform", "params") if not hasattr(cls, a)]
    if missing:
        raise TypeError(f"defense class {cls!r} lacks {missing} (see splitleak.defenses.base.Defense)")


DEFENSES: Registry[Any] = Registry("defense", group="splitleak.defenses", check=_check_defense)
"""Defense classes by name. Other packages add theirs with an entry point in `splitleak.defenses`."""
