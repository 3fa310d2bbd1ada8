"""Argument checks shared by configs: clear ValueErrors instead of deep tracebacks."""

from __future__ import annotations

import math
from typing import Any

import torch

from splitleak.errors import InputError


def finite_number(name: str, value: Any, *, minimum: float | None = None) -> float:
    """`value` as a float, or a ValueError naming `name` if it is not a finite number >= minimum."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {value!r}")
    return float(value)


def positive_int(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    """`value` as an int >= 1 (or None when allowed), else a ValueError naming `name`."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a whole number >= 1, got {value!r}")
    return value


def all_finite(*tensors: torch.Tensor) -> bool:
    """True when no floating-point tensor holds NaN or +-inf (one min/max pass each; NaN propagates)."""
    ends = [torch.stack(torch.aminmax(t.detach().reshape(-1))) for t in tensors if t.numel()]
    return not ends or bool(torch.isfinite(torch.cat(ends)).all())
