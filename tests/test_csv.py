"""CSV cells a spreadsheet would run as formulas are escaped, and splitleak reads back what it wrote."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from splitleak._csv import escape_cell, unescape_cell
from splitleak.results import Results

HOSTILE = ["=1+1", "+1", "-1", "-name", "@SUM(A1)", "\tTab", "\rCR", "'quoted", "'=x", "''", "'", "plain", "", "a=b"]


@pytest.mark.parametrize("text", HOSTILE)
def test_escaping_round_trips_and_leaves_no_formula(text: str) -> None:
    escaped = escape_cell(text)
    assert unescape_cell(escaped) == text
    assert not escaped.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert escaped == text or escaped == "'" + text


def test_numbers_and_missing_values_are_not_text() -> None:
    assert escape_cell(-1.5) == -1.5 and escape_cell(-3) == -3 and escape_cell(None) is None
    assert unescape_cell(-1.5) == -1.5


def test_results_csv_escapes_names_and_reads_them_back(tmp_path: Path) -> None:
    base = dict(checkpoint="=HYPERLINK(\"http://x\")", checkpoint_sha256="f" * 64, dataset="@digits", arch="small-cnn",
                cut=1, defense="+noise", defense_params="{}", seed=-7, n=2)
    rows = [dict(base, run="-r1", attack="-evil", metric="ssim", value=v, sample=i) for i, v in enumerate([-0.25, 0.5])]
    rows.append(dict(base, run="'quoted", attack="", metric="accuracy", value=-1.0, sample=None))
    results = Results(pd.DataFrame(rows))
    results.save(tmp_path / "r")
    with open(tmp_path / "r" / "results.csv", newline="") as handle:
        cells = list(csv.DictReader(handle))
    assert [c["run"] for c in cells] == ["'-r1", "'-r1", "''quoted"] and cells[0]["attack"] == "'-evil"
    assert cells[0]["checkpoint"].startswith("'=") and cells[0]["dataset"] == "'@digits" and cells[0]["defense"] == "'+noise"
    assert [c["value"] for c in cells] == ["-0.25", "0.5", "-1"] and cells[0]["seed"] == "-7"  # numbers stay numbers
    for name in ("results.csv", "summary.csv"):
        text = (tmp_path / "r" / name).read_text()
        assert not any(cell.startswith(("=", "+", "@")) or cell.startswith("-") and not _number(cell) for line in text.splitlines() for cell in line.split(","))
    back = Results.load(tmp_path / "r")
    pd.testing.assert_frame_equal(back.table, results.table)
    assert back.table["value"].dtype == np.float64 and back.table["seed"].iloc[0] == -7


def _number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def test_the_sweeps_cells_csv_escapes_what_a_cell_records(tmp_path: Path) -> None:
    from splitleak.sweep import parse_grid
    from splitleak.sweep.runner import _Ledger

    grid = parse_grid('[grid]\ndataset = "digits"\ncut = [1]\nattack = ["decoder"]\n[[defense]]\nname = "none"\n')
    ledger = _Ledger(grid, tmp_path, {}, None)
    cell = grid.cells[0]
    ledger.runs[cell.key] = "-r1"
    ledger.status[cell.key] = "failed"
    ledger.errors[cell.key] = {"stage": "evaluate", "type": "ValueError", "message": "=1+1"}
    ledger.write_cells_csv()
    with open(tmp_path / "cells.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["run"] == "'-r1" and row["cut"] == "1" and row["error"] == "evaluate: ValueError: =1+1"
    assert unescape_cell(row["run"]) == "-r1"
