"""Attacks: a registry from name to class; each declares its threat model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from splitleak.attacks.base import Access, Attack, AttackConfig, ThreatModel, ThreatModelError, attack_seed
from splitleak.attacks.decoder import DecoderAttack, DecoderConfig
from splitleak.attacks.rmle import RMLEAttack, RMLEConfig
from splitleak.attacks.shadow import ShadowAttack, ShadowConfig
from splitleak.attacks.unsplit import UnSplitAttack, UnSplitConfig
from splitleak.errors import InputError
from splitleak.progress import ProgressFactory, silent

ATTACKS: dict[str, tuple[type, type]] = {
    DecoderAttack.name: (DecoderAttack, DecoderConfig),
    RMLEAttack.name: (RMLEAttack, RMLEConfig),
    ShadowAttack.name: (ShadowAttack, ShadowConfig),
    UnSplitAttack.name: (UnSplitAttack, UnSplitConfig),
}


def make_attack(
    name: str, params: Mapping[str, Any] | None = None, *, budget_scale: float = 1.0, progress: ProgressFactory = silent
) -> Attack:
    """Build an attack from its registry name and parameters, its budget multiplied by `budget_scale`."""
    try:
        cls, config_cls = ATTACKS[name]
    except KeyError:
        raise InputError(f"unknown attack {name!r}; choose from {sorted(ATTACKS)}") from None
    return cls(config_cls.from_dict(dict(params or {})).scaled(budget_scale), progress=progress)


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
    "UnSplitAttack",
    "UnSplitConfig",
    "attack_seed",
    "make_attack",
]
