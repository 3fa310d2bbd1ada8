"""A demo folder's per-model stage times and its summary, as two small files (the GPU check's record).

    python -m benchmarks.device_stages DEMO_FOLDER OUT_FOLDER

Writes OUT_FOLDER/demo-stages.csv (one row per model: the seconds of training, each attack's fit
and reconstruct, and the scorers, from each cell's provenance `stages`) and copies the demo's
summary.csv to OUT_FOLDER/demo-summary.csv, so that a run on a lent machine brings back its
timings and scores without the demo's checkpoints (benchmarks/device_check.sh).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pandas as pd


def stage_rows(demo: Path) -> pd.DataFrame:
    """One row per run of each cell under `demo`/cells: its label and stage seconds."""
    rows = []
    for provenance in sorted(demo.glob("cells/*/provenance.json")):
        for run in json.loads(provenance.read_text())["runs"].values():
            rows.append({"cell": provenance.parent.name, **{k: round(float(v), 3) for k, v in run.get("stages", {}).items()}})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.device_stages", description=__doc__.splitlines()[0])
    parser.add_argument("demo", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    table = stage_rows(args.demo)
    table.to_csv(args.out / "demo-stages.csv", index=False)
    shutil.copyfile(args.demo / "summary.csv", args.out / "demo-summary.csv")
    print(table.set_index("cell").T.to_string() if len(table) else "no cells with stage times")


if __name__ == "__main__":
    main()
