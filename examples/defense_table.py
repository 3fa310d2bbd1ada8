"""Every defense side by side, over training seeds: the table and figure of docs/defenses.md.

    .venv/bin/splitleak sweep examples/defense_comparison.toml --out runs/defenses --workers 2
    .venv/bin/python examples/defense_table.py runs/defenses [--png docs/img/defense_decision.png]
        [--training-times benchmarks/results/defense_training.csv]

Per setting (the runs that differ only in the training seed, as the report's decision page
groups them): the seeds, task accuracy, the worst case over the attacks that ran of mean SSIM,
LPIPS and semantic accuracy, each as the mean over the seeds with a 95% t-interval over them;
dCor(x, z) (V statistic) and the training time per seed (the checkpoint's log), as means over
the seeds; with `--training-times`, the training time measured on a quiet machine by
`python -m benchmarks.defense_training` instead (a sweep's own times depend on what else ran).
Prints the Markdown table and the decision's paragraph, and saves the decision page (the Pareto
front with the chosen setting) as a PNG. Where attacks beyond the demo's four ran on a model (sdar
and fora: `examples/decision_check.toml`, or `attack` extended in the study's grid), a second
table shows, per such model, the per-image worst case over the four and over every attack that
ran, and the newer attacks' own mean SSIM: does the decision survive them?
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys

from splitleak.cli import run_guarded
from splitleak.errors import InputError
from splitleak.reports.decision import Setting, group_settings
from splitleak.reports.decision_page import decision_page
from splitleak.reports.document import build_content
from splitleak.reports.runs import Run
from splitleak.reports.style import report_style
from splitleak.sweep.grid import canonical
from splitleak.timing import training_seconds
from splitleak.demo import ATTACKS_RUN
from splitleak.worst_case import worst_case_gain

OLDER = ATTACKS_RUN  # the demo's four: the study's default attacks
GAIN_METRICS = ("ssim", "lpips", "semantic_accuracy")


def _model_mean(runs: list[Run], metric: str) -> float:
    """The mean over the runs of a model-level metric (NaN when none has it)."""
    rows = [r.table.loc[(r.table["attack"] == "") & (r.table["metric"] == metric), "value"] for r in runs]
    values = [float(row.iloc[0]) for row in rows if len(row)]
    return statistics.fmean(values) if values else float("nan")


def _train_seconds(runs: list[Run]) -> float:
    values = [s for r in runs if r.meta is not None and (s := training_seconds(r.meta.log)) is not None]
    return statistics.fmean(values) if values else float("nan")


TIMES_COLUMNS = ("defense", "defense_params", "train_wall_s")


def quiet_times(path: str) -> dict[tuple[str, str], float]:
    """(defense, canonical parameters) -> training wall seconds, from benchmarks.defense_training's
    CSV; a file without its columns or with a time that is not a finite number >= 0 is refused."""
    with open(path, newline="", encoding="utf-8") as handle:
        try:
            rows = list(csv.DictReader(handle))
        except (csv.Error, UnicodeDecodeError) as err:
            raise InputError(f"{path} is not a CSV file: {err}") from None
    times = {}
    for line, r in enumerate(rows, start=2):
        if any(r.get(column) is None for column in TIMES_COLUMNS):
            raise InputError(f"{path} line {line}: expected the columns {', '.join(TIMES_COLUMNS)} (python -m benchmarks.defense_training writes them)")
        try:
            seconds = float(r["train_wall_s"])
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds) or seconds < 0:
            raise InputError(f"{path} line {line}: train_wall_s must be a number of seconds >= 0, got {r['train_wall_s']!r}")
        times[(r["defense"], r["defense_params"])] = seconds
    return times


def row(setting: Setting, runs: list[Run], times: dict[tuple[str, str], float] | None) -> str:
    if times is None:
        seconds = _train_seconds(runs)
    else:
        seconds = times.get((runs[0].defense, canonical(runs[0].params)), float("nan"))
    cells = [
        setting.defense_label, str(setting.n_seeds), setting.accuracy.text(3), setting.ssim.text(3), setting.lpips.text(3),
        setting.semantic.text(2), f"{_model_mean(runs, 'dcor'):.3f}", f"{seconds:.0f} s",
    ]
    return "| " + " | ".join(cells) + " |"


def newer_attacks_rows(runs: list[Run]) -> list[str]:
    """Markdown rows for each run attacked by more than the demo's four: setting, seed, accuracy,
    the worst case's mean SSIM, LPIPS and semantic accuracy over the four -> over every attack,
    and each newer attack's mean SSIM (empty when no run had more)."""
    lines = []
    for run in runs:
        table = run.table
        for gain in worst_case_gain(table, OLDER, GAIN_METRICS):
            if not gain.extra:
                continue
            cells = [f"{gain.before.get(m, math.nan):.3f} → {gain.after.get(m, math.nan):.3f}" for m in GAIN_METRICS]
            ssim = table[table["metric"] == "ssim"].groupby("attack")["value"].mean()
            own = [f"{name} {ssim.get(name, math.nan):.3f}" for name in gain.extra]
            lines.append("| " + " | ".join([run.defense_label, str(run.first("seed")), f"{_model_mean([run], 'accuracy'):.3f}", *cells, ", ".join(own)]) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="the sweep folder of examples/defense_comparison.toml")
    parser.add_argument("--png", help="save the decision page here")
    parser.add_argument("--accuracy-budget", type=float, default=3.0)
    parser.add_argument("--training-times", help="benchmarks/results/defense_training.csv: training times from a quiet machine")
    args = parser.parse_args()
    times = quiet_times(args.training_times) if args.training_times else None
    content = build_content([args.folder], accuracy_budget=args.accuracy_budget)
    by_id = {r.run: r for r in content.runs}
    print("| defense | seeds | accuracy | worst-case SSIM | worst-case LPIPS | worst-case semantic acc. | dCor(x, z) | training per seed |")
    print("|---|---|---|---|---|---|---|---|")
    for setting in group_settings(content.runs):
        print(row(setting, [by_id[r] for r in setting.runs], times))
    for decision in content.decisions:
        print("\n" + decision.paragraph)
    newer = newer_attacks_rows(content.runs)
    if newer:
        print(f"\nWhat the attacks beyond {', '.join(OLDER)} add (the models they ran on):\n")
        print("| defense | seed | accuracy | worst-case SSIM, 4 → all | LPIPS, 4 → all | semantic acc., 4 → all | newer attacks' mean SSIM |")
        print("|---|---|---|---|---|---|---|")
        print("\n".join(newer))
    if args.png:
        with report_style():
            decision_page(content.decisions, content.subtitle).savefig(args.png, dpi=110)
        print(f"\nsaved {args.png}")


if __name__ == "__main__":
    sys.exit(run_guarded(main))
