"""A restricted unpickler: numpy arrays and plain containers only, never code.

Pickles name the functions that rebuild their objects; `pickle.load` calls whatever they name.
This unpickler resolves exactly the globals a pickled numpy array needs (numpy 1 and 2), plus
`_codecs.encode` for latin-1 text only (how Python 3 writes bytes in protocol 2); every other
global is refused before it is called. The loaded tree is checked again: dicts (with `keys`
types), lists, tuples, str, bytes, numbers and numeric arrays. Used for LPIPS weights
(splitleak.weights) and CIFAR batches (splitleak.cifar).
"""

from __future__ import annotations

import functools
import io
import pickle
from collections.abc import Mapping
from typing import IO, Any

import numpy as np

from splitleak.errors import InputError


class UnsafePickle(InputError):
    """A pickle asked for something other than numpy arrays and plain containers."""


def _reconstruct_fn() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return _reconstruct


def _plain_dtype(*args: Any) -> np.dtype:
    """``numpy.dtype`` for the unpickler, refusing object dtypes (which could hold anything)."""
    dt = np.dtype(*args)
    if dt.hasobject:
        raise UnsafePickle(f"refusing to load an object dtype ({dt!r}) from a pickle")
    return dt


def _latin1_bytes(text: Any, encoding: Any = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol 2 uses it for bytes: a str to latin-1 bytes, nothing else."""
    if not isinstance(text, str) or encoding != "latin1":
        raise UnsafePickle(f"refusing _codecs.encode({type(text).__name__}, {encoding!r}) in a pickle")
    return text.encode("latin1")


@functools.lru_cache(maxsize=1)
def _allowed_globals() -> Mapping[tuple[str, str], Any]:
    """The only globals a pickle may name."""
    rec = _reconstruct_fn()
    return {
        ("numpy.core.multiarray", "_reconstruct"): rec,
        ("numpy._core.multiarray", "_reconstruct"): rec,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _plain_dtype,
        ("_codecs", "encode"): _latin1_bytes,
    }


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that resolves exactly the allowed globals, nothing else."""

    def __init__(self, fh: IO[bytes], error: type[Exception], encoding: str) -> None:
        super().__init__(fh, encoding=encoding)
        self.error = error

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _allowed_globals()[(module, name)]
        except KeyError:
            raise self.error(
                f"refusing to load global {module}.{name} from a pickle: only numpy arrays, "
                "dicts, lists, tuples, strings and numbers are allowed"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise self.error("refusing a pickle with persistent ids")


def _check_tree(obj: object, error: type[Exception], keys: tuple[type, ...], where: str = "") -> None:
    """Allow only dicts with `keys`-typed keys, lists/tuples, scalars and numeric numpy arrays."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject or obj.dtype.kind not in "biufc":
            raise error(f"pickle holds an array of dtype {obj.dtype} at {where or '/'}")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, keys):
                raise error(f"pickle holds a key {k!r} of type {type(k).__name__} at {where or '/'}")
            _check_tree(v, error, keys, f"{where}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_tree(v, error, keys, f"{where}/{i}")
    elif obj is not None and not isinstance(obj, (str, bytes, int, float, bool)):
        raise error(f"pickle holds a {type(obj).__name__} at {where or '/'}")


def restricted_unpickle(
    data: bytes | IO[bytes],
    *,
    unsafe: type[Exception] = UnsafePickle,
    unreadable: type[Exception] = InputError,
    encoding: str = "ASCII",
    keys: tuple[type, ...] = (str,),
) -> Any:
    """Unpickle ``data`` allowing numpy arrays and plain containers only.

    Anything else raises `unsafe` before it is called (the message names the global); a
    corrupt pickle raises `unreadable`. `encoding` decodes Python 2 strings ("latin1" for
    Python 2 numpy pickles such as CIFAR's); `keys` are the dict key types allowed.
    """
    fh = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    try:
        obj = _NumpyOnlyUnpickler(fh, unsafe, encoding).load()
    except UnsafePickle as err:
        raise unsafe(str(err)) from None
    except unsafe:
        raise
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError, IndexError, KeyError, UnicodeError) as err:
        raise unreadable(f"cannot read pickle: {err}") from err
    _check_tree(obj, unsafe, keys)
    return obj


__all__ = ["UnsafePickle", "restricted_unpickle"]
