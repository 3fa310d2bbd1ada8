"""The tidy results table: one row per (run, attack, metric, sample), with provenance.

A results folder holds `results.csv` (the table), `summary.csv` (mean, median, std and 95%
bootstrap CI per run, attack and metric), `provenance.json` (versions, configs,
checkpoint hash, timestamp) and `reconstructions.safetensors` (originals and each attack's
reconstructions of a fixed set of test images, for reports). Folders are replaced atomically.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from splitleak._io import atomic_path, umask, write_text_atomic
from splitleak.cuts import parse_cut
from splitleak.errors import InputError
from splitleak.outputs import claim_folder, mark_folder
from splitleak.records import Provenance, RecordError
from splitleak.uncertainty import summarize

COLUMNS: tuple[str, ...] = (
    "run",
    "checkpoint",
    "checkpoint_sha256",
    "dataset",
    "arch",
    "cut",
    "defense",
    "defense_params",
    "attack",
    "metric",
    "value",
    "sample",
    "n",
    "seed",
    "ci_low",
    "ci_high",
)
_STRINGS = ("run", "checkpoint", "checkpoint_sha256", "dataset", "arch", "defense", "defense_params", "attack", "metric")
_INTS = ("n", "seed")
MODEL_LEVEL = ""  # the `attack` value of rows that describe the model itself (accuracy, dcor)
WORST_CASE = "worst"  # the `attack` value of the per-image worst case over the attacks (splitleak.worst_case)

TABLE_FILE = "results.csv"
SUMMARY_FILE = "summary.csv"
PROVENANCE_FILE = "provenance.json"
RECONSTRUCTIONS_FILE = "reconstructions.safetensors"
FOLDER_KIND = "results"
_FILES = frozenset({TABLE_FILE, SUMMARY_FILE, PROVENANCE_FILE, RECONSTRUCTIONS_FILE})


def is_legacy_results_folder(entries: list[str]) -> bool:
    """A results folder written before folders carried splitleak's marker: only results files."""
    return TABLE_FILE in entries and set(entries) <= _FILES


class ResultsError(InputError):
    """A results table or folder that does not follow the schema."""


_OPTIONAL_FLOATS = ("ci_low", "ci_high")  # the estimator's CI for set-level values; empty for per-sample rows


def validate(table: pd.DataFrame) -> pd.DataFrame:
    """Check the schema and return a copy with canonical column order and dtypes."""
    table = table.assign(**{c: np.nan for c in _OPTIONAL_FLOATS if c not in table.columns})
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ResultsError(f"results table lacks column(s) {missing}")
    out = table.loc[:, list(COLUMNS)].copy()
    for col in _STRINGS:
        out[col] = out[col].fillna("").astype(str)
    out["cut"] = _cuts(out["cut"])
    for col in _INTS:
        values = pd.to_numeric(out[col], errors="coerce")
        if values.isna().any() or (values != values.round()).any():
            raise ResultsError(f"results column {col!r} must hold whole numbers")
        out[col] = values.astype("int64")
    values = pd.to_numeric(out["value"], errors="coerce")
    if values.isna().any():
        bad = out.loc[values.isna(), "metric"].unique().tolist()
        raise ResultsError(f"results column 'value' has missing or non-numeric entries (metrics {bad})")
    out["value"] = values.astype("float64")
    sample = pd.to_numeric(out["sample"], errors="coerce")
    if (sample.dropna() < 0).any() or (sample.dropna() != sample.dropna().round()).any():
        raise ResultsError("results column 'sample' must hold non-negative whole numbers or be empty")
    out["sample"] = sample.astype("Int64")
    for col in _OPTIONAL_FLOATS:
        bounds = pd.to_numeric(out[col], errors="coerce")
        if bounds.isna().ne(out[col].isna()).any():
            raise ResultsError(f"results column {col!r} must be numeric or empty")
        out[col] = bounds.astype("float64")
    if (out["metric"] == "").any():
        raise ResultsError("results rows need a metric name")
    return out.reset_index(drop=True)


def _cuts(column: pd.Series) -> pd.Series:
    """The cut column: int64 while every cut is a number (as before named cuts), else text."""
    try:
        cuts = [parse_cut(c) for c in column]
    except InputError:
        raise ResultsError("results column 'cut' must hold whole numbers or cut names") from None
    if all(isinstance(c, int) for c in cuts):
        return pd.Series(cuts, index=column.index, dtype="int64")
    return pd.Series([str(c) for c in cuts], index=column.index, dtype=object)


