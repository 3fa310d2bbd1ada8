"""Defenses: an open registry from name to a frozen dataclass; `none` is a defense too.
Register one with `@DEFENSES.register` (splitleak.defenses.base.Defense says what it carries)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from splitleak.defenses.base import DEFENSES, Defense, defense_record, describe, strength_of
# registration order is the order reports list defenses in
from splitleak.defenses.none import NoDefense  # isort: skip
from splitleak.defenses.nopeek import NoPeek  # isort: skip
from splitleak.defenses.noise import ActivationNoise  # isort: skip
from splitleak.defenses.dropout import ActivationDropout  # isort: skip
from splitleak.errors import InputError
from splitleak.registry import import_submodules

import_submodules(__name__, __path__)  # a new module here registers itself: no edit of this file


def make_defense(name: str, params: Mapping[str, Any] | None = None) -> Defense:
    """Build a defense from its registry name and parameters, rejecting unknown ones."""
    cls = DEFENSES.get_entry(name)
    params = dict(params or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise InputError(f"defense {name!r} has no parameter(s) {unknown}; it takes {sorted(known) or 'none'}")
    return cls(**params)


__all__ = ["DEFENSES", "ActivationDropout", "ActivationNoise", "Defense", "NoDefense", "NoPeek", "defense_record", "describe", "make_defense", "strength_of"]
