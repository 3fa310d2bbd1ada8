"""benchmarks/defense_training.py and examples/defense_table.py agree on which setting a time belongs to,
and the scripts answer bad input as the command line does."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.defense_training import GRID, models, write_csv
from splitleak.errors import InputError
from splitleak.sweep.grid import canonical

ROOT = Path(__file__).resolve().parent.parent


def _defense_table():
    spec = importlib.util.spec_from_file_location("defense_table", ROOT / "examples" / "defense_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_model_per_setting_of_the_study():
    cells = models(GRID, {0})
    assert len(cells) == 14
    assert len({c.defense_label for c in cells}) == 14
    assert {c.train.seed for c in cells} == {0}
    assert {c.train.epochs for c in cells} == {2} and {c.train.batch_size for c in cells} == {256}


def test_times_are_found_by_the_parameters_results_record(tmp_path):
    cells = models(GRID, {0})
    rows = {c.defense_label: [(float(i), 2.0 * i)] for i, c in enumerate(cells, start=1)}
    write_csv(tmp_path / "t.csv", {c.defense_label: c for c in cells}, rows)
    times = _defense_table().quiet_times(str(tmp_path / "t.csv"))
    for i, cell in enumerate(cells, start=1):
        # evaluate writes the resolved parameters as JSON (floats stay floats: "alpha": 5.0)
        recorded = json.loads(json.dumps({k: float(v) if isinstance(v, int) else v for k, v in cell.train.defense_params.items()}))
        assert times[(cell.train.defense, canonical(recorded))] == float(i)


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize(
    "content, complaint",
    [
        ("defense,seeds\nnone,1\n", "expected the columns"),
        ("defense,defense_params,train_wall_s\nnone,{},fast\n", "must be a number of seconds"),
        ("defense,defense_params,train_wall_s\nnone,{},-3\n", "must be a number of seconds"),
        ("defense,defense_params,train_wall_s\nnone,{},nan\n", "must be a number of seconds"),
    ],
)
def test_a_malformed_times_file_is_refused_in_one_line(tmp_path, content, complaint):
    path = tmp_path / "t.csv"
    path.write_text(content)
    with pytest.raises(InputError, match=complaint):
        _defense_table().quiet_times(str(path))


def test_the_scripts_answer_bad_input_in_one_line(tmp_path):
    """A script's bad input ends as the command line's does: one line, exit 2, nothing written."""
    for args, complaint in (
        (["examples/defense_table.py", str(tmp_path / "missing")], "no such results folder"),
        (["examples/defense_table.py", str(tmp_path), "--training-times", str(tmp_path / "absent.csv")], "absent.csv"),
        (["-m", "benchmarks.defense_training", "--seeds", "7", "--out", str(tmp_path / "t.md")], "no model with training seed 7"),
        (["examples/attack_table.py", "--cuts", "2.5", "--out", str(tmp_path / "table")], "a cut is a whole number"),
    ):
        done = _run(args)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("splitleak: error:") and complaint in lines[0], (args, done.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_newer_attacks_table_compares_the_worst_case_over_the_four_and_over_all():
    import pandas as pd

    from splitleak.reports.runs import Run

    ssim = {"decoder": [0.5, 0.2], "rmle": [0.1, 0.1], "shadow": [0.0, 0.0], "unsplit": [0.0, 0.0], "fora": [0.1, 0.9]}
    ssim["worst"] = [0.5, 0.9]  # what the merge writes: the per-image worst case over every attack
    common = {"run": "r1", "seed": 0, "defense": "dropout", "defense_params": '{"rate": 0.7}', "n": 2, "ci_low": float("nan"), "ci_high": float("nan")}
    rows = [{**common, "attack": "", "metric": "accuracy", "value": 0.86, "sample": None}]
    rows += [{**common, "attack": a, "metric": "ssim", "value": v, "sample": i} for a, values in ssim.items() for i, v in enumerate(values)]
    table = pd.DataFrame(rows).astype({"sample": "Int64"})
    module = _defense_table()
    (line,) = module.newer_attacks_rows([Run(run="r1", label="x", table=table)])
    assert "| 0 | 0.860 | 0.350 → 0.700 |" in line and "fora 0.500" in line
    four = table[table["attack"] != "fora"].copy()
    four.loc[four["attack"] == "worst", "value"] = [0.5, 0.2]
    assert module.newer_attacks_rows([Run(run="r1", label="x", table=four)]) == []
