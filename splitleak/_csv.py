"""CSV cells a spreadsheet will not run: text starting with `=`, `+`, `-`, `@`, a tab or a carriage
return gets a leading single quote (the OWASP convention against CSV / formula injection), and so
does text that already starts with a quote, so that `unescape_cell` gives back exactly the text
written. Only text is escaped: numbers in numeric columns (a negative value) stay numbers.

Every CSV splitleak writes goes through `escape_cell` (directly, or via `write_frame`); splitleak's
own readers undo it with `unescape_cell`. This module imports neither torch nor pandas.
"""

from __future__ import annotations

import os
from typing import Any

from splitleak._io import atomic_path

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"
_ESCAPED = (*FORMULA_STARTS, QUOTE)


def escape_cell(value: Any) -> Any:
    """`value` with a leading quote if it is text a spreadsheet could read as a formula (or text
    starting with a quote); anything that is not text is returned as it is."""
    if isinstance(value, str) and value.startswith(_ESCAPED):
        return QUOTE + value
    return value


def unescape_cell(value: Any) -> Any:
    """The text `escape_cell` was given (text without an escape, and non-text, unchanged)."""
    if isinstance(value, str) and len(value) > 1 and value[0] == QUOTE and value[1:].startswith(_ESCAPED):
        return value[1:]
    return value


def write_frame(frame: Any, target: str | os.PathLike[str], *, float_format: str = "%.10g") -> None:
    """Write a pandas DataFrame as CSV to `target`, atomically, its text cells escaped (text
    columns only: numeric columns are written as numbers)."""
    text_columns = [c for c in frame.columns if frame[c].dtype.kind in "OSU"]  # object and string dtypes, not numbers
    escaped = frame.assign(**{str(c): frame[c].map(escape_cell) for c in text_columns}) if text_columns else frame
    with atomic_path(target) as tmp:
        escaped.to_csv(tmp, index=False, float_format=float_format)
