"""Attack x cut x defense: SSIM, LPIPS and semantic accuracy of each attack (default: Fashion-MNIST, small-cnn).

    .venv/bin/python examples/attack_table.py --out runs/attack-table [--cuts 1,2,3] [--epochs 2] [--limit 200] [--workers 2] [--threads 1]
    .venv/bin/python examples/attack_table.py --out runs/resnet-table --dataset photo-patches --arch resnet18 --cuts stem,layer1,layer2 --limit-train 5000

Trains the architecture (default small-cnn) at each cut under no defense, NoPeek (alpha 5 and 20) and Gaussian activation
noise (scale 1), attacks each model with every registered attack that attacks an honestly
trained model (all but training-time attacks such as fsha) at its default budget, adaptively
(against noise the attacker averages one release per training epoch), and writes
`attack_table.md` (task accuracy, then mean SSIM, mean LPIPS and semantic accuracy, each mean
with its 95% bootstrap CI over the attacked images; the per-image worst case over attacks is
the `worst` row; and, when sdar or fora ran, how much they add to the worst case over the
four older attacks) into the output folder, a sweep folder (the study is a sweep of one cell per
model: checkpoints/, cells/, the merged results). Re-running with the same options reuses
finished cells; `--tables-only` writes the tables of the models finished so far (a long run's
progress, from another shell). docs/attacks.md shows the table this produced here.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

import pandas as pd

from splitleak import DataConfig, EvalConfig, Results, TrainConfig
from splitleak._cli.device import HELP as DEVICE_HELP, device_argument
from splitleak.attacks import passive_attacks
from splitleak.cli import run_guarded
from splitleak.cuts import parse_cut
from splitleak.models import get_architecture
from splitleak.sweep import run_sweep
from splitleak.sweep.grid import study_grid
from splitleak.worst_case import worst_case_gain

METRICS = {"ssim": "mean SSIM (higher = more leakage; < 0.3 unrecognisable)", "lpips": "mean LPIPS (lower = more leakage)", "semantic_accuracy": "semantic accuracy (attacker's classifier on reconstructions)"}


def models(
    arch: str, cuts: list[int | str], epochs: int, alphas: list[float], noise: float | None, undefended: bool = True, device: str = "cpu"
) -> list[tuple[str, TrainConfig]]:
    defenses = [*([("none", {})] if undefended else []), *(("nopeek", {"alpha": alpha}) for alpha in alphas), *([("noise", {"scale": noise})] if noise else [])]
    return [
        (f"cut{cut}-{name}" + "".join(f"-{v:g}" for v in params.values()), TrainConfig(arch=arch, cut=cut, epochs=epochs, defense=name, defense_params=params, device=device))
        for cut in cuts
        for name, params in defenses
    ]


def markdown(pivot: pd.DataFrame) -> str:
    """A pivot table (index: one or more levels; columns: cuts) as a Markdown table."""
    names = [str(n) for n in pivot.index.names]
    lines = ["| " + " | ".join([*names, *(f"cut {c}" for c in pivot.columns)]) + " |"]
    lines.append("|" + "---|" * (len(names) + len(pivot.columns)))
    for key, row in pivot.iterrows():
        keys = key if isinstance(key, tuple) else (key,)
        lines.append("| " + " | ".join([*map(str, keys), *(str(v) if isinstance(v, str) else f"{v:.3f}" if pd.notna(v) else "-" for v in row)]) + " |")
    return "\n".join(lines)


def with_ci(rows: pd.DataFrame) -> pd.Series:
    """'0.813 [0.790, 0.834]': each row's mean and 95% bootstrap CI."""
    return pd.Series([f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in zip(rows["mean"], rows["ci_low"], rows["ci_high"])], index=rows.index)


def label(defense: str, params: str) -> str:
    """'nopeek' + '{"alpha": 20.0}' -> 'nopeek alpha=20' (the noise distribution left out)."""
    values = {k: v for k, v in json.loads(params).items() if k != "distribution"}
    return " ".join([defense, *(f"{k}={v:g}" for k, v in values.items())])


OLDER = ("decoder", "rmle", "shadow", "unsplit")  # the 2019-2022 attacks; sdar (2025) and fora (2024) are the newer


