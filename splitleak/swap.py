"""Replace an output whole: stage it in a hidden sibling folder, then swap it in.

A staged folder is named `.NAME.splitleak-new-XXXXXXXX` beside its target NAME and carries
splitleak's marker from the start: kind `KIND.partial` while it is being written, `KIND` once it
is complete (`stage` / `finish`). `swap_in` puts a complete folder at the target:

- on Linux, one `renameat2(RENAME_EXCHANGE)` trades the new folder and the old one atomically
  (a crash leaves either the old target or the new, and at worst the old one in a hidden folder);
- elsewhere, or where the file system does not support it, two renames: the old target to
  `.NAME.splitleak-old-XXXXXXXX`, then the new one into place. A SIGKILL between the two leaves
  no target and both folders hidden, which `recover` repairs.

`recover` (run before the next write of the same target) puts the newest complete content back
at a missing target (a complete new folder, else the old one) and removes the hidden folders
that carry splitleak's marker of this kind; a hidden folder without the marker is left alone.
`commit_files` is the same idea for a set of files that live beside other files (a report's PDF,
CSVs and HTML): they are staged in one folder and moved into place with interrupts held back.
This module imports neither torch nor pandas.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path

from splitleak._io import umask
from splitleak.outputs import MARKER, folder_kind, mark_folder

_NEW, _OLD = "splitleak-new-", "splitleak-old-"
_PARTIAL = ".partial"
_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _hidden(target: Path, role: str) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(target.name)}\.{role}[a-z0-9_]{{8}}$")


def stage(target: str | os.PathLike[str], kind: str) -> Path:
    """A new hidden folder beside `target` (created with its parents), marked as a partial `kind`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.{_NEW}", dir=target.parent))
    try:
        staging.chmod(0o777 & ~umask())  # mkdtemp makes it private (0700); outputs are ordinary folders
        mark_folder(staging, kind + _PARTIAL)
    except BaseException:  # a full disk while writing the marker: leave nothing behind
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def finish(staging: Path, kind: str, files: Collection[str]) -> None:
    """Mark a staged folder complete: splitleak wrote it as `kind`, holding `files`."""
    mark_folder(staging, kind, files)


@contextlib.contextmanager
def staged(target: str | os.PathLike[str], kind: str) -> Iterator[Path]:
    """A staged folder for `target`, removed (whatever happens) when the block ends."""
    staging = stage(target, kind)
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _libc_renameat2() -> Callable[..., int] | None:
    name = ctypes.util.find_library("c")
    try:
        function = getattr(ctypes.CDLL(name, use_errno=True), "renameat2")
    except (OSError, AttributeError, TypeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_RENAMEAT2 = _libc_renameat2()


def exchange(a: Path, b: Path) -> bool:
    """Trade the two existing paths atomically; False where this system or file system cannot."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(code, f"cannot swap {b} into place: {os.strerror(code)}", str(b))


def swap_in(staging: Path, target: Path) -> None:
    """Put the complete `staging` folder at `target`, keeping the old one until the new is in place."""
    if not target.exists() and not target.is_symlink():
        os.replace(staging, target)
        return
    if exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # it now holds the old folder
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.{_OLD}", dir=target.parent))
    old.rmdir()
    with _interrupts_held():  # Ctrl-C waits until the target is back; only a SIGKILL can split the pair
        os.replace(target, old)
        try:
            os.replace(staging, target)
        except OSError:
            os.replace(old, target)
            raise
    shutil.rmtree(old, ignore_errors=True)


def _ours(folder: Path, kind: str, legacy: Callable[[list[str]], bool] | None) -> str | None:
    """'complete' or 'partial' for a hidden folder splitleak wrote as `kind`, else None."""
    if folder.is_symlink() or not folder.is_dir():
        return None
    marked = folder_kind(folder)
    if marked is not None:
        return {kind: "complete", kind + _PARTIAL: "partial"}.get(marked[0])
    if legacy is not None:
        with contextlib.suppress(OSError):
            return "complete" if legacy(sorted(e.name for e in folder.iterdir())) else None
    return None


def leftovers(target: str | os.PathLike[str], kind: str, legacy: Callable[[list[str]], bool] | None = None) -> list[tuple[Path, str, str]]:
    """Hidden folders an interrupted write of `target` left: (path, 'new' | 'old', 'complete' | 'partial'),
    only those carrying splitleak's marker of `kind` (or, for old folders, recognised by `legacy`)."""
    target = Path(target)
    found = []
    try:
        entries = sorted(target.parent.iterdir()) if target.parent.is_dir() else []
    except OSError:
        return []
    for entry in entries:
        for role, pattern in (("new", _hidden(target, _NEW)), ("old", _hidden(target, _OLD))):
            if pattern.match(entry.name):
                state = _ours(entry, kind, legacy if role == "old" else None)
                if state is not None:
                    found.append((entry, role, state))
    return found


def recover(target: str | os.PathLike[str], kind: str, legacy: Callable[[list[str]], bool] | None = None) -> Path | None:
    """Repair what an interrupted swap of `target` left; return the folder put back at a missing
    target (None when the target was there or nothing complete was left)."""
    target = Path(target)
    found = leftovers(target, kind, legacy)
    restored = None
    if not target.exists() and not target.is_symlink():
        complete = [(role == "new", (path / MARKER).stat().st_mtime_ns if (path / MARKER).exists() else 0, path) for path, role, state in found if state == "complete"]
        if complete:
            restored = max(complete)[2]  # a finished new folder before the old one; the newest first
            os.replace(restored, target)
    discard(path for path, _, _ in found if path != restored)
    return restored


def discard(folders: Iterable[Path]) -> None:
    """Remove hidden folders `leftovers` found (splitleak's own, by their marker)."""
    for path in folders:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back during the block: a signal that arrives is raised again, with
    the handler it would have met, when the block ends (only the main thread can do this)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {s: h for s in (signal.SIGINT, signal.SIGTERM) if (h := signal.getsignal(s)) is not None}
    caught: list[int] = []
    for signum in before:
        signal.signal(signum, lambda number, _frame: caught.append(number))
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)


def commit_files(staging: Path, targets: dict[str, Path], remove: Collection[Path] = ()) -> None:
    """Move each staged file `staging/NAME` to `targets[NAME]` and delete `remove` (stale members of
    the set), with Ctrl-C and SIGTERM held back until all are done: readers see the old set or the
    new one (a SIGKILL, which cannot be held, could still split it; the next write repairs it)."""
    with _interrupts_held():
        for name, target in targets.items():
            os.replace(staging / name, target)
        for path in remove:
            path.unlink(missing_ok=True)


__all__ = ["commit_files", "discard", "exchange", "finish", "leftovers", "recover", "stage", "staged", "swap_in"]
