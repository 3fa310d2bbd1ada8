"""A study: train several models ("cells") on one dataset, attack each, keep every file.

`run_study` is what `splitleak demo` and the attack table (examples/attack_table.py) run: for
each cell it trains under the cell's defense, saves the checkpoint, evaluates it and saves the
results folder. Layout of `out`:

    out/checkpoints/<cell>.safetensors
    out/results/<cell>/            results.csv, summary.csv, provenance.json, reconstructions
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from splitleak.data import Splits, without_locations
from splitleak.errors import InputError
from splitleak.evaluation import EvalConfig, evaluate
from splitleak.models import load_checkpoint, save_checkpoint
from splitleak.progress import ProgressFactory, silent
from splitleak.results import PROVENANCE_FILE, TABLE_FILE, Results
from splitleak.training import TrainConfig, train

log = logging.getLogger(__name__)

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Cell:
    """One model of a study: a folder-safe name and how to train it."""

    name: str
    train: TrainConfig

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _SAFE_NAME.match(self.name):
            raise InputError(f"cell name must be letters, digits, '.', '_' or '-', got {self.name!r}")


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def recorded_configs(folder: Path) -> tuple[Any, Any, Any] | None:
    """The (training, data, evaluation) configs a results folder's provenance records, or None
    when the folder holds no readable results of a splitleak checkpoint."""
    try:
        if not (folder / TABLE_FILE).is_file():
            return None
        provenance = json.loads((folder / PROVENANCE_FILE).read_text())
        return (provenance["checkpoint"]["meta"]["train"], provenance["checkpoint"]["meta"]["data"], provenance["evaluation"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_finished(cell: Cell, splits: Splits, evaluation: EvalConfig, folder: Path) -> bool:
    """Whether `folder` holds results of exactly this cell's training, data and evaluation configs.

    The folder's recorded configs are only compared, never acted on; where the data was read
    from and whether it was downloaded (`LOCATION_FIELDS`) say nothing about what was computed
    and are left out of the comparison, as a sweep does.
    """
    recorded = recorded_configs(folder)
    if recorded is None:
        return False
    train, data, evaluated = recorded
    wanted = (cell.train.to_dict(), without_locations(splits.config.to_dict()), evaluation.to_dict())
    return _canonical((train, without_locations(data), evaluated)) == _canonical(wanted)


def run_study(
    cells: Sequence[Cell],
    splits: Splits,
    evaluation: EvalConfig,
    out: str | Path,
    *,
    reuse: bool = False,
    progress: ProgressFactory = silent,
) -> list[Path]:
    """Train, save, evaluate and save each cell in turn; returns the results folders in order.

    With `reuse`, a cell whose results folder already holds results of the same training, data
    and evaluation configs is not run again.
    """
    names = [cell.name for cell in cells]
    if len(set(names)) != len(names):
        raise InputError(f"cell names must be unique, got {names}")
    out = Path(out)
    folders = []
    for cell in cells:
        if reuse and is_finished(cell, splits, evaluation, out / "results" / cell.name):
            log.info("study cell %s: reusing %s", cell.name, out / "results" / cell.name)
            folders.append(out / "results" / cell.name)
            continue
        trained = train(cell.train, splits, progress=progress)
        path = save_checkpoint(out / "checkpoints" / f"{cell.name}.safetensors", trained.model, trained.meta, trained.defense_state)
        results: Results = evaluate(load_checkpoint(path), evaluation, splits, progress=progress)
        folders.append(results.save(out / "results" / cell.name))
        log.info("study cell %s: test accuracy %.4f, results in %s", cell.name, trained.meta["test_accuracy"], folders[-1])
    return folders
