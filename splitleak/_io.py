"""Small file helpers: atomic writes, content hashes, an early check that a folder takes files."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from safetensors import SafetensorError


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        tmp_path.chmod(0o666 & ~umask())  # mkstemp (and some writers) make it private; the target is an ordinary file
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def umask() -> int:
    """The process's file-creation mask (read without changing it for longer than a call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(target: str | os.PathLike[str], text: str) -> None:
    """Write `text` to `target` so readers see the old file or the new one, never half."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def save_safetensors(save: Callable[..., None], tensors: Mapping[str, Any], target: str | os.PathLike[str], metadata: dict[str, str] | None = None) -> None:
    """Write `tensors` with `save` (safetensors.torch's or safetensors.numpy's save_file) to
    `target` atomically. safetensors reports a failed write (a full disk) as a SafetensorError
    "I/O error: ... (os error 28)": it is raised as the OSError it is, naming `target`."""
    with atomic_path(target) as tmp:
        try:
            save(dict(tensors), str(tmp), metadata=metadata)
        except SafetensorError as err:
            if "I/O error" not in str(err):
                raise
            code = re.search(r"os error (\d+)", str(err))
            raise OSError(int(code.group(1)) if code else errno.EIO, f"cannot write {target}: {' '.join(str(err).split())}") from None


MAX_SAFETENSORS_HEADER = 100 * 2**20  # safetensors' own limit on its JSON header


def is_safetensors_head(head: bytes, size: int) -> bool:
    """Whether a file of `size` bytes starting with `head` (>= 9 bytes read) is laid out as
    safetensors: an 8-byte little-endian header length, then a JSON object that fits. Check this
    before any pickle magic: a header length whose low byte is 0x80 starts with a pickle's byte."""
    if len(head) < 9 or size < 10:
        return False
    length = int.from_bytes(head[:8], "little")
    return 2 <= length <= min(MAX_SAFETENSORS_HEADER, size - 8) and head[8:9] == b"{"


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_writable(out: str | os.PathLike[str]) -> None:
    """Fail now, not after the work, if `out`'s parent folder cannot take new files (OSError)."""
    parent = Path(out).absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".splitleak-write-test.", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OSError(err.errno, f"cannot write results beside {out}: {err.strerror or err}") from None
