"""What a report is made of: one `Run` per checkpoint, gathered from Results objects or folders.

A results folder (or Results object) may hold several runs (the `run` column). Each run gets
its own rows, its provenance and its stored reconstructions:

* provenance: the folder's `Provenance.runs[<run>]`, else its only run when that run evaluated the
  same checkpoint (sha256), else nothing (the notes say so);
* reconstructions: keys `<run>/indices`, `<run>/original`, `<run>/attack/<name>` when present,
  else the unprefixed `indices`, `original`, `attack/<name>` of a folder whose provenance names
  this run (or that holds this run only).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from splitleak._config import short_number
from splitleak._parse import loads_json
from splitleak.cuts import Cut, cut_sort_key, parse_cut
from splitleak.errors import InputError
from splitleak.records import CheckpointMeta, Provenance, RunProvenance
from splitleak.results import MODEL_LEVEL, WORST_CASE, Results, ResultsError

ResultsLike = Results | str | os.PathLike[str]


class ReportError(InputError):
    """Input a report cannot be made from (missing folder, not a results folder, no rows)."""


@dataclass(frozen=True)
class Run:
    """One checkpoint as the report sees it: its rows, provenance, reconstructions and a label."""

    run: str
    label: str
    table: pd.DataFrame
    provenance: RunProvenance = field(default_factory=RunProvenance)
    reconstructions: Mapping[str, np.ndarray] = field(default_factory=dict)
    source: str = ""

    def first(self, column: str) -> Any:
        """The run's value of an identifying column (the same on every row)."""
        return self.table[column].iloc[0]

    @property
    def defense(self) -> str:
        return str(self.first("defense"))

    @property
    def params(self) -> dict[str, Any]:
        return parse_params(str(self.first("defense_params")))

    @property
    def defense_label(self) -> str:
        """How reports show the defense ('NoPeek α=5'): as evaluate recorded it from the defense's
        registry entry, else (results of an earlier release) `legacy_defense_label`."""
        label = self.provenance.defense.get("label")
        return label if isinstance(label, str) and label else legacy_defense_label(self.defense, self.params)

    @property
    def strength(self) -> float:
        """The defense's main knob (alpha, noise scale, dropout rate): 0 without one, NaN if unknown."""
        if "label" in self.provenance.defense:
            value = self.provenance.defense.get("strength")
            return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
        return legacy_defense_strength(self.defense, self.params)

    @property
    def rank(self) -> int:
        """Where the defense comes in the reports' order (its registry's)."""
        rank = self.provenance.defense.get("rank")
        if isinstance(rank, int) and not isinstance(rank, bool):
            return rank
        return LEGACY_ORDER.index(self.defense) if self.defense in LEGACY_ORDER else len(LEGACY_ORDER)

    @property
    def cut(self) -> Cut:
        return parse_cut(self.first("cut"))

    @property
    def attacks(self) -> tuple[str, ...]:
        """Attacks with rows for this run, in the order they were run (not the worst case)."""
        names = self.table.loc[~self.table["attack"].isin((MODEL_LEVEL, WORST_CASE)), "attack"]
        return tuple(dict.fromkeys(names))

    @property
    def meta(self) -> CheckpointMeta | None:
        """The checkpoint metadata recorded in provenance (None if unknown)."""
        return self.provenance.meta

    @property
    def value_range(self) -> tuple[float, float]:
        """The inputs' value range: the checkpoint's input spec, else the stored originals' span."""
        if self.meta is not None:
            low, high = self.meta.input_spec.value_range
            return float(low), float(high)
        original = self.reconstructions.get("original")
        if original is not None and original.size:
            low, high = min(0.0, float(original.min())), max(1.0, float(original.max()))
            return low, high
        return 0.0, 1.0


def parse_params(text: str) -> dict[str, Any]:
    """The defense_params JSON column as a dict ({} for empty or unreadable text)."""
    try:
        value = loads_json(text) if text else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def legacy_defense_label(defense: str, params: Mapping[str, Any]) -> str:
    """The label of a defense in results written before provenance recorded it (the built-in
    defenses of that release): 'NoPeek α=5', 'noise σ=1', 'dropout p=0.5'."""
    if defense == "none":
        return "no defense"
    if defense == "nopeek" and "alpha" in params:
        return f"NoPeek α={short_number(params['alpha'])}"
    if defense == "noise" and "scale" in params:
        laplace = params.get("distribution") == "laplace"
        return f"noise {'b' if laplace else 'σ'}={short_number(params['scale'])}" + (" (Laplace)" if laplace else "")
    if defense == "dropout" and "rate" in params:
        return f"dropout p={short_number(params['rate'])}"
    shown = ", ".join(f"{k}={short_number(v)}" for k, v in sorted(params.items()))
    return f"{defense} {shown}".strip()


LEGACY_ORDER = ("none", "nopeek", "noise", "dropout")
_STRENGTH = {"nopeek": "alpha", "noise": "scale", "dropout": "rate"}


def legacy_defense_strength(defense: str, params: Mapping[str, Any]) -> float:
    """The main knob of a defense in results written before provenance recorded it."""
    if defense == "none":
        return 0.0
    value = params.get(_STRENGTH.get(defense, ""), math.nan)
    return float(value) if isinstance(value, (int, float)) else math.nan


