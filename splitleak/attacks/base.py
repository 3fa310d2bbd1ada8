"""What an attacker has (Access), what an attack needs (ThreatModel), the Attack protocol and registry."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

from torch import Tensor, nn

from splitleak._config import FromDict
from splitleak._validate import finite_number, positive_int
from splitleak.cuts import Cut
from splitleak.data import ArraySplit, InputSpec
from splitleak.registry import Registry
from splitleak.results import MODEL_LEVEL, WORST_CASE
from splitleak.errors import InputError

C = TypeVar("C", bound="AttackConfig")


class ThreatModelError(InputError):
    """The evaluation cannot give an attack what its threat model requires."""


@dataclass(frozen=True)
class TrainingServer:
    """What the server that trained the model kept: its registered name, its recorded
    parameters and its own modules' tensors (a malicious server's decoder; empty for honest)."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    state: Mapping[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class Access:
    """Everything an evaluation can hand an attacker; None means "not available"."""

    spec: InputSpec
    activation_shape: tuple[int, ...]
    query: Callable[[Tensor], Tensor] | None = None
    encoder: nn.Module | None = None
    head: nn.Module | None = None
    aux: ArraySplit | None = None
    arch: str | None = None  # the encoder's architecture name (public knowledge, not weights)
    cut: Cut | None = None
    num_classes: int | None = None
    device: str = "cpu"
    seed: int = 0
    # builds a freshly initialised model of the client's architecture (a SplitModel whose `client`
    # normalises like the victim's), for a client that is not a registered architecture but came
    # with its own model factory; public knowledge like `arch` and `cut`, not weights
    clone: Callable[[], Any] | None = None
    labelled: bool = True  # whether `aux.y` holds real labels
    # the activations the server observed from the client's private data: in `evaluate`, those of
    # the attacked test images (what a passive server sees anyway). Attacks that fit on their
    # distribution (SDAR, FORA) read it; others ignore it. None outside an evaluation.
    observed: Tensor | None = None
    # the server that trained the model, and what it kept (a malicious server's modules, from the
    # checkpoint): training-time attacks (FSHA) read it. None when unknown (a foreign model).
    server: TrainingServer | None = None
    # bytes of activations an attack may hold at once of its own (the decoder's queried auxiliary
    # activations); above it, it computes them batch by batch. None: unbounded.
    activation_memory: int | None = None


@dataclass(frozen=True)
class ThreatModel:
    """What an attack needs: encoder weights, query access, the server head, auxiliary data."""

    summary: str
    encoder_weights: bool = False
    query_access: bool = False
    server_head: bool = False
    aux_data: bool = False
    min_aux: int = 0
    aux_labels: bool = False
    architecture: bool = False
    trained_by: str | None = None  # a training-time attack: the model must be trained by this server

    def missing(self, access: Access) -> list[str]:
        """Human-readable list of requirements `access` does not meet."""
        has_aux = access.aux is not None and len(access.aux) > 0
        known_arch = access.clone is not None or (access.arch is not None and access.cut is not None)
        needs = [
            (self.encoder_weights, access.encoder is not None, "the client encoder's weights"),
            (self.query_access, access.query is not None, "query access to the client encoder"),
            (self.server_head, access.head is not None, "the server head"),
            (self.aux_data, has_aux, "auxiliary data"),
            (self.aux_labels, not has_aux or access.labelled, "labelled auxiliary data (the images have no labels)"),
            (
                self.architecture,
                known_arch,
                "the client's architecture and cut to build a fresh clone (a registered architecture, "
                "or a model factory; a TorchScript or exported encoder does not say how to build one)",
            ),
        ]
        gaps = [what for needed, have, what in needs if needed and not have]
        if self.trained_by is not None and (access.server is None or access.server.name != self.trained_by):
            gaps.append(f"a checkpoint trained by the {self.trained_by!r} server (splitleak train --server {self.trained_by})")
        if self.aux_data and access.aux is not None and 0 < len(access.aux) < self.min_aux:
            gaps.append(f"at least {self.min_aux} auxiliary images (got {len(access.aux)})")
        return gaps

    def check(self, attack: str, access: Access) -> None:
        """Raise ThreatModelError naming what is missing for `attack`."""
        gaps = self.missing(access)
        if gaps:
            raise ThreatModelError(f"attack {attack!r} ({self.summary}) needs {', '.join(gaps)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "encoder_weights": self.encoder_weights,
            "query_access": self.query_access,
            "server_head": self.server_head,
            "aux_data": self.aux_data,
            "min_aux": self.min_aux,
            "aux_labels": self.aux_labels,
            "architecture": self.architecture,
            "trained_by": self.trained_by,
        }


