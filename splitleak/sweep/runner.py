"""Plan and run a sweep: resumable, idempotent, one tidy table and one report for the whole grid.

Layout of the sweep folder `out`:

    out/sweep.json                  the grid, each cell's status, the failed cells with their errors
    out/cells.csv                   one row per cell: grid coordinates, status, run id, folders
    out/results.csv, summary.csv,   the merged tidy table of every finished cell (out is itself a
        provenance.json, ...        results folder: `splitleak report out`, `splitleak gate out`)
    out/report.pdf                  the leakage report of every finished cell
    out/checkpoints/<model>-<train key>.safetensors   one per distinct (data, training) config
    out/cells/<cell>-<key>/         the cell's own results folder, or error.json when it failed

A cell is finished when its folder holds results whose recorded configs are the cell's; a re-run
skips finished cells, reuses checkpoints whose recorded configs match, and runs the rest (failed
cells included). The merged table is rebuilt from the cell folders every time, never appended to.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from splitleak import __version__
from splitleak._csv import escape_cell
from splitleak._io import atomic_path, write_text_atomic
from splitleak._parse import loads_json
from splitleak.data import without_locations
from splitleak.models import load_checkpoint
from splitleak.outputs import add_to_marker, claim_folder, mark_folder
from splitleak.progress import ProgressFactory, silent
from splitleak.records import CheckpointMeta, Provenance
from splitleak.results import FOLDER_KIND as RESULTS_KIND
from splitleak.results import PROVENANCE_FILE, TABLE_FILE, Results, ResultsError, claim_results_folder
from splitleak.resume import partial_path
from splitleak.sweep import cost
from splitleak.sweep.executors import Executor, InlineExecutor, ProcessExecutor, make_executor
from splitleak.sweep.grid import LOCATION_OPTIONS, Grid, SweepCell, canonical, resolved_data, resolved_eval
from splitleak.sweep.jobs import EvalJob, Job, Outcome, TrainJob, clear_cache, error_record
from splitleak.sweep.merge import merge_results, remove_merged, write_merged

log = logging.getLogger(__name__)

SWEEP_FILE = "sweep.json"
CELLS_FILE = "cells.csv"
ERROR_FILE = "error.json"
REPORT_FILE = "report.pdf"
CELLS_DIR = "cells"
CHECKPOINTS_DIR = "checkpoints"
FORMAT = "splitleak-sweep"
FOLDER_KIND = "sweep"

FINISHED, FAILED, PENDING = "finished", "failed", "pending"


def cell_folder(out: Path, cell: SweepCell) -> Path:
    return out / CELLS_DIR / cell.folder


def checkpoint_path(out: Path, cell: SweepCell) -> Path:
    return out / CHECKPOINTS_DIR / cell.checkpoint


def recorded_configs(folder: Path) -> tuple[Any, Any, Any, str] | None:
    """The (training, data, evaluation) configs a results folder's provenance records and the run
    id it recorded (the attacked checkpoint's content hash), or None when the folder holds no
    readable results of one splitleak checkpoint. What the folder says is only compared, never
    acted on."""
    try:
        if not (folder / TABLE_FILE).is_file():
            return None
        run = Provenance.from_dict(loads_json((folder / PROVENANCE_FILE).read_text(encoding="utf-8"))).only
    except (OSError, ValueError):  # RecordError and JSONDecodeError are ValueErrors
        return None
    meta = run.meta
    return None if meta is None or run.checkpoint is None else (meta.train, meta.data, run.evaluation, run.checkpoint.sha256)


@functools.lru_cache(maxsize=1024)
def _checkpoint_identity(path: str, size: int, mtime_ns: int) -> tuple[CheckpointMeta, str] | None:
    """A checkpoint's metadata and run id (its content hash), loaded once while the file's size
    and time stay the same; None when it does not load."""
    try:
        checkpoint = load_checkpoint(path)
    except (ValueError, OSError) as err:
        log.warning("sweep: ignoring checkpoint %s (%s)", path, err)
        return None
    return checkpoint.meta, checkpoint.sha256


def checkpoint_identity(path: Path) -> tuple[CheckpointMeta, str] | None:
    """The metadata and run id of the checkpoint file at `path`, None when there is no readable one."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return _checkpoint_identity(str(path), stat.st_size, stat.st_mtime_ns) if path.is_file() else None


def is_cell_finished(out: Path, cell: SweepCell) -> bool:
    """Whether the cell's folder holds results of exactly its data, training and evaluation configs,
    recorded under the run id of the checkpoint now in DIR/checkpoints: a retrained checkpoint, or
    results recorded under another release's run id, make the cell run again (the merge joins a
    model's cells by run id, and a model's cells must attack the same weights)."""
    recorded = recorded_configs(cell_folder(out, cell))
    if recorded is None:
        return False
    train, data, evaluation, run_id = recorded
    if isinstance(evaluation, dict):
        evaluation = {k: v for k, v in evaluation.items() if k not in LOCATION_OPTIONS["evaluate"]}
    wanted = (cell.train.to_dict(), resolved_data(cell.data), resolved_eval(cell.evaluation))
    if canonical((train, without_locations(data), evaluation)) != canonical(wanted):
        return False
    identity = checkpoint_identity(checkpoint_path(out, cell))
    return identity is not None and identity[1] == run_id


def is_checkpoint_ready(out: Path, cell: SweepCell) -> bool:
    """Whether the cell's checkpoint file exists, loads, and records the cell's data and training configs."""
    identity = checkpoint_identity(checkpoint_path(out, cell))
    if identity is None:
        return False
    meta = identity[0]
    recorded = (meta.train, without_locations(meta.data))
    return canonical(recorded) == canonical((cell.train.to_dict(), resolved_data(cell.data)))


@dataclass(frozen=True)
class PlannedCell:
    """A cell with what a run would do for it and the estimated cost (seconds of one core)."""

    cell: SweepCell
    finished: bool
    train_seconds: float  # > 0 on the first unfinished cell of a model that must be trained
    eval_seconds: float  # 0 for finished cells


@dataclass(frozen=True)
class Plan:
    grid: Grid
    out: Path | None
    cells: tuple[PlannedCell, ...]

    @property
    def to_run(self) -> int:
        return sum(not p.finished for p in self.cells)

    @property
    def trainings(self) -> int:
        return sum(p.train_seconds > 0 for p in self.cells)

    @property
    def seconds(self) -> float:
        return sum(p.train_seconds + p.eval_seconds for p in self.cells)


def plan_sweep(grid: Grid, out: str | Path | None = None) -> Plan:
    """What a run of `grid` into `out` would do (finished cells, models to train) and its estimated cost."""
    folder = Path(out) if out is not None else None
    planned = []
    trained: set[str] = set()
    for cell in grid.cells:
        finished = folder is not None and is_cell_finished(folder, cell)
        train_seconds = 0.0
        if not finished and cell.train_key not in trained:
            trained.add(cell.train_key)
            if folder is None or not is_checkpoint_ready(folder, cell):
                train_seconds = cost.training_seconds(cell)
        planned.append(PlannedCell(cell, finished, train_seconds, 0.0 if finished else cost.evaluation_seconds(cell)))
    return Plan(grid=grid, out=folder, cells=tuple(planned))


def format_plan(plan: Plan, *, parallel: int | None = None) -> str:
    """The dry-run listing: one line per cell, then the estimated cost (the library never prints)."""
    grid = plan.grid
    lines = [f"sweep {grid.name!r} from {grid.source}: {len(plan.cells)} cells, {len(grid.trainings())} models"]
    header = f"{'#':>4}  {'status':9} {'dataset':14} {'arch':10} {'cut':>3}  {'defense':22} {'seed':>4}  {'attack':8} {'est.':>7}  folder"
    lines.append(header)
    for number, p in enumerate(plan.cells, start=1):
        c = p.cell
        status = "done" if p.finished else ("train+run" if p.train_seconds else "run")
        est = "-" if p.finished else cost.duration(p.train_seconds + p.eval_seconds)
        lines.append(
            f"{number:>4}  {status:9} {c.data.dataset:14} {c.train.arch:10} {c.train.cut:>3}  {c.defense_label:22} {c.train.seed:>4}  {c.attack:8} {est:>7}  {CELLS_DIR}/{c.folder}"
        )
    train = sum(p.train_seconds for p in plan.cells)
    attack = sum(p.eval_seconds for p in plan.cells)
    done = len(plan.cells) - plan.to_run
    summary = f"to run: {plan.to_run} cell(s)" + (f" ({done} already finished)" if done else "") + f", {plan.trainings} model(s) to train"
    lines.append(summary)
    estimate = (
        f"estimated cost: about {cost.duration(plan.seconds)} of one CPU core "
        f"(training {cost.duration(train)}, attacks {cost.duration(attack)})"
    )
    if parallel and parallel > 1 and plan.seconds:
        estimate += f", roughly {cost.duration(plan.seconds / parallel)} with {parallel} workers"
    lines.append(estimate)
    lines.append("  (an estimate: throughputs measured on one thread of a 2-core CPU; see splitleak/sweep/cost.py)")
    return "\n".join(lines)


@dataclass(frozen=True)
class SweepEvent:
    """Progress of a run, for a caller that shows it (kinds: training and attacking when a job
    starts; reused, trained, finished, failed when it ends)."""

    kind: str
    label: str
    done: int
    total: int
    seconds: float = 0.0
    message: str = ""


@dataclass
class SweepOutcome:
    """What a run did. `exit_code`: 0 when every cell finished, 1 when any failed (or the report did)."""

    out: Path
    total: int
    finished: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    trained: list[str] = field(default_factory=list)
    results: Path | None = None
    report: Path | None = None
    report_error: str | None = None

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.report_error else 0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class _Ledger:
    """The run's bookkeeping: each cell's status, failures (error.json) and sweep.json."""

    def __init__(self, grid: Grid, out: Path, executor: dict[str, object], on_event: Callable[[SweepEvent], None] | None) -> None:
        self.grid, self.out, self.executor, self.on_event = grid, out, executor, on_event
        self.cells = {c.key: c for c in grid.cells}
        self.status: dict[str, str] = {c.key: PENDING for c in grid.cells}
        self.errors: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, str] = {}
        self.started = _now()
        self.outcome = SweepOutcome(out=out, total=len(grid.cells))
        self.trainings = 0  # models this run trains, for "model k of n"
        self.training_started = 0

    def start(self, job: Job) -> None:
        """Say which job starts: `training` (model k of n) or `attacking` (a cell)."""
        if isinstance(job, TrainJob):
            self.training_started += 1
            self.emit("training", job.label, message=f"model {self.training_started} of {self.trainings}")
        else:
            self.emit("attacking", job.label)

    def cell(self, key: str) -> SweepCell:
        return self.cells[key]

    def _done(self) -> int:
        return sum(s != PENDING for s in self.status.values())

    def emit(self, kind: str, label: str, seconds: float = 0.0, message: str = "") -> None:
        if self.on_event is not None:
            self.on_event(SweepEvent(kind, label, self._done(), len(self.status), seconds, message))

    def reuse(self, cell: SweepCell) -> None:
        self.status[cell.key] = FINISHED
        self.outcome.reused.append(cell.key)
        self.emit("reused", cell.label)

    def finish(self, cell: SweepCell, seconds: float) -> None:
        self.status[cell.key] = FINISHED
        self.errors.pop(cell.key, None)
        self.outcome.finished.append(cell.key)
        self.emit("finished", cell.label, seconds)
        self.write("running")

    def fail(self, cell: SweepCell, stage: str, error: dict[str, str], seconds: float) -> None:
        self.status[cell.key] = FAILED
        record = {"key": cell.key, "label": cell.label, "folder": f"{CELLS_DIR}/{cell.folder}", "stage": stage, **error, "seconds": seconds, "time": _now()}
        self.errors[cell.key] = record
        folder = cell_folder(self.out, cell)
        folder.mkdir(parents=True, exist_ok=True)
        claim_results_folder(folder)
        write_text_atomic(folder / ERROR_FILE, json.dumps({**record, "config": cell.material()}, indent=2, sort_keys=True) + "\n")
        add_to_marker(folder, RESULTS_KIND, [ERROR_FILE])  # so the cell's results may replace it later
        self.emit("failed", cell.label, seconds, f"{stage}: {error['type']}: {error['message']}")
        self.write("running")

    def failed(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in self.errors[c.key].items() if k != "traceback"} for c in self.grid.cells if c.key in self.errors]

    def write(self, status: str, **extra: Any) -> None:
        counts = {s: sum(v == s for v in self.status.values()) for s in (FINISHED, FAILED, PENDING)}
        document = {
            "format": FORMAT,
            "format_version": 1,
            "splitleak_version": __version__,
            "status": status,
            "started": self.started,
            "updated": _now(),
            "grid": {"name": self.grid.name, "source": self.grid.source, "sha256": self.grid.sha256},
            "executor": self.executor,
            "counts": {"cells": len(self.status), **counts, "reused": len(self.outcome.reused), "trained": len(self.outcome.trained)},
            "cells": [
                {
                    "key": c.key, "label": c.label, "status": self.status[c.key], "folder": f"{CELLS_DIR}/{c.folder}",
                    "checkpoint": f"{CHECKPOINTS_DIR}/{c.checkpoint}", "train_key": c.train_key, "run": self.runs.get(c.key),
                    **c.describe(), "config": c.material(),
                }
                for c in self.grid.cells
            ],
            "failed": self.failed(),
            **extra,
        }
        write_text_atomic(self.out / SWEEP_FILE, json.dumps(document, indent=2, sort_keys=False) + "\n")

    def write_cells_csv(self) -> None:
        columns = ["key", "label", "status", "dataset", "arch", "cut", "defense", "defense_params", "train_seed", "attack", "run", "folder", "checkpoint", "error"]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for c in self.grid.cells:
            error = self.errors.get(c.key)
            row = {
                "key": c.key, "label": c.label, "status": self.status[c.key], **c.describe(), "run": self.runs.get(c.key, ""),
                "folder": f"{CELLS_DIR}/{c.folder}", "checkpoint": f"{CHECKPOINTS_DIR}/{c.checkpoint}",
                "error": f"{error['stage']}: {error['type']}: {error['message']}" if error else "",
            }
            writer.writerow({k: escape_cell(v) for k, v in row.items()})  # no spreadsheet formulas (splitleak._csv)
        write_text_atomic(self.out / CELLS_FILE, buffer.getvalue())


