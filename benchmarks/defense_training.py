"""Training cost of every defense setting of the defense study, on a quiet machine.

    .venv/bin/python -m benchmarks.defense_training              # ~15 min of one core
    .venv/bin/python -m benchmarks.defense_training --seeds 0,1  # more seeds per setting

Setup: the models of `examples/defense_comparison.toml` (its data and training configs exactly,
so the study's cells share these figures' work), training seed 0 by default, each trained from
scratch in this process with one torch thread (`--threads`), nothing else running. Per setting:
the training's wall seconds (the checkpoint's per-epoch log, as docs/defenses.md's table reads
it), the process CPU seconds over the same span, and the ratio to the undefended model's wall
time. Training loads the dataset once (not timed). Writes `benchmarks/results/defense_training.md`
and `.csv` (one row per setting: defense, its resolved parameters as JSON, the means), which
`examples/defense_table.py --training-times` puts in the study's table.

Run it alone: a second busy process on 2 cores makes one-thread timings 1.5-2x longer and uneven.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import torch

from splitleak.cli import run_guarded, seed_list
from splitleak.data import load_splits
from splitleak.errors import InputError
from splitleak.sweep.grid import SweepCell, canonical, load_grid
from splitleak.timing import training_seconds
from splitleak.training import train

ROOT = Path(__file__).resolve().parent.parent
GRID = ROOT / "examples" / "defense_comparison.toml"
RESULTS = Path(__file__).resolve().parent / "results"


def models(grid_path: Path, seeds: set[int]) -> list[SweepCell]:
    """One cell per model of the grid (grid order) whose training seed is in `seeds`."""
    grid = load_grid(grid_path)
    return [cells[0] for cells in grid.trainings().values() if cells[0].train.seed in seeds]


def time_training(cell: SweepCell, splits) -> tuple[float, float]:
    """(wall seconds the checkpoint's log records, process CPU seconds) of training `cell`'s model."""
    cpu = time.process_time()
    trained = train(cell.train, splits)
    cpu = time.process_time() - cpu
    wall = training_seconds(trained.meta.log)
    if wall is None:
        raise RuntimeError(f"{cell.model_label}: the training log records no time")
    return wall, cpu


def means(times: list[tuple[float, float]]) -> tuple[float, float]:
    """(mean wall seconds, mean CPU seconds) over a setting's timed seeds."""
    return statistics.fmean(w for w, _ in times), statistics.fmean(c for _, c in times)


def markdown(rows: dict[str, list[tuple[float, float]]], threads: int) -> str:
    base = means(rows["none"])[0] if "none" in rows else float("nan")
    lines = [
        f"Training cost of the defense study's models (examples/defense_comparison.toml: small-cnn cut 2 on Fashion-MNIST, "
        f"2 epochs at batch 256), {threads} torch thread(s), one model at a time on an otherwise idle machine; "
        "mean over the training seeds timed:\n",
        "| defense | seeds | training wall s | CPU s | wall / undefended |",
        "|---|---|---|---|---|",
    ]
    for label, times in rows.items():
        wall, cpu = means(times)
        lines.append(f"| {label} | {len(times)} | {wall:.1f} | {cpu:.1f} | {wall / base:.2f}x |")
    return "\n".join(lines) + "\n"


def write_csv(path: Path, cells: dict[str, SweepCell], rows: dict[str, list[tuple[float, float]]]) -> None:
    """One row per setting: the defense, its resolved parameters (canonical JSON) and the means."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["defense", "defense_params", "seeds", "train_wall_s", "train_cpu_s"])
        for label, times in rows.items():
            train = cells[label].train
            writer.writerow([train.defense, canonical(dict(train.defense_params)), len(times), *(f"{m:.2f}" for m in means(times))])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.defense_training", description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default=str(GRID), help="the grid file whose models are timed")
    parser.add_argument("--seeds", default=(0,), type=seed_list, help="comma-separated training seeds (default 0)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", default=str(RESULTS / "defense_training.md"), help="Markdown file written")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    cells = models(Path(args.grid), set(args.seeds))
    if not cells:
        raise InputError(f"{args.grid} has no model with training seed {', '.join(map(str, args.seeds))}")
    torch.set_num_threads(args.threads)
    splits = load_splits(cells[0].data)
    rows: dict[str, list[tuple[float, float]]] = {}
    for cell in cells:
        wall, cpu = time_training(cell, splits)
        rows.setdefault(cell.defense_label, []).append((wall, cpu))
        print(f"{cell.model_label}: {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
    text = markdown(rows, args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    write_csv(out.with_suffix(".csv"), {cell.defense_label: cell for cell in cells}, rows)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
