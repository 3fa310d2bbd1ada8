"""Attack x cut x defense on Fashion-MNIST: SSIM, LPIPS and semantic accuracy of each attack.

    .venv/bin/python examples/attack_table.py --out runs/attack-table [--epochs 2] [--limit 500]

Trains small-cnn at every cut under no defense, NoPeek (alpha 20) and Gaussian activation
noise (scale 1), attacks each model with every registered attack at its default budget, and
writes `attack_table.md` (three tables: mean SSIM, mean LPIPS, semantic accuracy) into the
output folder, a sweep folder (the study is a sweep of one cell per model: checkpoints/, cells/,
the merged results). Re-running with the same options reuses finished cells. docs/attacks.md
shows the table this produced here.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pandas as pd

from splitleak import DataConfig, EvalConfig, Results, TrainConfig
from splitleak.attacks import ATTACKS
from splitleak.models import get_architecture
from splitleak.sweep import run_sweep
from splitleak.sweep.grid import study_grid

METRICS = {"ssim": "mean SSIM (higher = more leakage; < 0.3 unrecognisable)", "lpips": "mean LPIPS (lower = more leakage)", "semantic_accuracy": "semantic accuracy (attacker's classifier on reconstructions)"}


def models(epochs: int, alpha: float, noise: float) -> list[tuple[str, TrainConfig]]:
    defenses = [("none", {}), ("nopeek", {"alpha": alpha}), ("noise", {"scale": noise})]
    return [
        (f"cut{cut}-{name}", TrainConfig(cut=cut, epochs=epochs, defense=name, defense_params=params))
        for cut in get_architecture("small-cnn").cuts
        for name, params in defenses
    ]


def markdown(pivot: pd.DataFrame) -> str:
    """A pivot table (index: one or more levels; columns: cuts) as a Markdown table."""
    names = [str(n) for n in pivot.index.names]
    lines = ["| " + " | ".join([*names, *(f"cut {c}" for c in pivot.columns)]) + " |"]
    lines.append("|" + "---|" * (len(names) + len(pivot.columns)))
    for key, row in pivot.iterrows():
        keys = key if isinstance(key, tuple) else (key,)
        lines.append("| " + " | ".join([*map(str, keys), *(f"{v:.3f}" if pd.notna(v) else "-" for v in row)]) + " |")
    return "\n".join(lines)


def label(defense: str, params: str) -> str:
    """'nopeek' + '{"alpha": 20.0}' -> 'nopeek alpha=20' (the noise distribution left out)."""
    values = {k: v for k, v in json.loads(params).items() if k != "distribution"}
    return " ".join([defense, *(f"{k}={v:g}" for k, v in values.items())])


def tables(results: Results) -> str:
    """Task accuracy, then one table per metric: rows (attack, defense), columns cuts."""
    summary = results.summary()
    summary["defense"] = [label(d, p) for d, p in zip(summary["defense"], summary["defense_params"])]
    accuracy = summary[(summary.attack == "") & (summary.metric == "accuracy")]
    parts = ["### Task accuracy\n", markdown(accuracy.pivot_table(index="defense", columns="cut", values="mean", sort=False)), ""]
    for metric, title in METRICS.items():
        rows = summary[summary.metric == metric]
        body = markdown(rows.pivot_table(index=["attack", "defense"], columns="cut", values="mean", sort=False)) if len(rows) else "not computed"
        parts += [f"### {title}\n", body, ""]
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/attack-table")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=500, help="test images attacked per model")
    parser.add_argument("--alpha", type=float, default=20.0)
    parser.add_argument("--noise", type=float, default=1.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    data = DataConfig(dataset="fashion-mnist", limit_test=args.limit)
    evaluation = EvalConfig(attacks=tuple(ATTACKS), limit=args.limit, semantic_epochs=5, require_lpips=True)
    outcome = run_sweep(study_grid("attack-table", data, models(args.epochs, args.alpha, args.noise), evaluation), args.out, report=False)
    if outcome.failed:
        raise SystemExit(f"{len(outcome.failed)} model(s) failed; see {args.out}/sweep.json")
    text = tables(Results.load(args.out))
    (Path(args.out) / "attack_table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
