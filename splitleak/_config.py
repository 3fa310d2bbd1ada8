"""Building frozen config dataclasses from plain mappings, rejecting unknown keys; showing their values."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from splitleak.errors import InputError

T = TypeVar("T")

SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.Generator.manual_seed takes


def from_mapping(cls: type[T], values: Mapping[str, Any], what: str) -> T:
    """`cls(**values)`, with a clear ValueError naming `what` for keys `cls` does not have."""
    if not isinstance(values, Mapping):
        raise InputError(f"{what} must be a table of options, got {type(values).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"unknown {what} option(s) {unknown}; known: {sorted(known)}")
    try:
        return cls(**values)
    except TypeError as err:
        raise InputError(f"bad {what} options: {err}") from None


class FromDict:
    """Mixin for frozen config dataclasses: `from_dict` that names the config (`what`) in errors."""

    what: ClassVar[str] = "config"

    @classmethod
    def from_dict(cls: type[T], values: Mapping[str, Any]) -> T:
        return from_mapping(cls, values, cls.what)  # type: ignore[attr-defined]


def short_number(value: Any) -> str:
    """A parameter value, short, for labels: 5.0 -> '5', 0.25 -> '0.25'."""
    if isinstance(value, float) and math.isfinite(value) and value == round(value):
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)