_UNKNOWN = {"type": "Error", "message": "the job failed without saying why", "traceback": ""}


def _outcome(future: Future[Outcome], job: Job) -> Outcome:
    """The job's Outcome, or a failed one when the executor itself failed (worker died, task lost)."""
    try:
        return future.result()
    except Exception as err:  # noqa: BLE001 - recorded against the job's cells
        return Outcome(key=job.key, ok=False, seconds=0.0, error=error_record(err))


def run_sweep(
    grid: Grid,
    out: str | Path,
    *,
    executor: str = "local",
    workers: int = 1,
    threads: int | None = None,
    ray_address: str | None = None,
    cpus_per_task: int = 1,
    gpus_per_task: float = 1.0,
    report: bool = True,
    on_event: Callable[[SweepEvent], None] | None = None,
    progress: ProgressFactory = silent,
) -> SweepOutcome:
    """Run every unfinished cell of `grid` into `out`, merge all finished cells, write the report.

    A failing cell is recorded (its error.json, sweep.json's `failed`) and the others go on; the
    outcome's exit_code is then 1. `executor`: "local" (in this process when workers == 1, else a
    process pool of `workers`, each with `threads` torch threads, default cores // workers) or "ray"
    (one task per job with `cpus_per_task` CPUs, and `gpus_per_task` GPUs when the device is cuda).
    `progress` shows the stages of the jobs run in this process (workers == 1).
    """
    out = Path(out)
    claim_sweep_folder(out)
    runner = make_executor(executor, workers=workers, threads=threads, ray_address=ray_address, cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task, progress=progress)
    ledger = _Ledger(grid, out, runner.description, on_event)
    try:
        (out / CELLS_DIR).mkdir(parents=True, exist_ok=True)
        (out / CHECKPOINTS_DIR).mkdir(parents=True, exist_ok=True)
        mark_folder(out, FOLDER_KIND)
        queue: deque[Job] = deque()
        local = isinstance(runner, (InlineExecutor, ProcessExecutor))
        for cells in grid.trainings().values():
            todo = []
            for cell in cells:
                if is_cell_finished(out, cell):
                    ledger.reuse(cell)
                else:
                    todo.append(cell)
            if not todo:
                continue
            first = todo[0]
            if is_checkpoint_ready(out, first):
                blob = checkpoint_path(out, first).read_bytes()
                queue.extend(_eval_job(out, cell, blob) for cell in todo)
            else:
                state = str(partial_path(checkpoint_path(out, first))) if local else None
                keys = tuple(c.key for c in todo)
                queue.append(TrainJob(key=first.train_key, label=first.model_label, keys=keys, data=first.data, train=first.train, state_file=state))
        ledger.trainings = sum(isinstance(job, TrainJob) for job in queue)
        if runner.capacity > 1:
            queue = deque(longest_first(queue, ledger.cell))
        ledger.write("running")
        _drain(runner, queue, ledger)
    except BaseException as err:
        runner.close(cancel=True)
        if (out / CELLS_DIR).is_dir():
            stopped = "interrupted" if isinstance(err, KeyboardInterrupt) else "aborted"
            ledger.write(stopped, **({} if isinstance(err, KeyboardInterrupt) else {"error": error_record(err, "")}))
        raise
    finally:
        clear_cache()
    runner.close()
    _merge_and_report(ledger, report)
    return ledger.outcome


