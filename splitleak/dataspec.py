"""What data a run uses, as records that import no torch: the input's shape and value range
(`InputSpec`) and which dataset split how (`DataConfig`).

Checkpoints, results folders and sweep grids record these as JSON; `from_dict` reads them back
with the same checks the constructors make. The splits themselves (tensors) are
`splitleak.data.Splits`; the split defaults are filled in by `splitleak.data.resolve_defaults`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from splitleak._config import SEED_RANGE
from splitleak.errors import InputError

LOCATION_FIELDS = ("data_dir", "download")
""":class:`DataConfig` fields that say where the files are and whether to fetch them, not what is
computed. A data config recorded in a file (a checkpoint, a results folder, a progress file) is
replayed without them: only the caller (the command line) says where data is read from and whether
anything is downloaded (docs/trust.md, "What a file says is data")."""

def without_locations(config: Any) -> Any:
    """A recorded data config without its `LOCATION_FIELDS`, for comparing what was computed
    (anything that is not a dict is returned as it is)."""
    return {k: v for k, v in config.items() if k not in LOCATION_FIELDS} if isinstance(config, dict) else config


class DataError(InputError):
    """A dataset cannot be found, parsed, or split as configured."""


# --------------------------------------------------------------------------------------------
# Configuration and containers
# --------------------------------------------------------------------------------------------


def _check_keys(cls: type, d: Mapping[str, Any]) -> None:
    if not isinstance(d, Mapping):
        raise DataError(f"{cls.__name__}.from_dict expects a mapping, got {type(d).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise DataError(
            f"unknown {cls.__name__} key(s) {unknown}; valid keys: {sorted(known)}"
        )


def _is_int(v: object) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _check_optional_int(name: str, v: object, minimum: int) -> None:
    if v is None:
        return
    if not _is_int(v):
        raise DataError(f"{name} must be an int or None, got {v!r}")
    if v < minimum:
        raise DataError(f"{name} must be >= {minimum} (or None), got {v}")


def _as_tuple(name: str, v: object) -> tuple[Any, ...]:
    if isinstance(v, (list, tuple)):
        return tuple(v)
    raise DataError(f"{name} must be a list or tuple, got {v!r}")


MAX_PIXELS = 89_478_485
"""Largest width x height of an input (Pillow's default decompression-bomb limit); an input holds
at most 4 such planes of values (RGBA's): sizes recorded in files are bounded by this."""


@dataclass(frozen=True)
class InputSpec:
    """What the model's input looks like.

    ``shape`` is (C, H, W); ``value_range`` the range pixel values live in; ``mean`` / ``std``
    the per-channel normalisation the model applies internally (None for the built-in
    datasets, whose models see [0, 1] images directly).
    """

    shape: tuple[int, int, int]
    value_range: tuple[float, float] = (0.0, 1.0)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or not all(_is_int(s) and s > 0 for s in self.shape):
            raise DataError(f"InputSpec.shape must be three positive ints (C, H, W), got {self.shape!r}")
        channels, height, width = self.shape
        if height * width > MAX_PIXELS or channels * height * width > 4 * MAX_PIXELS:
            raise DataError(f"InputSpec.shape {list(self.shape)} is larger than any image splitleak reads ({MAX_PIXELS} pixels, {4 * MAX_PIXELS} values)")
        if len(self.value_range) != 2 or not self.value_range[0] < self.value_range[1]:
            raise DataError(f"InputSpec.value_range must be (low, high) with low < high, got {self.value_range!r}")
        channels = self.shape[0]
        for name in ("mean", "std"):
            v = getattr(self, name)
            if v is not None and len(v) != channels:
                raise DataError(f"InputSpec.{name} needs {channels} values (one per channel), got {v!r}")
        if (self.mean is None) != (self.std is None):
            raise DataError("InputSpec.mean and InputSpec.std must be given together")
        if self.std is not None and not all(s > 0 for s in self.std):
            raise DataError(f"InputSpec.std must be positive, got {self.std!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {
            "shape": list(self.shape),
            "value_range": list(self.value_range),
            "mean": None if self.mean is None else list(self.mean),
            "std": None if self.std is None else list(self.std),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> InputSpec:
        """Inverse of :meth:`to_dict`; rejects unknown keys, accepts lists for tuples."""
        _check_keys(cls, d)
        if "shape" not in d:
            raise DataError("InputSpec.from_dict needs 'shape'")
        kw: dict[str, Any] = {"shape": _as_tuple("shape", d["shape"])}
        if "value_range" in d:
            kw["value_range"] = tuple(float(v) for v in _as_tuple("value_range", d["value_range"]))
        for name in ("mean", "std"):
            if d.get(name) is not None:
                kw[name] = tuple(float(v) for v in _as_tuple(name, d[name]))
        return cls(**kw)


@dataclass(frozen=True)
class DataConfig:
    """Which dataset and how to split it. All fields are JSON-serialisable.

    ``aux_pool``: images of the source's training part reserved for the attacker (None = the
    dataset's default); ``aux_size``: how many of that pool the attacker gets (None = all).
    ``limit_train`` / ``limit_test`` keep only the first N of train / test.
    """

    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    split_seed: int = 0
    aux_pool: int | None = None
    aux_size: int | None = None
    limit_train: int | None = None
    limit_test: int | None = None
    download: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, str) or not self.dataset:
            raise DataError(f"DataConfig.dataset must be a non-empty string, got {self.dataset!r}")
        if isinstance(self.data_dir, os.PathLike):
            object.__setattr__(self, "data_dir", os.fspath(self.data_dir))
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            raise DataError(f"DataConfig.data_dir must be a path string or None, got {self.data_dir!r}")
        if not _is_int(self.split_seed):
            raise DataError(f"DataConfig.split_seed must be an int, got {self.split_seed!r}")
        if not SEED_RANGE[0] <= self.split_seed <= SEED_RANGE[1]:
            raise DataError(f"DataConfig.split_seed must be from -2**63 to 2**64 - 1, got {self.split_seed}")
        _check_optional_int("DataConfig.aux_pool", self.aux_pool, 0)
        _check_optional_int("DataConfig.aux_size", self.aux_size, 0)
        _check_optional_int("DataConfig.limit_train", self.limit_train, 1)
        _check_optional_int("DataConfig.limit_test", self.limit_test, 1)
        if self.aux_pool is not None and self.aux_size is not None and self.aux_size > self.aux_pool:
            raise DataError(
                f"DataConfig.aux_size ({self.aux_size}) cannot exceed aux_pool ({self.aux_pool})"
            )
        if not isinstance(self.download, bool):
            raise DataError(f"DataConfig.download must be a bool, got {self.download!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DataConfig:
        """Build from a dict; unknown keys raise :class:`DataError`, missing keys take defaults."""
        _check_keys(cls, d)
        return cls(**d)
