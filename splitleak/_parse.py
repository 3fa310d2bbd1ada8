"""JSON and TOML from files, with their nesting bounded: a file nested too deep is a decode
error like any other malformed file, never a RecursionError (a bug's exit code). Settings files
(policy, input spec, sweep grid) are read only up to MAX_SETTINGS_BYTES.

`loads_json` raises `json.JSONDecodeError` and `loads_toml` raises `tomllib.TOMLDecodeError`,
so callers keep their own one-line messages for malformed text.
"""

from __future__ import annotations

import json
import os
import tomllib
from typing import Any

from splitleak.errors import InputError

MAX_NESTING = 64  # levels of arrays/tables; splitleak's own files use fewer than 10
MAX_SETTINGS_BYTES = 1 << 20  # a policy, input spec or sweep grid is a few lines of TOML


def read_settings_text(path: str | os.PathLike[str], what: str) -> str:
    """The UTF-8 text of the settings file `what` (a policy, an input spec, a sweep grid), reading
    at most MAX_SETTINGS_BYTES + 1 bytes (a larger file, or /dev/zero, is an InputError); a
    missing or unreadable file is the OSError open raises."""
    with open(path, "rb") as handle:
        raw = handle.read(MAX_SETTINGS_BYTES + 1)
    if len(raw) > MAX_SETTINGS_BYTES:
        raise InputError(f"{what} {path} is larger than {MAX_SETTINGS_BYTES} bytes; it should be a few lines of TOML")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{what} {path} is not UTF-8 text ({err})") from None


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


__all__ = ["MAX_NESTING", "MAX_SETTINGS_BYTES", "loads_json", "loads_toml", "nesting", "read_settings_text"]
