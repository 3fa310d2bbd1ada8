"""The two kinds of work a sweep hands to an executor, as plain picklable values.

A `TrainJob` trains one model and returns the checkpoint's bytes; an `EvalJob` gets those bytes,
attacks the model and returns the Results. Jobs write nothing into the sweep folder but a local
training's per-epoch progress file (`state_file`, not given to Ray tasks): the driver writes the
rest, so a Ray worker on another node needs the dataset but not the output folder, and every
result file of a sweep has one writer. `run_job` never raises for a failing cell: it returns an
`Outcome` with the error and its traceback (a crashed worker is the executor's to report).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from splitleak.data import DataConfig, Splits, load_splits
from splitleak.evaluation import EvalConfig, evaluate
from splitleak.models import load_checkpoint, save_checkpoint
from splitleak.progress import ProgressFactory, silent
from splitleak.training import TrainConfig, train

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainJob:
    """Train the model shared by the cells `keys`; `state_file`: per-epoch progress (local runs)."""

    key: str
    label: str
    keys: tuple[str, ...]
    data: DataConfig
    train: TrainConfig
    state_file: str | None = None
    threads: int | None = None

    @property
    def device(self) -> str:
        return self.train.device


@dataclass(frozen=True)
class EvalJob:
    """Attack the checkpoint (its bytes, recorded under `checkpoint_path`) as cell `key` says."""

    key: str
    label: str
    data: DataConfig
    evaluation: EvalConfig
    checkpoint: bytes = field(repr=False)
    checkpoint_path: str = ""
    threads: int | None = None

    @property
    def device(self) -> str:
        return self.evaluation.device


Job = TrainJob | EvalJob


@dataclass(frozen=True)
class Outcome:
    """What a job gave back: `value` (checkpoint bytes, or Results) or `error` (type, message, traceback)."""

    key: str
    ok: bool
    seconds: float
    value: Any = None
    error: dict[str, str] | None = None


@functools.lru_cache(maxsize=1)
def _splits(data: DataConfig) -> Splits:
    """The splits of the last data config asked for in this process (cells come grouped by dataset)."""
    return load_splits(data)


def clear_cache() -> None:
    _splits.cache_clear()


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run with `threads` intra-op threads (None: leave as is), restoring the previous number after."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def error_record(err: BaseException, tb: str | None = None) -> dict[str, str]:
    message = " ".join(str(err).split()) or type(err).__name__
    return {"type": type(err).__name__, "message": message, "traceback": tb if tb is not None else "".join(traceback.format_exception(err))}


def run_job(job: Job, progress: ProgressFactory = silent) -> Outcome:
    """Run one job (`progress`: its stages); a failure comes back as an Outcome with ok=False (never raised)."""
    start = time.perf_counter()
    try:
        with torch_threads(job.threads):
            value = _train(job, progress) if isinstance(job, TrainJob) else _evaluate(job, progress)
    except Exception as err:  # noqa: BLE001 - a failing cell is recorded, not fatal
        log.warning("sweep %s %s failed: %s", "training" if isinstance(job, TrainJob) else "cell", job.label, err)
        return Outcome(key=job.key, ok=False, seconds=time.perf_counter() - start, error=error_record(err, traceback.format_exc()))
    return Outcome(key=job.key, ok=True, seconds=time.perf_counter() - start, value=value)


def _train(job: TrainJob, progress: ProgressFactory) -> dict[str, Any]:
    splits = _splits(job.data)
    trained = train(job.train, splits, state_file=job.state_file, resume=job.state_file is not None, progress=progress)
    with tempfile.TemporaryDirectory(prefix="splitleak-sweep-") as tmp:
        path = save_checkpoint(Path(tmp) / "model.safetensors", trained.model, trained.meta, trained.defense_state, trained.server_state)
        blob = path.read_bytes()
    return {"checkpoint": blob, "test_accuracy": trained.meta.test_accuracy}


def _evaluate(job: EvalJob, progress: ProgressFactory) -> Any:
    splits = _splits(job.data)
    with tempfile.TemporaryDirectory(prefix="splitleak-sweep-") as tmp:
        path = Path(tmp) / "model.safetensors"
        path.write_bytes(job.checkpoint)
        checkpoint = load_checkpoint(path)
    # the results name the sweep's copy of the checkpoint, not this temporary one (same bytes, same hash)
    checkpoint = dataclasses.replace(checkpoint, path=Path(job.checkpoint_path))
    return evaluate(checkpoint, job.evaluation, splits, progress=progress)