def claim_sweep_folder(out: Path) -> None:
    """Refuse (OutputError) unless `out` is absent, empty, or a sweep folder splitleak wrote
    (marked, or with the sweep.json of a release before the marker)."""

    def legacy(entries: list[str]) -> bool:
        try:
            return SWEEP_FILE in entries and json.loads((out / SWEEP_FILE).read_text(encoding="utf-8")).get("format") == FORMAT
        except (OSError, UnicodeDecodeError, ValueError, RecursionError, AttributeError):
            return False

    claim_folder(out, FOLDER_KIND, legacy=legacy)


def job_seconds(job: Job, cell_of: Callable[[str], SweepCell]) -> float:
    """A job's estimated seconds of one core; a training counts the cells that wait for it too."""
    if isinstance(job, TrainJob):
        cells = [cell_of(key) for key in job.keys]
        return cost.training_seconds(cells[0]) + sum(cost.evaluation_seconds(c) for c in cells)
    return cost.evaluation_seconds(cell_of(job.key))


def longest_first(jobs: Iterable[Job], cell_of: Callable[[str], SweepCell]) -> list[Job]:
    """The jobs by estimated cost, longest first (grid order among equals): with several workers
    the last job to finish is then a short one, not the grid's largest model started last."""
    return sorted(jobs, key=lambda job: -job_seconds(job, cell_of))


