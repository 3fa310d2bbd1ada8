"""The tidy results table: one row per (run, attack, metric, sample), with provenance.

A results folder holds `results.csv` (the table), `summary.csv` (mean, median, std and 95%
bootstrap CI per run, attack and metric), `provenance.json` (versions, configs,
checkpoint hash, timestamp) and `reconstructions.safetensors` (originals and each attack's
reconstructions of a fixed set of test images, for reports). Folders are replaced atomically.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file

from splitleak._csv import unescape_cell, write_frame
from splitleak._io import save_safetensors, write_text_atomic
from splitleak._parse import loads_json
from splitleak.dataspec import InputSpec
from splitleak.cuts import parse_cut
from splitleak.errors import InputError
from splitleak.outputs import claim_folder
from splitleak.swap import finish, leftovers, recover, staged, swap_in
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
        recover_results_folder(directory)
        claim_results_folder(directory)
        with staged(directory, FOLDER_KIND) as staging:
            written = self.write_into(staging)
            finish(staging, FOLDER_KIND, [p.name for p in written])
            swap_in(staging, directory)
        return directory

    def write_into(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Write the table, summary, provenance and reconstructions into the existing `directory`,
        each file atomically, beside whatever else it holds (a stale reconstructions file is
        removed when there are none); returns the paths written. `save` replaces a whole folder."""
        directory = Path(directory)
        written = [directory / TABLE_FILE, directory / SUMMARY_FILE, directory / PROVENANCE_FILE]
        for table, target in ((self.table, written[0]), (self.summary(), written[1])):
            write_frame(table, target)  # text cells escaped against spreadsheet formulas (splitleak._csv)
        write_text_atomic(written[2], json.dumps(self.provenance.to_dict(), indent=2, sort_keys=True) + "\n")
        if self.reconstructions:
            save_safetensors(save_file, self.reconstructions, directory / RECONSTRUCTIONS_FILE)
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
            if not directory.exists() and leftovers(directory, FOLDER_KIND, is_legacy_results_folder):
                raise ResultsError(
                    f"{directory} is missing: a save of it was killed midway and left its results in hidden folders beside it; "
                    "the next `evaluate --out` to it (or splitleak.results.recover_results_folder) puts them back"
                )
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
        table = table.assign(**{c: table[c].map(unescape_cell) for c in _STRINGS if c in table.columns})
        provenance: Any = {}
        if (directory / PROVENANCE_FILE).is_file():
            try:
                provenance = loads_json((directory / PROVENANCE_FILE).read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise ResultsError(f"{directory / PROVENANCE_FILE} is not valid JSON ({err})") from None
        try:
            results = cls(table=table, provenance=provenance)
        except ResultsError as err:
            raise ResultsError(f"{directory}: {err}") from None
        path = directory / RECONSTRUCTIONS_FILE
        if not path.is_file():
            return results
        try:
            check_reconstructions(_layout(path), results)
            reconstructions = load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise ResultsError(f"{path} is unreadable ({err})") from None
        except ResultsError as err:
            raise ResultsError(f"{path}: {err}") from None
        return dataclasses.replace(results, reconstructions=reconstructions)


_IMAGE_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})
_INDEX_DTYPES = frozenset({"I8", "I16", "I32", "I64", "U8", "U16", "U32", "U64"})


def _layout(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """Each stored array's shape and safetensors dtype, read from the header alone."""
    with safe_open(str(path), framework="numpy") as handle:
        return {key: (tuple(handle.get_slice(key).get_shape()), handle.get_slice(key).get_dtype()) for key in handle.keys()}


def _group(key: str) -> tuple[str, str]:
    """(the set an array belongs to, its role) of a key `[RUN/]indices`, `[RUN/]original`,
    `[RUN/]attack/NAME` or `[RUN/]extremes/ATTACK/{indices,original,reconstruction}`."""
    parts = key.split("/")
    at = next((i for i, part in enumerate(parts) if part in ("indices", "original", "attack", "extremes")), len(parts) - 1)
    prefix = "/".join(parts[:at])
    if parts[at] == "extremes":
        return f"{prefix}/extremes/{'/'.join(parts[at + 1:-1])}", parts[-1]
    return prefix, "indices" if parts[at] == "indices" else "image"


def check_reconstructions(layout: dict[str, tuple[tuple[int, ...], str]], results: Results) -> None:
    """Refuse (ResultsError) stored reconstructions that are not what `evaluate` writes for these
    results, from their header alone, before any array is read: images are floating-point
    [N, C, H, W] with (C, H, W) an input shape the provenance records (or, without one, no larger
    than any image splitleak reads), indices are whole numbers [N], N at most the images scored,
    and the arrays of one set (original, each attack's, indices) agree on N."""
    shapes = {tuple(run.meta.input_spec.shape) for run in results.provenance.runs.values() if run.meta is not None}
    most = int(results.table["n"].max()) if len(results.table) else 0
    counts: dict[str, set[int]] = {}
    for key, (shape, dtype) in layout.items():
        group, role = _group(key)
        if role == "indices":
            fits = len(shape) == 1 and dtype in _INDEX_DTYPES
        else:
            fits = len(shape) == 4 and dtype in _IMAGE_DTYPES and (tuple(shape[1:]) in shapes if shapes else _is_input_shape(shape[1:]))
        if not fits or shape[0] > most:
            wanted = f"of shape {sorted(list(s) for s in shapes)}" if shapes else "no larger than any image splitleak reads"
            raise ResultsError(f"{key} is {dtype} {list(shape)}; this folder's reconstructions are at most {most} floating-point images {wanted} (indices: [N] whole numbers)")
        counts.setdefault(group, set()).add(shape[0])
    uneven = sorted(group or "(top level)" for group, ns in counts.items() if len(ns) > 1)
    if uneven:
        raise ResultsError(f"the arrays of {uneven[:3]} hold different numbers of images")


def _is_input_shape(shape: tuple[int, ...]) -> bool:
    try:
        InputSpec(shape=tuple(shape))  # type: ignore[arg-type]
    except InputError:
        return False
    return True


def claim_results_folder(directory: str | os.PathLike[str], option: str = "--out") -> None:
    """Refuse (OutputError) to replace `directory` unless it is absent, empty, or a results
    folder splitleak wrote that holds only the files splitleak wrote there."""
    claim_folder(directory, FOLDER_KIND, legacy=is_legacy_results_folder, replace=True, option=option)


def recover_results_folder(directory: str | os.PathLike[str]) -> Path | None:
    """Repair what a save killed mid-swap left beside `directory` (splitleak.swap.recover): a missing
    folder comes back with the newest complete results; splitleak's hidden leftovers are removed."""
    return recover(directory, FOLDER_KIND, legacy=is_legacy_results_folder)
