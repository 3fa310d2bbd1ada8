"""benchmarks/device_stages.py (the GPU check's record of a demo) and the check script's syntax."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from benchmarks.device_stages import main, stage_rows

ROOT = Path(__file__).resolve().parent.parent


def test_stage_times_of_every_cell_and_the_summary_come_back(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    for cell, train in (("none", 2.5), ("nopeek", 3.0)):
        (demo / "cells" / cell).mkdir(parents=True)
        runs = {"runs": {"abc": {"stages": {"train": train, "attack/decoder/fit": 1.25}}}}
        (demo / "cells" / cell / "provenance.json").write_text(json.dumps(runs))
    (demo / "summary.csv").write_text("attack,metric,mean\ndecoder,ssim,0.8\n")
    table = stage_rows(demo)
    assert list(table["cell"]) == ["none", "nopeek"] and list(table["train"]) == [2.5, 3.0]
    main([str(demo), str(tmp_path / "out")])
    assert (tmp_path / "out" / "demo-summary.csv").read_text() == (demo / "summary.csv").read_text()
    assert "attack/decoder/fit" in (tmp_path / "out" / "demo-stages.csv").read_text().splitlines()[0]


def test_the_check_script_parses() -> None:
    assert subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "device_check.sh")]).returncode == 0
