"""Cut points: a whole number (cut after block K) or a name ("stem", "layer2"). No torch.

Architectures of plain block stacks are cut by number; architectures with named stages
(resnet18) by name. Reports and the gate read cuts from results tables without the registry,
so "deeper" is decided here: a number is its own depth, a name's depth is its trailing number
("layer3" -> 3) and a name without one ("stem") comes first.
"""

from __future__ import annotations

import numbers
import re
from typing import Any, Union

from splitleak.errors import InputError

Cut = Union[int, str]
"""A cut point: a whole number or a name."""

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
_TRAILING = re.compile(r"(\d+)$")


def parse_cut(value: Any) -> Cut:
    """`value` as a cut: whole numbers (also as text, "2") become int, names stay str.

    Raises InputError (one line) for anything else (floats, booleans, blanks, odd characters).
    """
    if isinstance(value, bool):
        raise InputError(f"a cut is a whole number or a name such as 'layer2', got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        if _NAME.match(text):
            return text
    raise InputError(f"a cut is a whole number or a name such as 'layer2', got {value!r}")


def cut_depth(cut: Cut) -> int:
    """How deep `cut` is, for ordering: a number itself, a name its trailing number (else 0)."""
    if isinstance(cut, int):
        return cut
    found = _TRAILING.search(str(cut))
    return int(found.group(1)) if found else 0


def cut_sort_key(cut: Any) -> tuple[int, str]:
    """A sort key putting shallower cuts first (numbers and names alike)."""
    parsed = parse_cut(cut)
    return cut_depth(parsed), str(parsed)


__all__ = ["Cut", "cut_depth", "cut_sort_key", "parse_cut"]