def as_array(value: Any) -> np.ndarray:
    """A contiguous numpy array of a tensor (any device) or array-like, without importing torch."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.ascontiguousarray(value)


@dataclass(frozen=True)
class Results:
    """A validated results table, its provenance and optional reconstructions (numpy arrays:
    reading results never needs torch; tensors given here are converted)."""

    table: pd.DataFrame
    provenance: Provenance = field(default_factory=Provenance)  # a recorded table is read with Provenance.from_dict
    reconstructions: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "table", validate(self.table))
        if not isinstance(self.provenance, Provenance):
            try:
                object.__setattr__(self, "provenance", Provenance.from_dict(self.provenance))
            except RecordError as err:
                raise ResultsError(f"provenance: {err}") from None
        object.__setattr__(self, "reconstructions", {k: as_array(v) for k, v in self.reconstructions.items()})

    def summary(self) -> pd.DataFrame:
        """One row per (run, attack, metric): mean, median, std, count, infinite, 95% CI."""
        return summarize(self.table)

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the folder atomically: readers see the old results or the new, never half.

        An existing `directory` is replaced only if splitleak wrote it as a results folder and it
        holds nothing else (`claim_results_folder`); otherwise OutputError and nothing changes.
        """
        directory = Path(directory)
        claim_results_folder(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        staging.chmod(0o777 & ~umask())  # mkdtemp makes it private (0700); results are ordinary files
        try:
            written = self.write_into(staging)
            mark_folder(staging, FOLDER_KIND, [p.name for p in written])
            _swap_in(staging, directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return directory

    def write_into(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Write the table, summary, provenance and reconstructions into the existing `directory`,
        each file atomically, beside whatever else it holds (a stale reconstructions file is
        removed when there are none); returns the paths written. `save` replaces a whole folder."""
        directory = Path(directory)
        written = [directory / TABLE_FILE, directory / SUMMARY_FILE, directory / PROVENANCE_FILE]
        for table, target in ((self.table, written[0]), (self.summary(), written[1])):
            with atomic_path(target) as tmp:
                table.to_csv(tmp, index=False, float_format="%.10g")
        write_text_atomic(written[2], json.dumps(self.provenance.to_dict(), indent=2, sort_keys=True) + "\n")
        if self.reconstructions:
            with atomic_path(directory / RECONSTRUCTIONS_FILE) as tmp:
                save_file(dict(self.reconstructions), str(tmp))
            written.append(directory / RECONSTRUCTIONS_FILE)
        else:
            (directory / RECONSTRUCTIONS_FILE).unlink(missing_ok=True)
        return written

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> "Results":
        """Read and validate a results folder written by `save`."""
        directory = Path(directory)
        table_path = directory / TABLE_FILE
        if not table_path.is_file():
            raise ResultsError(f"{directory} is not a results folder (no {TABLE_FILE})")
        try:
            table = pd.read_csv(
                table_path,
                dtype={c: str for c in _STRINGS},
                keep_default_na=False,
                na_values={"sample": [""], "value": [""], "ci_low": [""], "ci_high": [""]},
            )
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise ResultsError(f"{table_path} is not a readable CSV table ({err})") from None
        provenance: Any = {}
        if (directory / PROVENANCE_FILE).is_file():
            try:
                provenance = json.loads((directory / PROVENANCE_FILE).read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise ResultsError(f"{directory / PROVENANCE_FILE} is not valid JSON ({err})") from None
        reconstructions: dict[str, np.ndarray] = {}
        if (directory / RECONSTRUCTIONS_FILE).is_file():
            try:
                reconstructions = load_file(str(directory / RECONSTRUCTIONS_FILE))
            except (SafetensorError, OSError) as err:
                raise ResultsError(f"{directory / RECONSTRUCTIONS_FILE} is unreadable ({err})") from None
        try:
            return cls(table=table, provenance=provenance, reconstructions=reconstructions)
        except ResultsError as err:
            raise ResultsError(f"{directory}: {err}") from None


def claim_results_folder(directory: str | os.PathLike[str], option: str = "--out") -> None:
    """Refuse (OutputError) to replace `directory` unless it is absent, empty, or a results
    folder splitleak wrote that holds only the files splitleak wrote there."""
    claim_folder(directory, FOLDER_KIND, legacy=is_legacy_results_folder, replace=True, option=option)


def _swap_in(staging: Path, directory: Path) -> None:
    """Replace `directory` by `staging` with renames, keeping the old one until the new is in place."""
    if not directory.exists():
        os.replace(staging, directory)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old.", dir=directory.parent))
    old.rmdir()
    os.replace(directory, old)
    try:
        os.replace(staging, directory)
    except OSError:
        os.replace(old, directory)
        raise
    shutil.rmtree(old, ignore_errors=True)
