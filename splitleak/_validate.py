"""Argument checks shared by configs: clear ValueErrors instead of deep tracebacks."""

from __future__ import annotations

import math
from typing import Any

import torch

from splitleak._config import SEED_RANGE
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




def torch_seed(name: str, value: Any) -> int:
    """`value` if it is a whole number torch can seed a generator with, else an InputError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or not SEED_RANGE[0] <= value <= SEED_RANGE[1]:
        raise InputError(f"{name} must be a whole number from -2**63 to 2**64 - 1, got {value!r}")
    return value


AUTO_DEVICE = "auto"


def resolve_device(value: Any) -> Any:
    """'auto' -> 'cuda' when torch sees a CUDA device, else 'cpu'; any other value unchanged
    (what a config records is the device it ran on)."""
    if value == AUTO_DEVICE:
        return "cuda" if torch.cuda.is_available() and torch.cuda.device_count() > 0 else "cpu"
    return value


def device_string(name: str, value: Any) -> None:
    """An InputError naming `name` unless torch parses `value` as a device ("cpu", "cuda:1", ...)."""
    try:
        if not isinstance(value, str):
            raise TypeError
        torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"{name} must name a torch device such as 'cpu', 'cuda', 'cuda:1' or 'auto', got {value!r}") from None


def usable_device(value: str) -> None:
    """An InputError unless this machine can compute on `value` (checked where the work runs)."""
    device_string("device", value)
    dev = torch.device(value)
    if dev.type == "meta":
        raise InputError("device 'meta' holds no data; use cpu or cuda")
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(f"device {value!r}: this torch ({torch.__version__}) sees no CUDA device")
        if dev.index is not None and dev.index >= count:
            raise InputError(f"device {value!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {value!r}: MPS is not available here")