def newer_attacks_gain(results: Results) -> str:
    """Per model, the per-image worst case over the older attacks and over every attack that ran:
    what the newer ones add (empty text when none of them ran)."""
    table = results.table
    gains = worst_case_gain(table, OLDER, list(METRICS))
    if not any(gain.extra for gain in gains):
        return ""
    first = table.drop_duplicates("run").set_index("run")
    lines = ["| cut | defense | " + " | ".join(f"{m}: older → all" for m in METRICS) + " |", "|" + "---|" * (2 + len(METRICS))]
    for gain in gains:
        cells = [f"{gain.before.get(m, float('nan')):.3f} → {gain.after.get(m, float('nan')):.3f}" for m in METRICS]
        lines.append(f"| {first.loc[gain.run, 'cut']} | {label(first.loc[gain.run, 'defense'], first.loc[gain.run, 'defense_params'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tables(results: Results) -> str:
    """Task accuracy, then one table per metric: rows (attack, defense), columns cuts."""
    summary = results.summary()
    summary["defense"] = [label(d, p) for d, p in zip(summary["defense"], summary["defense_params"])]
    accuracy = summary[(summary.attack == "") & (summary.metric == "accuracy")]
    parts = ["### Task accuracy\n", markdown(accuracy.pivot_table(index="defense", columns="cut", values="mean", sort=False)), ""]
    for metric, title in METRICS.items():
        rows = summary[summary.metric == metric]
        rows = rows.assign(cell=with_ci(rows))
        body = markdown(rows.pivot_table(index=["attack", "defense"], columns="cut", values="cell", aggfunc="first", sort=False)) if len(rows) else "not computed"
        parts += [f"### {title}\n", body, ""]
    gain = newer_attacks_gain(results)
    if gain:
        parts += [f"### What the newer attacks add: per-image worst case over {', '.join(OLDER)} → over every attack\n", gain, ""]
    return "\n".join(parts)


def write_finished_tables(out: Path) -> str:
    """Merge the finished cells of `out` (a sweep folder) and write their tables to
    attack_table.md, headed by how many models they are; returns a one-line summary."""
    from splitleak.sweep.merge import merge_results

    try:  # the grid's order (cut, then defense), as the finished run's tables
        order = [out / cell["folder"] for cell in json.loads((out / "sweep.json").read_text())["cells"]]
    except (OSError, ValueError, KeyError, TypeError):
        order = sorted((out / "cells").iterdir()) if (out / "cells").is_dir() else []
    cells = [p for p in order if (p / "results.csv").is_file()]
    if not cells:
        return f"no finished cells in {out}/cells"
    text = f"Tables of the {len(cells)} model(s) finished so far.\n\n" + tables(merge_results([(c.name, Results.load(c)) for c in cells]))
    (out / "attack_table.md").write_text(text + "\n")
    print(text)
    return f"wrote {out / 'attack_table.md'} ({len(cells)} models)"


def _alphas(text: str) -> tuple[float, ...]:
    """'5,20' -> (5.0, 20.0); '' -> (): NoPeek alphas, finite numbers > 0."""
    try:
        alphas = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        alphas = (math.nan,)
    if not all(math.isfinite(a) and a > 0 for a in alphas):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers > 0 such as 5,20, got {text!r}")
    return alphas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/attack-table")
    parser.add_argument("--dataset", default="fashion-mnist", help="a registered dataset (e.g. photo-patches, cifar10)")
    parser.add_argument("--data-dir", default=None, help="where the dataset's files are (default: $SPLITLEAK_DATA_DIR, ~/.cache/splitleak/data, Debian's packages)")
    parser.add_argument("--arch", default="small-cnn", help="a registered architecture (e.g. resnet18)")
    parser.add_argument("--limit-train", type=int, default=None, help="training images per model (default: all)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=200, help="test images attacked per model")
    parser.add_argument("--cuts", default=None, help="comma-separated cuts, numbers or names (default: the architecture's first three)")
    parser.add_argument("--alphas", default=(5.0, 20.0), type=_alphas, help="comma-separated NoPeek alphas (empty: none)")
    parser.add_argument("--workers", type=int, default=1, help="models evaluated in parallel (each with cores // workers threads)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per worker (default: cores // workers)")
    parser.add_argument("--semantic-epochs", type=int, default=5, help="epochs of the attacker's semantic classifier (a whole network of the same architecture)")
    parser.add_argument("--attacks", default=None, help="comma-separated attacks (default: every passive one)")
    parser.add_argument("--no-undefended", action="store_true", help="leave out the undefended models (e.g. when another run has them)")
    parser.add_argument("--device", default="cpu", type=device_argument, help=DEVICE_HELP)
    parser.add_argument("--noise", type=float, default=1.0, help="Gaussian activation noise scale (0: no noise model)")
    parser.add_argument("--tables-only", action="store_true", help="run nothing: write the tables of the models finished so far in --out (a long run's progress)")
    args = parser.parse_args()
    if args.tables_only:
        print(write_finished_tables(Path(args.out)))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    data = DataConfig(dataset=args.dataset, data_dir=args.data_dir, limit_train=args.limit_train, limit_test=args.limit)
    # the adaptive attacker (as in the demo): one release of each image per training epoch
    evaluation = EvalConfig(attacks=tuple(args.attacks.split(",")) if args.attacks else passive_attacks(), limit=args.limit, semantic_epochs=args.semantic_epochs, require_lpips=True, observations="epochs", device=args.device)
    arch = get_architecture(args.arch)
    cuts = [parse_cut(c) for c in args.cuts.split(",")] if args.cuts else list(arch.cuts[:3])
    alphas = list(args.alphas)
    outcome = run_sweep(study_grid("attack-table", data, models(args.arch, cuts, args.epochs, alphas, args.noise, undefended=not args.no_undefended, device=args.device), evaluation), args.out, workers=args.workers, threads=args.threads, report=False)
    if outcome.failed:
        raise SystemExit(f"{len(outcome.failed)} model(s) failed; see {args.out}/sweep.json")
    text = tables(Results.load(args.out))
    (Path(args.out) / "attack_table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    sys.exit(run_guarded(main))