class AttackConfig(FromDict):
    """Base of the attacks' frozen config dataclasses: `budget_fields` name the whole-number
    options (epochs, steps) that set how much compute the attack spends.

    Every option of an attack is a count or size (a whole number >= 1, when its default is an
    int) or a rate or weight (a finite number >= 0, when its default is a float); the checks
    name the option as "<what> <field>". An option with a text default is a choice its config
    checks itself.
    """

    budget_fields: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for option in dataclasses.fields(self):  # type: ignore[arg-type]
            label, value = f"{self.what} {option.name}", getattr(self, option.name)
            if isinstance(option.default, str):  # a choice: the subclass checks it
                continue
            if isinstance(option.default, int):
                positive_int(label, value)
            else:
                finite_number(label, value, minimum=0.0)

    def scaled(self: C, factor: float) -> C:
        """A copy with every budget field multiplied by `factor` (rounded, at least 1)."""
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > 0 or factor == float("inf"):
            raise InputError(f"budget scale must be a finite number > 0, got {factor!r}")
        changes = {name: max(1, round(getattr(self, name) * factor)) for name in self.budget_fields}
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


@dataclass(frozen=True)
class WorkSize:
    """What a sweep's cost estimate knows about one evaluation: image counts and the device."""

    aux: int
    scored: int
    device: str = "cpu"


class Attack(Protocol):
    """Fit on what the attacker has, then map observed activations back to inputs.

    The class carries everything keyed by its name: `name`, its `config_class` (options and
    budget), `threat_model`, a `label` for reports and `estimate_seconds` for sweeps.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    config_class: ClassVar[type[AttackConfig]]
    threat_model: ClassVar[ThreatModel]

    @classmethod
    def estimate_seconds(cls, config: AttackConfig, size: WorkSize) -> float:
        """A rough CPU time of fit + reconstruct with `config` on `size` images (for sweep --dry-run)."""
        ...

    def fit(self, access: Access) -> "Attack": ...

    def reconstruct(self, z: Tensor) -> Tensor:
        """Inputs [B, C, H, W] in the spec's value range for activations z [B, ...]."""
        ...

    def budget(self) -> dict[str, Any]:
        """JSON-able configuration: the attack's budget and hyper-parameters."""
        ...


def _check_attack(cls: Any) -> None:
    missing = [a for a in ("name", "config_class", "threat_model", "fit", "reconstruct", "budget") if not hasattr(cls, a)]
    if missing:
        raise TypeError(f"attack class {cls!r} lacks {missing} (see splitleak.attacks.base.Attack)")
    if not isinstance(cls.threat_model, ThreatModel):
        raise TypeError(f"attack {cls.name!r}: threat_model must be a ThreatModel")
    if cls.name in (MODEL_LEVEL, WORST_CASE):
        raise TypeError(f"attack name {cls.name!r} is reserved in results tables (model-level rows, the per-image worst case)")


ATTACKS: Registry[Any] = Registry("attack", group="splitleak.attacks", check=_check_attack)
"""Attack classes by name. Other packages add theirs with an entry point in `splitleak.attacks`."""
