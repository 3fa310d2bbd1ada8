"""Attacks: an open registry from name to class; each class declares its config, threat model,
label and cost model (splitleak.attacks.base.Attack). Register one with `@ATTACKS.register`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from splitleak.attacks.base import ATTACKS, Access, Attack, AttackConfig, ThreatModel, ThreatModelError, TrainingServer
from splitleak.attacks.decoder import DecoderAttack, DecoderConfig
from splitleak.attacks.rmle import RMLEAttack, RMLEConfig
from splitleak.attacks.shadow import ShadowAttack, ShadowConfig
from splitleak.attacks.unsplit import UnSplitAttack, UnSplitConfig
from splitleak.progress import ProgressFactory, silent
from splitleak.registry import import_submodules

import_submodules(__name__, __path__)  # a new module here registers itself: no edit of this file


def passive_attacks() -> tuple[str, ...]:
    """Every registered attack that attacks any honestly trained checkpoint (not a training-time
    attack such as fsha, which needs a model trained by its own server), in registry order."""
    return tuple(name for name, attack in ATTACKS.items() if attack.threat_model.trained_by is None)


def make_attack(
    name: str, params: Mapping[str, Any] | None = None, *, budget_scale: float = 1.0, progress: ProgressFactory = silent
) -> Attack:
    """Build an attack from its registry name and parameters, its budget multiplied by `budget_scale`."""
    cls = ATTACKS.get_entry(name)
    return cls(cls.config_class.from_dict(dict(params or {})).scaled(budget_scale), progress=progress)


__all__ = [
    "ATTACKS",
    "Access",
    "Attack",
    "AttackConfig",
    "DecoderAttack",
    "DecoderConfig",
    "RMLEAttack",
    "RMLEConfig",
    "ShadowAttack",
    "ShadowConfig",
    "ThreatModel",
    "ThreatModelError",
    "TrainingServer",
    "UnSplitAttack",
    "UnSplitConfig",
    "make_attack",
    "passive_attacks",
]
