"""Progress reporting without printing from library code.

Long-running functions take a `progress` factory with tqdm's signature
(`factory(total=..., desc=...)` returning a context manager with `update(n)` and
`set_postfix(**values)`). The CLI passes tqdm on a terminal and `lines` elsewhere (CI logs:
one line per stage); library callers get `silent` by default.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol


class Bar(Protocol):
    def __enter__(self) -> "Bar": ...
    def __exit__(self, *exc: object) -> None: ...
    def update(self, n: int = 1) -> Any: ...
    def set_postfix(self, *args: Any, **values: Any) -> Any: ...


class ProgressFactory(Protocol):
    def __call__(self, *, total: int, desc: str) -> Bar: ...


class _SilentBar:
    def __enter__(self) -> "_SilentBar":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int = 1) -> None:
        return None

    def set_postfix(self, *args: Any, **values: Any) -> None:
        return None


def silent(*, total: int, desc: str) -> Bar:
    """A progress factory that shows nothing."""
    return _SilentBar()


class _LineBar(_SilentBar):
    """Says once, when entered, which stage starts (for logs, where a bar would be noise)."""

    def __init__(self, write: Callable[[str], None], total: int, desc: str) -> None:
        self._write, self._total, self._desc = write, total, desc

    def __enter__(self) -> "_LineBar":
        self._write(f"[{time.strftime('%H:%M:%S')}] {self._desc}")
        return self


def lines(write: Callable[[str], None]) -> ProgressFactory:
    """A progress factory that writes one line per stage with `write` (the caller prints)."""

    def factory(*, total: int, desc: str) -> Bar:
        return _LineBar(write, total, desc)

    return factory