def _eval_job(out: Path, cell: SweepCell, blob: bytes) -> EvalJob:
    path = checkpoint_path(out, cell)
    return EvalJob(key=cell.key, label=cell.label, data=cell.data, evaluation=cell.evaluation, checkpoint=blob, checkpoint_path=str(path))


def _drain(runner: Executor, queue: deque[Job], ledger: _Ledger) -> None:
    """Submit jobs up to the executor's capacity; when a model is trained, its cells go first
    (longest first, with several workers)."""
    out = ledger.out
    in_flight: dict[Future[Outcome], Job] = {}
    while queue or in_flight:
        while queue and len(in_flight) < runner.capacity:
            job = queue.popleft()
            ledger.start(job)
            in_flight[runner.submit(job)] = job
        done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
        for future in [f for f in list(in_flight) if f in done]:
            job = in_flight.pop(future)
            outcome = _outcome(future, job)
            if isinstance(job, TrainJob):
                cells = [ledger.cell(key) for key in job.keys]
                if not outcome.ok:
                    for cell in cells:
                        ledger.fail(cell, "train", outcome.error or _UNKNOWN, outcome.seconds)
                    continue
                path = checkpoint_path(out, cells[0])
                blob = outcome.value["checkpoint"]
                with atomic_path(path) as tmp:
                    tmp.write_bytes(blob)
                partial_path(path).unlink(missing_ok=True)
                ledger.outcome.trained.append(job.key)
                ledger.emit("trained", job.label, outcome.seconds, f"test accuracy {outcome.value['test_accuracy']:.4f}")
                ready = [_eval_job(out, cell, blob) for cell in cells]
                queue.extendleft(reversed(longest_first(ready, ledger.cell) if runner.capacity > 1 else ready))
            else:
                cell = ledger.cell(job.key)
                if not outcome.ok:
                    ledger.fail(cell, "evaluate", outcome.error or _UNKNOWN, outcome.seconds)
                    continue
                results: Results = outcome.value
                results.save(cell_folder(out, cell))
                ledger.finish(cell, outcome.seconds)


