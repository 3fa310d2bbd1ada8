"""benchmarks/defense_training.py and examples/defense_table.py agree on which setting a time belongs to."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from benchmarks.defense_training import GRID, models, write_csv
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
