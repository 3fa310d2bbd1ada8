"""Attacks: a registry from name to class; each declares its threat model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from splitleak.attacks.base import Access, Attack, ThreatModel, ThreatModelError
from splitleak.attacks.decoder import DecoderAttack, DecoderConfig
from splitleak.progress import ProgressFactory, silent

ATTACKS: dict[str, tuple[type, type]] = {
    DecoderAttack.name: (DecoderAttack, DecoderConfig),
}


def make_attack(name: str, params: Mapping[str, Any] | None = None, *, progress: ProgressFactory = silent) -> Attack:
    """Build an attack from its registry name and budget parameters."""
    try:
        cls, config_cls = ATTACKS[name]
    except KeyError:
        raise ValueError(f"unknown attack {name!r}; choose from {sorted(ATTACKS)}") from None
    return cls(config_cls.from_dict(dict(params or {})), progress=progress)


__all__ = ["ATTACKS", "Access", "Attack", "DecoderAttack", "DecoderConfig", "ThreatModel", "ThreatModelError", "make_attack"]
