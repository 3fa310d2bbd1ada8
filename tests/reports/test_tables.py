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
        assert row.ssim_worst == pytest.approx(worst) and row.ssim_worst_ci_low <= row.ssim_worst <= row.ssim_worst_ci_high  # what the verdict judges
        assert row.accuracy_ci_low <= row.accuracy <= row.accuracy_ci_high and row.accuracy_n == 20
        assert row.dcor_ci_low <= row.dcor <= row.dcor_ci_high
        assert np.isnan(row.lpips_min) and row.lpips_note == "LPIPS was not asked for"
        assert re.fullmatch(r"(reconstructable \(SSIM \d\.\d\d by the per-image worst case\)|unrecognisable \(worst SSIM -?\d\.\d\d\)|borderline .*)", row.verdict)
    cells = display_rows(summary)
    assert all(len(c) == 8 for c in cells) and cells[0][3].text == "n/a*"
    for (_, row), cell in zip(summary.iterrows(), cells):  # the per-image worst case, the leakiest single attack in brackets
        assert cell[2].text == f"{row.ssim_worst:.2f}  ({row.ssim_max_attack})"
        assert f"{row.ssim_worst:.2f}" in row.verdict or not row.verdict.startswith("reconstructable")  # the table and the verdict read the same number
    apart = summary.iloc[[0]].assign(ssim_worst=summary.ssim_max.iloc[0] + 0.05)  # different attacks rebuild different images
    assert display_rows(apart)[0][2].text == f"{apart.ssim_worst.iloc[0]:.2f}  ({apart.ssim_max_attack.iloc[0]})"
    assert [c[0].text for c in cells] == [r.label for r in runs]  # rows are headed by defense and cut, not a hash


def test_pareto_front() -> None:
    leakage = np.array([0.9, 0.2, 0.5, 0.6, np.nan, 0.2])
    utility = np.array([0.9, 0.5, 0.8, 0.7, 1.0, 0.4])
    assert pareto_front(leakage, utility).tolist() == [True, True, True, False, False, False]


def _semantic_run(accuracy_per_image: list[float], chance: float, reference: float):
    """A run with semantic accuracy rows for one attack, its chance level and reference."""
    from tests.reports.synthetic import run_results

    from splitleak.results import Results

    results = run_results("none", {}, 0, 0.8, {"decoder": 0.2})
    base = results.table.iloc[0].to_dict()
    extra = [{**base, "attack": "", "metric": m, "value": v, "sample": None, "n": len(accuracy_per_image)} for m, v in (("semantic_chance", chance), ("semantic_reference", reference))]
    extra += [{**base, "attack": "decoder", "metric": "semantic_accuracy", "value": v, "sample": i, "n": len(accuracy_per_image)} for i, v in enumerate(accuracy_per_image)]
    table = pd.concat([results.table, pd.DataFrame(extra)], ignore_index=True)
    return collect_runs(Results(table=table, provenance=results.provenance))[0]


def test_semantic_accuracy_at_chance_is_flagged_beside_the_chance_level() -> None:
    from splitleak.reports.tables import at_chance, chance_attacks, summary_row

    garbage = _semantic_run([1.0] * 4 + [0.0] * 36, chance=0.12, reference=0.78)  # 0.10: the favourite class's share
    row = summary_row(garbage)
    assert row["semantic_chance"] == 0.12 and row["semantic_accuracy_max_at_chance"] and chance_attacks(garbage) == ["decoder"]
    cell = display_rows(pd.DataFrame([row]))[0][5]
    assert cell.text.endswith("at chance") and "orig. 0.78" in cell.sub and "chance 0.12" in cell.sub
    leaky = _semantic_run([1.0] * 32 + [0.0] * 8, chance=0.12, reference=0.78)
    row = summary_row(leaky)
    assert not row["semantic_accuracy_max_at_chance"] and chance_attacks(leaky) == []
    assert "at chance" not in display_rows(pd.DataFrame([row]))[0][5].text
    assert not at_chance(float("nan"), 0.1) and not at_chance(0.05, float("nan"))  # earlier results: no chance row, no flag
