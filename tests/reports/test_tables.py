import math
import re

import numpy as np
import pandas as pd
import pytest

from splitleak.reports.runs import collect_runs
from splitleak.reports.tables import SUMMARY_COLUMNS, display_rows, summary_table, verdict, wilson_interval
from splitleak.reports.tradeoff import pareto_front


def test_wilson_interval_matches_the_textbook_values() -> None:
    low, high = wilson_interval(0.5, 100)
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    low, high = wilson_interval(1.0, 20)  # never beyond [0, 1], not degenerate at the edge
    assert high == 1.0 and low == pytest.approx(0.8389, abs=1e-4)
    assert all(math.isnan(v) for v in wilson_interval(0.5, 0))


def _ssim(rows: list[tuple[str, float, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"attack": a, "metric": "ssim", "mean": m, "ci_low": m - 0.05, "ci_high": h} for a, m, h in rows])


def test_verdict_follows_the_ssim_reference() -> None:
    assert verdict(_ssim([("decoder", 0.5, 0.55), ("rmle", 0.88, 0.9)])).text == "reconstructable (SSIM 0.88 by rmle)"
    judged = verdict(_ssim([("decoder", 0.21, 0.25), ("rmle", 0.12, 0.2)]))
    assert (judged.category, judged.text) == ("unrecognisable", "unrecognisable (worst SSIM 0.21)")
    judged = verdict(_ssim([("decoder", 0.21, 0.25), ("rmle", 0.2, 0.33)]))
    assert judged.category == "borderline" and "rmle" in judged.text and "0.33" in judged.text
    assert verdict(pd.DataFrame(columns=["attack", "metric", "mean", "ci_low", "ci_high"])).category == "unknown"


def test_summary_has_one_row_per_checkpoint_with_worst_cases(report_dirs) -> None:
    runs = collect_runs(report_dirs)
    summary = summary_table(runs)
    assert list(summary.columns) == list(SUMMARY_COLUMNS) and len(summary) == 3
    for run, (_, row) in zip(runs, summary.iterrows()):
        ssim = run.table[(run.table.metric == "ssim")].groupby("attack").value.mean()
        worst = ssim.pop("worst")  # the per-image worst case leaks at least as much as any one attack
        assert worst >= ssim.max() - 1e-12
        assert row.ssim_max == pytest.approx(ssim.max()) and row.ssim_max_attack == ssim.idxmax()
        assert row.ssim_max_ci_low <= row.ssim_max <= row.ssim_max_ci_high
        assert row.accuracy_ci_low <= row.accuracy <= row.accuracy_ci_high and row.accuracy_n == 20
        assert row.dcor_ci_low <= row.dcor <= row.dcor_ci_high
        assert np.isnan(row.lpips_min) and row.lpips_note == "LPIPS was not asked for"
        assert re.fullmatch(r"(reconstructable \(SSIM \d\.\d\d by the per-image worst case\)|unrecognisable \(worst SSIM -?\d\.\d\d\)|borderline .*)", row.verdict)
    cells = display_rows(summary)
    assert all(len(c) == 10 for c in cells) and cells[0][5].text == "n/a*"


def test_pareto_front() -> None:
    leakage = np.array([0.9, 0.2, 0.5, 0.6, np.nan, 0.2])
    utility = np.array([0.9, 0.5, 0.8, 0.7, 1.0, 0.4])
    assert pareto_front(leakage, utility).tolist() == [True, True, True, False, False, False]
