"""`splitleak sweep GRID.toml --out DIR`: the command-line face of splitleak.sweep.

splitleak/cli.py registers it. Exit codes: 0 every cell finished, 1 a cell (or the report)
failed, 2 bad input (an InputError, which the CLI's `main` turns into one line
`splitleak: error: ...`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from splitleak._cli.device import HELP as DEVICE_HELP, device_argument
from splitleak._printable import printable
from splitleak.errors import InputError

DESCRIPTION = (
    "Run the privacy-utility grid of a TOML file: every cell trains (or reuses) a checkpoint and attacks it; "
    "finished cells are skipped on a re-run, failed ones run again. Writes DIR/results.csv, summary.csv, cells.csv, "
    "sweep.json and report.pdf. Exit 0 when every cell finished, 1 when any failed, 2 for a bad grid file. "
    "Grid format: docs/sweeps.md."
)


def add_sweep_command(commands: Any) -> argparse.ArgumentParser:
    """Register `sweep` on the CLI's subparsers."""
    sw = commands.add_parser("sweep", help="train and attack a whole grid (cuts x defenses x attacks x seeds ...), resumable", description=DESCRIPTION)
    sw.add_argument("grid", metavar="GRID.toml", help="the grid file (docs/sweeps.md; e.g. examples/nopeek_tradeoff.toml)")
    sw.add_argument("--out", metavar="DIR", help="sweep folder (required unless --dry-run; with --dry-run, finished cells in it are shown)")
    sw.add_argument("--dry-run", action="store_true", help="list the cells and an estimated cost, run nothing")
    sw.add_argument("--executor", default="local", choices=("local", "ray"), help="local: this machine (default); ray: one Ray task per job (pip install 'splitleak[ray]')")
    sw.add_argument("--workers", default="1", help="local executor: worker processes, or 'auto' for one per core (default 1: in this process)")
    from splitleak._cli.threads import threads_option

    threads_option(sw, "torch threads per local worker (default: cores // workers, at most $OMP_NUM_THREADS when set; "
                       "with 1 worker, $OMP_NUM_THREADS or torch's default)")
    sw.add_argument("--ray-address", help="Ray cluster to connect to (default: $RAY_ADDRESS, else a local Ray instance)")
    sw.add_argument("--cpus-per-task", type=int, default=1, help="ray: CPUs each task declares and uses as torch threads (default 1)")
    sw.add_argument("--gpus-per-task", type=float, default=1.0, help="ray: GPUs each task declares when the device is cuda (default 1; fractions share a GPU)")
    sw.add_argument("--device", type=device_argument, help=f"{DEVICE_HELP}, for training and attacks, overriding the grid file")
    sw.add_argument("--data-dir", help="where datasets live, overriding the grid file (not part of cell keys)")
    sw.add_argument("--no-report", action="store_true", help="skip the PDF report (results.csv is still merged)")
    sw.add_argument("--quiet", action="store_true", help="no progress lines")
    sw.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sw.set_defaults(run=run_sweep_command)
    return sw


def parse_workers(value: str, threads: int | None) -> int:
    """`--workers`: a whole number >= 1, or 'auto' (one per `threads` cores)."""
    from splitleak.sweep.executors import usable_cores

    if value == "auto":
        return max(1, usable_cores() // (threads or 1))
    try:
        workers = int(value)
    except ValueError:
        workers = 0
    if workers < 1:
        raise InputError(f"--workers must be a whole number >= 1 or 'auto', got {value!r}")
    return workers


def run_sweep_command(args: argparse.Namespace) -> int:
    from splitleak._cli.progress import progress_for
    from splitleak.sweep import format_plan, load_grid, plan_sweep, run_sweep
    from splitleak.sweep.cost import duration

    workers = parse_workers(args.workers, args.threads)
    grid = load_grid(args.grid, data_dir=args.data_dir, device=args.device)
    if args.dry_run:
        print(format_plan(plan_sweep(grid, args.out), parallel=workers if args.executor == "local" else None))
        print("dry run: nothing was run")
        return 0
    if not args.out:
        raise InputError("sweep needs --out DIR (or --dry-run to only list the cells)")
    if args.executor == "local":  # Ray's workers may have devices this machine lacks
        from splitleak._validate import usable_device

        for device in sorted({c.train.device for c in grid.cells} | {c.evaluation.device for c in grid.cells}):
            usable_device(device)
    plan = plan_sweep(grid, args.out)
    if not args.quiet:
        print(
            f"sweep {grid.name!r}: {len(plan.cells)} cells, {plan.to_run} to run ({plan.trainings} model{'' if plan.trainings == 1 else 's'} to train); "
            f"roughly {duration(plan.seconds)} of one CPU core (estimate)",
            file=sys.stderr,
        )

    outcome = run_sweep(
        grid, args.out, executor=args.executor, workers=workers, threads=args.threads, ray_address=args.ray_address,
        cpus_per_task=args.cpus_per_task, gpus_per_task=args.gpus_per_task, report=not args.no_report, on_event=event_printer(args.quiet),
        progress=progress_for(args.quiet),
    )
    done = len(outcome.finished) + len(outcome.reused)
    print(f"sweep: {done}/{outcome.total} cells finished ({len(outcome.reused)} reused, {len(outcome.trained)} models trained), {len(outcome.failed)} failed")
    for failure in outcome.failed:
        print(printable(f"  failed {failure['label']} ({failure['stage']}): {failure['type']}: {failure['message']} -> {failure['folder']}/error.json"))
    if outcome.results:
        print(f"results: {outcome.results}")
    if outcome.report:
        print(f"report: {outcome.report}")
    if outcome.report_error:
        print(f"report failed: {outcome.report_error}")
    return outcome.exit_code


def event_printer(quiet: bool) -> Callable[[Any], None]:
    """Print each sweep event as one line on stderr (nothing when `quiet`)."""

    def show(event: Any) -> None:
        if quiet:
            return
        from splitleak.sweep.cost import duration

        took = f" in {duration(event.seconds)}" if event.seconds else ""
        extra = f" ({event.message})" if event.message else ""
        print(printable(f"[{event.done}/{event.total}] {event.kind:8} {event.label}{took}{extra}"), file=sys.stderr)  # labels come from the grid file

    return show
