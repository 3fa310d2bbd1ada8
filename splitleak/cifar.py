"""CIFAR-10's python batches read without running code from them.

`cifar-10-batches-py/data_batch_1..5` and `test_batch` are Python 2 pickles of a dict:
``data`` (uint8 [N, 3072], each row the red, green and blue 32x32 planes), ``labels`` (N ints),
``filenames`` and ``batch_label``. They are read with splitleak.safe_pickle's restricted
unpickler (numpy arrays and plain containers only), never with `pickle.load`; anything else
in a file is a DataError naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from splitleak.dataspec import DataError
from splitleak.safe_pickle import restricted_unpickle

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
SHAPE = (3, 32, 32)
CLASSES = 10


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file as (uint8 images [N, 3, 32, 32], int64 labels [N])."""
    try:
        with open(path, "rb") as fh:
            batch = restricted_unpickle(fh, unsafe=DataError, unreadable=DataError, encoding="latin1", keys=(str, bytes))
    except OSError as err:
        raise DataError(f"cannot read CIFAR batch {path}: {err}") from None
    except DataError as err:
        raise DataError(f"CIFAR batch {path}: {err}") from None
    if not isinstance(batch, dict):
        raise DataError(f"CIFAR batch {path} holds a {type(batch).__name__}, not a dict")
    table = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = table.get("data"), table.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != int(np.prod(SHAPE)):
        what = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"CIFAR batch {path}: 'data' must be uint8 [N, 3072], got {what}")
    if not isinstance(labels, (list, tuple, np.ndarray)) or len(labels) != len(data):
        raise DataError(f"CIFAR batch {path}: 'labels' must list one label per image ({len(data)})")
    y = np.asarray(labels)
    if y.size and (not np.issubdtype(y.dtype, np.integer) or int(y.min()) < 0 or int(y.max()) >= CLASSES):
        raise DataError(f"CIFAR batch {path}: labels must be whole numbers in [0, {CLASSES})")
    return np.ascontiguousarray(data.reshape(-1, *SHAPE)), y.astype(np.int64)


def read_batches(folder: Path, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The batches `names` of `folder`, concatenated in order."""
    parts = [read_batch(folder / name) for name in names]
    return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])


def missing_files(folder: Path) -> list[str]:
    """The batch files `folder` lacks (all of them when it does not exist)."""
    return [name for name in TRAIN_FILES + TEST_FILES if not (folder / name).is_file()]


__all__ = ["CLASSES", "FOLDER", "SHAPE", "TEST_FILES", "TRAIN_FILES", "missing_files", "read_batch", "read_batches"]
