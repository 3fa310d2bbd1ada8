"""NoPeek's sketched penalty against the exact one: the estimator, and the models it trains.

    splitleak sweep benchmarks/nopeek_sketch.toml --out runs/nopeek-sketch --workers 2   # ~25 min
    .venv/bin/python -m benchmarks.nopeek_sketch runs/nopeek-sketch                       # ~1 min

1. Estimator: on the sweep's exact-NoPeek models (seed 0), for 8 test batches of 256 images,
   the exact penalty dCor(x, z) and its gradient against the sketched one (both sides folded to
   256 columns by fresh sign sketches): mean difference of the value, its spread over sketches,
   and the cosine between the exact gradient and one sketch's gradient or the mean of 8
   sketches' gradients. One sketch's gradient is noisy (noise energy ~ d / 256 times the
   signal); the mean over sketches, which is what many training steps see, lines up.
2. Outcomes: every model of the sweep, exact vs sketched, per training seed: test accuracy, the
   exact dCor (V and bias-corrected U statistic on the 500 scored test images) and the decoder
   attack's SSIM. The sketch passes if its differences are within the seed-to-seed spread.

Measured (2026-11-23, benchmarks/results/nopeek_sketch.md): it does not. At cut 1 the sketched
penalty barely defends (decoder SSIM 0.91 against 0.56 for exact NoPeek alpha 5), at cut 2 it
leaves dCor higher (0.61 vs 0.52 at alpha 5, 0.58 vs 0.38 at alpha 20); only at cut 3 are the two
close. One sketch's gradient has cosine 0.14-0.28 with the exact one.

Writes ``benchmarks/results/nopeek_sketch.md`` and prints it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import torch

RESULTS = Path(__file__).resolve().parent / "results"
SKETCH = 256


def _models(folder: Path) -> pd.DataFrame:
    """One row per trained model of the sweep: cut, alpha, sketch, seed and its checkpoint."""
    cells = pd.read_csv(folder / "cells.csv")
    cells = cells[cells["status"] == "finished"].copy()
    params = cells["defense_params"].map(json.loads)
    cells["alpha"] = params.map(lambda p: p["alpha"])
    cells["estimator"] = params.map(lambda p: "exact" if p["sketch"] == 0 else f"sketch {p['sketch']}")
    return cells


def estimator_table(folder: Path, batches: int = 8, sketches: int = 8) -> pd.DataFrame:
    from splitleak.data import DataConfig, load_splits
    from splitleak.metrics.dependence import as_rows, distance_correlation
    from splitleak.metrics.sketch import sign_sketch
    from splitleak.models import load_checkpoint

    torch.manual_seed(0)
    x_all = load_splits(DataConfig(dataset="fashion-mnist", limit_train=10, limit_test=256 * batches)).test.x
    models = _models(folder)
    rows = []
    for _, m in models[(models["estimator"] == "exact") & (models["train_seed"] == 0)].sort_values(["cut", "alpha"]).iterrows():
        encoder = load_checkpoint(folder / m["checkpoint"]).model.encoder
        stats = []
        for b in range(batches):
            x = as_rows(x_all[b * 256 : (b + 1) * 256])
            with torch.no_grad():
                z0 = encoder(x_all[b * 256 : (b + 1) * 256])
            z = z0.clone().requires_grad_()
            exact = distance_correlation(x, as_rows(z))
            (g_exact,) = torch.autograd.grad(exact, z)
            values, grads = [], []
            for _ in range(sketches):
                zs = z0.clone().requires_grad_()
                value = distance_correlation(sign_sketch(x, SKETCH), sign_sketch(as_rows(zs), SKETCH))
                values.append(value.item())
                grads.append(torch.autograd.grad(value, zs)[0].flatten())
            cos = torch.nn.functional.cosine_similarity
            flat = g_exact.flatten()
            stats.append({
                "exact": exact.item(),
                "difference": sum(values) / sketches - exact.item(),
                "spread": torch.tensor(values).std().item(),
                "cos_one": sum(cos(g, flat, dim=0).item() for g in grads) / sketches,
                "cos_mean": cos(torch.stack(grads).mean(0), flat, dim=0).item(),
            })
        mean = pd.DataFrame(stats).mean()
        rows.append({"cut": m["cut"], "alpha": m["alpha"], "width": int(z0[0].numel()), **mean.to_dict()})
    return pd.DataFrame(rows)


def outcome_table(folder: Path) -> pd.DataFrame:
    models = _models(folder)
    results = pd.read_csv(folder / "results.csv")
    wanted = {"accuracy": "accuracy", "dcor": "dCor (V)", "dcor_u2": "dCor² (U)", "ssim": "decoder SSIM"}
    results = results[results["metric"].isin(list(wanted))]  # set-level rows, and SSIM per image (averaged below)
    name = lambda path: Path(path).name  # noqa: E731  (results.csv and cells.csv write the path from different folders)
    models = models.assign(model=models["checkpoint"].map(name))
    merged = results.assign(model=results["checkpoint"].map(name)).merge(models[["model", "alpha", "estimator", "train_seed"]], on="model")
    table = merged.pivot_table(index=["cut", "alpha", "estimator", "train_seed"], columns="metric", values="value", aggfunc="mean").rename(columns=wanted)
    return table.reset_index()


def markdown(estimator: pd.DataFrame, outcomes: pd.DataFrame) -> str:
    lines = [
        f"## 1. The estimator (exact-NoPeek models, batches of 256, sketch width {SKETCH})",
        "",
        "| cut | activation width | alpha | exact dCor | sketched - exact | spread over sketches | gradient cosine, one sketch | mean of 8 sketches |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in estimator.iterrows():
        lines.append(
            f"| {int(r['cut'])} | {int(r['width']):,} | {r['alpha']:g} | {r['exact']:.3f} | {r['difference']:+.3f} | {r['spread']:.3f} | {r['cos_one']:.2f} | {r['cos_mean']:.2f} |"
        )
    metrics = [c for c in ("accuracy", "dCor (V)", "dCor² (U)", "decoder SSIM") if c in outcomes.columns]
    lines += [
        "",
        "## 2. The models they train (2 epochs, batch 256; 500 test images scored)",
        "",
        "Each cell: seed 0 / seed 1 (mean).",
        "",
        "| cut | alpha | estimator | " + " | ".join(metrics) + " |",
        "|---|---|---|" + "---|" * len(metrics),
    ]
    for (cut, alpha, estimator_name), group in outcomes.groupby(["cut", "alpha", "estimator"], sort=True):
        cells = []
        for metric in metrics:
            values = group.sort_values("train_seed")[metric].tolist()
            cells.append(" / ".join(f"{v:.3f}" for v in values) + f" ({sum(values) / len(values):.3f})")
        lines.append(f"| {cut} | {alpha:g} | {estimator_name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.nopeek_sketch", description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="the output folder of `splitleak sweep benchmarks/nopeek_sketch.toml`")
    parser.add_argument("--out", default=str(RESULTS / "nopeek_sketch.md"))
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    if not (folder / "cells.csv").is_file() or not (folder / "results.csv").is_file():
        sys.exit(f"{folder} holds no finished sweep (cells.csv and results.csv); run the sweep first (see --help)")
    text = markdown(estimator_table(folder), outcome_table(folder))
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
