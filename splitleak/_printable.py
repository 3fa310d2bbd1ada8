"""Text read from files, shown on a terminal: control characters made visible.

A results folder, policy or grid file is data. A name in one that holds ESC, a carriage return or
a bidirectional override could recolour, overwrite or reorder what `splitleak gate` or an error
line shows a user; `printable` writes every such character as its Python escape instead. Imports
nothing heavy (the CLI's error path uses it).
"""

from __future__ import annotations


def printable(text: object) -> str:
    """`str(text)` with each non-printable character (control and format characters, line and
    paragraph separators; not the plain space) as its escape: '\\x1b', '\\r', '\\u202e'. Letters of
    any script stay as they are (α, σ, ε)."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in s)
