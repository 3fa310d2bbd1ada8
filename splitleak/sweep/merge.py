"""Merge the cells' results folders into one Results: the sweep folder's tidy table.

Cells that attack the same checkpoint share a run id (the checkpoint hash), and each of them
carries the model-level rows (accuracy, dCor(x, z), semantic reference) that evaluate computes
for every evaluation: the merged table keeps one copy per (run, attack, metric, sample), the
first in grid order, and the per-image worst case (attack "worst") is recomputed over the attacks
of all the run's cells. Per run, the provenance is the first cell's with the attacks of all its
cells (`RunProvenance.cells` names them) and the stage times of all of them summed, and the reconstructions are stored under `<run>/...` keys, the layout reports and the
gate read from a folder that holds several runs (splitleak.reports.runs).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from splitleak.records import Provenance, RunProvenance
from splitleak.memory import merge_memory
from splitleak.timing import merge_stages
from splitleak.results import PROVENANCE_FILE, RECONSTRUCTIONS_FILE, SUMMARY_FILE, TABLE_FILE, Results, ResultsError
from splitleak.worst_case import with_worst_case

IDENTITY = ["run", "attack", "metric", "sample"]


def merge_results(cells: Sequence[tuple[str, Results]], sweep: Mapping[str, Any] | None = None) -> Results:
    """One Results of many (cell name, Results), duplicates of shared model-level rows dropped."""
    if not cells:
        raise ValueError("no finished cells to merge")
    import pandas as pd

    table = pd.concat([results.table for _, results in cells], ignore_index=True)
    table = table.drop_duplicates(subset=IDENTITY, keep="first").reset_index(drop=True)
    table = with_worst_case(table)  # each cell's worst case saw only its own attacks: over all of them now
    runs: dict[str, RunProvenance] = {}
    reconstructions: dict[str, np.ndarray] = {}
    for name, results in cells:
        ids = list(dict.fromkeys(results.table["run"]))
        if len(ids) != 1:
            raise ResultsError(f"cell {name} holds {len(ids)} runs; a sweep cell evaluates exactly one checkpoint")
        run = ids[0]
        cell = results.provenance.run(run) or RunProvenance()
        merged = runs.get(run) or dataclasses.replace(cell, cells=(), attacks={}, stages={}, evaluation={**cell.evaluation, "attacks": [], "attack_params": {}})
        evaluation = dict(merged.evaluation)
        evaluation["attacks"] = [*evaluation["attacks"], *(a for a in cell.evaluation.get("attacks", []) if a not in evaluation["attacks"])]
        evaluation["attack_params"] = {**evaluation["attack_params"], **copy.deepcopy(cell.evaluation.get("attack_params") or {})}
        stages = merge_stages(merged.stages, cell.stages)  # every cell's work on the model, summed
        memory = merge_memory(merged.memory, cell.memory)  # the largest peak of the model's cells
        runs[run] = dataclasses.replace(
            merged, cells=(*merged.cells, name), attacks={**merged.attacks, **copy.deepcopy(cell.attacks)}, evaluation=evaluation, stages=stages, memory=memory
        )
        for key, tensor in results.reconstructions.items():
            reconstructions.setdefault(f"{run}/{key}", tensor)
    provenance = Provenance(runs=runs, sweep=dict(sweep or {}))
    return Results(table=table, provenance=provenance, reconstructions=reconstructions)


def write_merged(results: Results, folder: str | Path) -> list[Path]:
    """Write results.csv, summary.csv, provenance.json and reconstructions into `folder`, each
    atomically, beside whatever else the folder holds; returns the paths written."""
    return results.write_into(folder)


def remove_merged(folder: str | Path) -> None:
    """Remove a merged table left by an earlier run (when no cell of this grid has finished)."""
    for name in (TABLE_FILE, SUMMARY_FILE, PROVENANCE_FILE, RECONSTRUCTIONS_FILE):
        (Path(folder) / name).unlink(missing_ok=True)
