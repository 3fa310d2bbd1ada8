"""What splitleak may overwrite: only outputs it recognises as its own.

A folder splitleak writes holds a marker, `.splitleak.json`, saying what wrote it (`kind`) and,
for a folder that is replaced whole (a results folder), which entries it wrote. A file splitleak
writes is recognised by its content: a checkpoint or progress file by its safetensors header, a
PDF by its Creator, a CSV by its header line, a gate output by its opening. Before a command
writes into or replaces an existing path it asks here; a path it cannot recognise is refused with
`OutputError` (a ValueError: one line, exit 2 on the command line) and left untouched.

Folders and files written by releases before the marker are recognised by their names
(`legacy`): a results folder holding only the four results files is still splitleak's.
This module imports neither torch nor pandas.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Collection
from pathlib import Path

from splitleak._io import is_safetensors_head, write_text_atomic
from splitleak.errors import InputError

MARKER = ".splitleak.json"
_FORMAT = "splitleak-output"
_MAX_MARKER_BYTES = 1 << 20
_TEMPORARY = re.compile(r"^\..+\.tmp$")  # atomic_path's temporary files left by a killed run

Recogniser = Callable[[Path], bool]


class OutputError(InputError):
    """An output path that holds something splitleak did not write."""


def folder_kind(folder: str | os.PathLike[str]) -> tuple[str, frozenset[str]] | None:
    """The (kind, entries written) a folder's marker records, or None when it has no readable one."""
    marker = Path(folder) / MARKER
    try:
        if not marker.is_file() or marker.stat().st_size > _MAX_MARKER_BYTES:
            return None
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("kind"), str):
        return None
    files = data.get("files", [])
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    return data["kind"], frozenset(files)


def mark_folder(folder: str | os.PathLike[str], kind: str, files: Collection[str] = ()) -> Path:
    """Write `folder`'s marker: splitleak wrote it as `kind`, with these entries."""
    path = Path(folder) / MARKER
    write_text_atomic(path, json.dumps({"format": _FORMAT, "kind": kind, "files": sorted(files)}, indent=2) + "\n")
    return path


def add_to_marker(folder: str | os.PathLike[str], kind: str, files: Collection[str]) -> Path:
    """Record more entries splitleak wrote into a folder of `kind` (the marker is created if absent)."""
    marked = folder_kind(folder)
    earlier = marked[1] if marked is not None and marked[0] == kind else frozenset()
    return mark_folder(folder, kind, earlier | set(files))


def _entries(folder: Path) -> list[str]:
    return sorted(entry.name for entry in folder.iterdir())


def _shown(names: Collection[str], limit: int = 3) -> str:
    names = sorted(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(repr(n) for n in names[:limit]) + more


def claim_folder(
    folder: str | os.PathLike[str],
    kind: str,
    *,
    legacy: Callable[[list[str]], bool] | None = None,
    replace: bool = False,
    option: str = "--out",
) -> None:
    """Refuse (OutputError) unless `folder` is absent, empty, or a folder splitleak wrote as `kind`.

    With `replace` (the folder will be replaced whole, so whatever it holds is deleted) every entry
    must also be one the marker lists: a file a user added to a results folder is not ours to delete.
    `legacy(entries)` recognises folders written before the marker existed.
    """
    folder = Path(folder)
    if not folder.exists() and not folder.is_symlink():
        return
    if folder.is_symlink() or not folder.is_dir():
        raise OutputError(f"{option} {folder} exists and is not a folder; choose another path")
    try:
        entries = _entries(folder)
    except OSError as err:
        raise OutputError(f"cannot read {option} {folder} ({err.strerror or err})") from None
    if not entries:
        return
    marked = folder_kind(folder)
    if marked is None:
        if legacy is not None and legacy(entries):
            return
        raise OutputError(
            f"{option} {folder} is a folder splitleak did not write ({len(entries)} entries, e.g. {_shown(entries)}); "
            "nothing was changed: choose a new or empty folder"
        )
    found, written = marked
    if found != kind:
        raise OutputError(f"{option} {folder} was written by splitleak as a {found} folder, not a {kind} folder; nothing was changed: choose another folder")
    if replace:
        foreign = [e for e in entries if e != MARKER and e not in written and not _TEMPORARY.match(e)]
        if foreign:
            raise OutputError(
                f"{option} {folder} holds {_shown(foreign)}, which splitleak did not write there, and would be replaced; "
                "nothing was changed: move them, or choose another folder"
            )


def claim_file(path: str | os.PathLike[str], recognise: Recogniser, what: str, *, option: str = "--out") -> None:
    """Refuse (OutputError) unless `path` is absent, empty, or a `what` splitleak wrote (by `recognise`)."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink() or not path.is_file():
        raise OutputError(f"{option} {path} exists and is not a regular file; choose another path")
    try:
        if path.stat().st_size == 0 or recognise(path):
            return
    except OSError as err:
        raise OutputError(f"cannot read {option} {path} ({err.strerror or err})") from None
    raise OutputError(f"{option} {path} exists and is not a {what} written by splitleak; nothing was changed: choose another path or remove it yourself")


# --------------------------------------------------------------------------------------------
# recognisers: read a bounded prefix or suffix, never the whole file, never run anything


def safetensors_metadata(path: Path) -> dict[str, str] | None:
    """The `__metadata__` of a safetensors file's JSON header, or None if it is not one."""
    with open(path, "rb") as handle:
        head = handle.read(9)
        if not is_safetensors_head(head, path.stat().st_size):
            return None
        raw = head[8:] + handle.read(int.from_bytes(head[:8], "little") - 1)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else None


def has_safetensors_key(key: str) -> Recogniser:
    """A recogniser of safetensors files whose metadata holds `key`."""

    def recognise(path: Path) -> bool:
        meta = safetensors_metadata(path)
        return meta is not None and key in meta

    return recognise


def _head(path: Path, size: int) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(size)


def _tail(path: Path, size: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - size))
        return handle.read()


