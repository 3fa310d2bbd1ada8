"""Open registries: name -> entry, filled by a decorator and by other packages' entry points.

    ATTACKS = Registry("attack", group="splitleak.attacks")

    @ATTACKS.register
    class MyAttack: name = "mine"; ...

A separate package adds to a registry without editing splitleak by declaring an entry point in
the registry's group (``[project.entry-points."splitleak.attacks"] mine = "pkg.mod:MyAttack"``).
Entry points are loaded the first time a name is not found among the registered ones, or when
the whole registry is listed, so looking up a built-in name never imports a plugin. Loading a
plugin runs its code, like any installed package (docs/trust.md). An entry point may name the
entry itself (registered under its ``name``) or a module whose import registers it.

This module imports nothing outside the standard library.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from splitleak.errors import InputError

log = logging.getLogger(__name__)

T = TypeVar("T")

GROUPS = ("splitleak.attacks", "splitleak.defenses", "splitleak.metrics", "splitleak.datasets", "splitleak.architectures", "splitleak.servers", "splitleak.detectors")
"""The entry-point groups splitleak reads, one per registry."""


class RegistryError(InputError):
    """An unknown name, a clash of names, or a plugin that cannot be loaded."""


def _name_of(entry: Any) -> str:
    name = getattr(entry, "name", None)
    if not isinstance(name, str) or not name:
        raise RegistryError(f"{entry!r} has no `name` to register under")
    return name


class Registry(Mapping[str, T], Generic[T]):
    """An ordered, open mapping from a name to an entry (a class or a spec object)."""

    def __init__(self, kind: str, group: str, *, check: Callable[[T], None] | None = None) -> None:
        self.kind = kind
        self.group = group
        self._check = check
        self._entries: dict[str, T] = {}
        self._plugins_loaded = False

    # -- registering ---------------------------------------------------------------------

    def register(self, entry: T) -> T:
        """Add `entry` under its `name` (usable as a class decorator); a clash is an error."""
        name = _name_of(entry)
        if self._check is not None:
            self._check(entry)
        known = self._entries.get(name)
        if known is not None and known is not entry:
            raise RegistryError(f"{self.kind} {name!r} is registered twice ({_origin(known)} and {_origin(entry)})")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove `name` (for tests and plugins that replace nothing)."""
        self._entries.pop(name, None)

    def load_plugins(self) -> None:
        """Import the entry points of this registry's group once; an entry point that names an
        entry (not a module) is registered."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for point in sorted(importlib.metadata.entry_points(group=self.group), key=lambda p: p.name):
            try:
                loaded = point.load()
            except Exception as err:  # noqa: BLE001 - a broken plugin is named, in one line
                raise RegistryError(f"cannot load {self.kind} plugin {point.name!r} ({point.value}) from entry point group {self.group}: {type(err).__name__}: {err}") from err
            if not _is_module(loaded) and loaded not in self._entries.values():
                self.register(loaded)
            log.info("loaded %s plugin %s from %s", self.kind, point.name, point.value)

    # -- reading ---------------------------------------------------------------------------

    def __getitem__(self, name: str) -> T:
        if name not in self._entries:
            self.load_plugins()
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        if name in self._entries:
            return True
        self.load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        self.load_plugins()
        return iter(list(self._entries))

    def __len__(self) -> int:
        self.load_plugins()
        return len(self._entries)

    def get_entry(self, name: str) -> T:
        """The entry registered as `name`; RegistryError listing the known names otherwise."""
        if not isinstance(name, str) or name not in self:
            raise RegistryError(f"unknown {self.kind} {name!r}; choose from {sorted(self)}")
        return self._entries[name]

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._entries)})"


def import_submodules(package: str, path: Any) -> None:
    """Import every public module of `package` (its `__path__`), so a module that registers an
    entry with a decorator joins the registry by being there: adding splitleak's own attack or
    defense is one new file."""
    import pkgutil

    for module in pkgutil.iter_modules(path):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package}.{module.name}")


def _is_module(obj: Any) -> bool:
    import types

    return isinstance(obj, types.ModuleType)


def _origin(entry: Any) -> str:
    module = getattr(entry, "__module__", None) or type(entry).__module__
    return f"{module}.{getattr(entry, '__qualname__', type(entry).__qualname__)}"


__all__ = ["GROUPS", "Registry", "RegistryError", "import_submodules"]