def _sort_key(run: Run) -> tuple:
    strength = run.strength
    return (
        str(run.first("dataset")), str(run.first("arch")), cut_sort_key(run.cut), run.rank, run.defense,
        math.inf if math.isnan(strength) else strength, str(run.first("defense_params")), _seed(run), run.run, run.source,
    )


def _seed(run: Run) -> float:
    """The training seed for ordering (unknown last)."""
    seed = run.meta.seed if run.meta is not None else None
    return math.inf if seed is None else float(seed)


def as_results(items: ResultsLike | Sequence[ResultsLike]) -> list[tuple[str, Results]]:
    """Results objects and folders as (source name, Results); folders are loaded and checked."""
    if isinstance(items, (Results, str, os.PathLike)):
        items = [items]
    out: list[tuple[str, Results]] = []
    for index, item in enumerate(items):
        if isinstance(item, Results):
            out.append((f"results #{index + 1}", item))
            continue
        if not isinstance(item, (str, os.PathLike)):
            raise ReportError(f"expected Results or a results folder, got {type(item).__name__}")
        path = Path(item)
        if not path.exists():
            raise ReportError(f"{path}: no such results folder")
        if not path.is_dir():
            raise ReportError(f"{path} is not a folder (expected a results folder with results.csv)")
        try:
            out.append((str(path), Results.load(path)))
        except ResultsError as err:
            raise ReportError(str(err)) from None
    if not out:
        raise ReportError("no results to report on")
    return out


def _run_provenance(provenance: Provenance, run: str, sha: str) -> RunProvenance | None:
    found = provenance.run(run)
    if found is not None:
        return found
    if len(provenance.runs) == 1:
        only = provenance.only
        if only.checkpoint is not None and only.checkpoint.sha256 == sha:
            return only
    return None


def _run_reconstructions(stored: Mapping[str, np.ndarray], run: str, owns_unprefixed: bool) -> dict[str, np.ndarray]:
    prefix = f"{run}/"
    prefixed = {k[len(prefix):]: v for k, v in stored.items() if k.startswith(prefix)}
    if prefixed:
        return prefixed
    if not owns_unprefixed:
        return {}
    return {k: v for k, v in stored.items() if k in ("indices", "original") or k.startswith(("attack/", "extremes/"))}


def _split_runs(source: str, results: Results) -> list[tuple[str, pd.DataFrame, RunProvenance, dict[str, np.ndarray]]]:
    table = results.table
    if table.empty:
        raise ReportError(f"{source} has no result rows")
    run_ids = list(dict.fromkeys(table["run"]))
    out = []
    for run in run_ids:
        rows = table[table["run"] == run].reset_index(drop=True)
        sha = str(rows["checkpoint_sha256"].iloc[0])
        provenance = _run_provenance(results.provenance, run, sha)
        owns = len(run_ids) == 1 or (provenance is not None and len(results.provenance.runs) == 1)
        out.append((run, rows, provenance or RunProvenance(), _run_reconstructions(results.reconstructions, run, owns)))
    return out


def _labels(runs: Sequence[Run]) -> list[str]:
    """Unique short labels: defense and parameters, cut, then dataset / arch / training seed / run id as needed."""

    def varies(column: str) -> bool:
        return len({str(r.first(column)) for r in runs}) > 1

    labels = []
    for r in runs:
        parts = [r.defense_label, f"cut {r.cut}"]
        if varies("arch"):
            parts.append(str(r.first("arch")))
        if varies("dataset"):
            parts.append(str(r.first("dataset")))
        labels.append(", ".join(parts))
    seeds = [r.meta.seed if r.meta is not None else None for r in runs]
    by_label: dict[str, list[int | None]] = {}
    for label, seed in zip(labels, seeds):
        by_label.setdefault(label, []).append(seed)
    # runs of several training seeds: 'NoPeek α=20, cut 2, seed 1' (when every one has its own known seed)
    apart = {label for label, found in by_label.items() if len(found) > 1 and None not in found and len(set(found)) == len(found)}
    labels = [f"{label}, seed {seed}" if label in apart else label for label, seed in zip(labels, seeds)]
    counts = pd.Series(labels).value_counts()
    return [f"{label} [{r.run[:6]}]" if counts[label] > 1 else label for label, r in zip(labels, runs)]


def collect_runs(items: ResultsLike | Sequence[ResultsLike] | Iterable[ResultsLike]) -> tuple[Run, ...]:
    """Every run of every input, sorted by dataset, arch, cut, defense and strength, labelled."""
    if not isinstance(items, (Results, str, os.PathLike)):
        items = list(items)
    raw = []
    for source, results in as_results(items):
        for run, rows, provenance, recon in _split_runs(source, results):
            raw.append(Run(run=run, label="", table=rows, provenance=provenance, reconstructions=recon, source=source))
    ordered = sorted(raw, key=_sort_key)
    labels = _labels(ordered)
    return tuple(
        Run(run=r.run, label=label, table=r.table, provenance=r.provenance, reconstructions=r.reconstructions, source=r.source)
        for r, label in zip(ordered, labels)
    )