_CREATOR = b"/Creator (splitleak"
_TRAILER = re.compile(rb"/Info\s+(\d+)\s+0\s+R.*?startxref\s+(\d+)\s+%%EOF\s*$", re.S)
_XREF_SECTION = re.compile(rb"xref\s+(\d+)\s+(\d+)\s*?(\r\n|\n|\r)")


def _info_object(path: Path) -> bytes:
    """The start of the document information object a PDF's trailer points at (b"" when the file
    does not lead there through a classic xref table, as matplotlib writes it). Reads three
    bounded pieces: the trailer, one xref entry and the object."""
    trailer = _TRAILER.search(_tail(path, 4096))
    if trailer is None:
        return b""
    number, xref = int(trailer.group(1)), int(trailer.group(2))
    size = path.stat().st_size
    if xref >= size:  # offsets past the end (a damaged or hostile trailer) lead nowhere
        return b""
    with open(path, "rb") as handle:
        handle.seek(xref)
        section = _XREF_SECTION.match(handle.read(64))
        if section is None or not int(section.group(1)) <= number < int(section.group(1)) + int(section.group(2)):
            return b""
        at = xref + section.end() + 20 * (number - int(section.group(1)))  # entries are 20 bytes each
        if at + 20 > size:
            return b""
        handle.seek(at)
        entry = handle.read(20)
        if not re.fullmatch(rb"\d{10} \d{5} n\s{2}", entry):
            return b""
        handle.seek(int(entry[:10]))
        obj = handle.read(4096)
    return obj if obj.startswith(b"%d 0 obj" % number) else b""


def is_splitleak_pdf(path: Path) -> bool:
    """A PDF whose document information names splitleak as its creator, found by following the
    trailer to the information object: the words anywhere else (a page that quotes them) do not
    count, and a report of any size is recognised (a large report's xref table alone can be
    longer than any fixed tail: 111 KB for the defense study's 5,566 objects)."""
    if not _head(path, 5) == b"%PDF-":
        return False
    obj = _info_object(path)
    return b"endobj" in obj and _CREATOR in obj[: obj.find(b"endobj")]


def starts_with(*prefixes: bytes) -> Recogniser:
    """A recogniser of files whose first bytes are one of `prefixes`."""
    longest = max(len(p) for p in prefixes)

    def recognise(path: Path) -> bool:
        head = _head(path, longest)
        return any(head.startswith(p) for p in prefixes)

    return recognise


def csv_with_header(*first_columns: str) -> Recogniser:
    """A recogniser of CSV files whose header begins with `first_columns`."""
    prefix = ",".join(first_columns)

    def recognise(path: Path) -> bool:
        line = _head(path, 1 << 16).split(b"\n", 1)[0].decode("utf-8", "replace").strip()
        return line == prefix or line.startswith(prefix + ",")

    return recognise


def is_gate_json(path: Path) -> bool:
    """A verdict written by `splitleak gate --json`."""
    if path.stat().st_size > 64 << 20:
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and {"passed", "exit_code", "checks"} <= set(data)


__all__ = [
    "MARKER",
    "OutputError",
    "add_to_marker",
    "claim_file",
    "claim_folder",
    "csv_with_header",
    "folder_kind",
    "has_safetensors_key",
    "is_gate_json",
    "is_splitleak_pdf",
    "mark_folder",
    "safetensors_metadata",
    "starts_with",
]
