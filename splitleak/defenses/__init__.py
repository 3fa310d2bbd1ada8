"""Defenses: a registry from name to a frozen dataclass; `none` is a defense too."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from splitleak.defenses.base import Defense
from splitleak.defenses.dropout import ActivationDropout
from splitleak.defenses.noise import ActivationNoise
from splitleak.defenses.nopeek import NoPeek
from splitleak.defenses.none import NoDefense
from splitleak.errors import InputError

DEFENSES: dict[str, type] = {cls.name: cls for cls in (NoDefense, NoPeek, ActivationNoise, ActivationDropout)}


def make_defense(name: str, params: Mapping[str, Any] | None = None) -> Defense:
    """Build a defense from its registry name and parameters, rejecting unknown ones."""
    try:
        cls = DEFENSES[name]
    except KeyError:
        raise InputError(f"unknown defense {name!r}; choose from {sorted(DEFENSES)}") from None
    params = dict(params or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise InputError(f"defense {name!r} has no parameter(s) {unknown}; it takes {sorted(known) or 'none'}")
    return cls(**params)


__all__ = ["DEFENSES", "ActivationDropout", "ActivationNoise", "Defense", "NoDefense", "NoPeek", "make_defense"]
