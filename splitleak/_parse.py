"""JSON and TOML from files, with their nesting bounded: a file nested too deep is a decode
error like any other malformed file, never a RecursionError (a bug's exit code).

`loads_json` raises `json.JSONDecodeError` and `loads_toml` raises `tomllib.TOMLDecodeError`,
so callers keep their own one-line messages for malformed text.
"""

from __future__ import annotations

import json
import tomllib
from typing import Any

MAX_NESTING = 64  # levels of arrays/tables; splitleak's own files use fewer than 10


def nesting(value: Any) -> int:
    """How many levels of lists and dicts `value` holds (0 for a scalar), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            deepest = max(deepest, depth)
            continue
        deepest = max(deepest, depth + 1)
        if depth + 1 > MAX_NESTING:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _too_deep(value: Any) -> str | None:
    return f"nested deeper than {MAX_NESTING} levels" if nesting(value) > MAX_NESTING else None


def loads_json(text: str | bytes) -> Any:
    """`json.loads`, refusing (JSONDecodeError) documents nested deeper than MAX_NESTING."""
    try:
        value = json.loads(text)
    except RecursionError:
        value, problem = None, f"nested deeper than {MAX_NESTING} levels"
    else:
        problem = _too_deep(value)
    if problem:
        raise json.JSONDecodeError(problem, text if isinstance(text, str) else "", 0)
    return value


def loads_toml(text: str) -> dict[str, Any]:
    """`tomllib.loads`, refusing (TOMLDecodeError) documents nested deeper than MAX_NESTING."""
    try:
        value = tomllib.loads(text)
    except RecursionError:
        raise tomllib.TOMLDecodeError(f"nested deeper than {MAX_NESTING} levels") from None
    problem = _too_deep(value)
    if problem:
        raise tomllib.TOMLDecodeError(problem)
    return value


__all__ = ["MAX_NESTING", "loads_json", "loads_toml", "nesting"]