def _merge_and_report(ledger: _Ledger, make_report: bool) -> None:
    out, grid, outcome = ledger.out, ledger.grid, ledger.outcome
    loaded: list[tuple[str, Results]] = []
    for cell in grid.cells:
        if ledger.status[cell.key] != FINISHED:
            continue
        try:
            results = Results.load(cell_folder(out, cell))
        except ResultsError as err:
            ledger.fail(cell, "merge", error_record(err), 0.0)
            continue
        ledger.runs[cell.key] = str(results.table["run"].iloc[0]) if len(results.table) else ""
        loaded.append((cell.folder, results))
    extra: dict[str, Any] = {"results": None, "report": None, "report_error": None}
    if loaded:
        sweep = {"name": grid.name, "source": grid.source, "sha256": grid.sha256, "cells": [name for name, _ in loaded]}
        merged = merge_results(loaded, sweep)
        write_merged(merged, out)
        outcome.results = out / "results.csv"
        extra["results"] = "results.csv"
        if make_report:
            from splitleak.reports import report

            start = time.perf_counter()
            try:
                outcome.report = report(merged, out / REPORT_FILE)
                extra["report"] = REPORT_FILE
                log.info("sweep report written in %.1fs", time.perf_counter() - start)
            except Exception as err:  # noqa: BLE001 - the results stay; the run says the report failed
                outcome.report_error = " ".join(str(err).split()) or type(err).__name__
                extra["report_error"] = outcome.report_error
    else:
        remove_merged(out)
    outcome.failed = ledger.failed()
    ledger.write_cells_csv()
    ledger.write("failed" if outcome.exit_code else "finished", **extra)
