"""One verdict engine: the report's verdict is the default policy's rule, the gate's starter policy
is the default policy (issue 15, item 6)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from splitleak.cli import main
from splitleak.gate import check_policy, load_policy
from splitleak.policy import (
    DEFAULT_POLICY,
    SSIM_UNRECOGNISABLE,
    STARTER_POLICY,
    VERDICT_RULE,
    Measure,
    Policy,
    parse_policy,
    render_policy,
    worst_measure,
)
from splitleak.reports.runs import collect_runs
from splitleak.reports.tables import summary_table, verdict
from splitleak.results import COLUMNS, Results


def _spread(mean: float, n: int = 40, sd: float = 0.05) -> list[float]:
    v = np.random.default_rng(0).normal(0, sd, n)
    return list(v - v.mean() + mean)


def _results(ssim: dict[str, float]) -> Results:
    base = {
        "run": "r", "checkpoint": "r.safetensors", "checkpoint_sha256": "r" * 4, "dataset": "digits", "arch": "small-cnn",
        "cut": 1, "defense": "none", "defense_params": "{}", "seed": 0,
    }
    records = [
        {**base, "attack": attack, "metric": "ssim", "value": v, "sample": i, "n": 40, "ci_low": np.nan, "ci_high": np.nan}
        for attack, mean in ssim.items()
        for i, v in enumerate(_spread(mean))
    ]
    records.append({**base, "attack": "", "metric": "accuracy", "value": 0.9, "sample": pd.NA, "n": 50, "ci_low": np.nan, "ci_high": np.nan})
    return Results(table=pd.DataFrame(records, columns=list(COLUMNS)))


@pytest.mark.parametrize(
    ("ssim", "category", "gate_passes"),
    [
        ({"decoder": 0.35}, "reconstructable", False),
        ({"decoder": 0.1}, "unrecognisable", True),
        ({"decoder": 0.29, "rmle": 0.1}, "borderline", False),  # mean below 0.3, its CI (sd 0.05, n 40) reaches above
    ],
)
def test_the_report_verdict_and_the_default_policy_agree(ssim: dict[str, float], category: str, gate_passes: bool) -> None:
    results = _results(ssim)
    (row,) = summary_table(collect_runs(results)).itertuples()
    assert row.verdict_category == category
    (check,) = check_policy(Policy(rules=(VERDICT_RULE,)), results).checks
    assert (check.status == "pass") is gate_passes
    assert VERDICT_RULE in DEFAULT_POLICY.rules and VERDICT_RULE.max == SSIM_UNRECOGNISABLE


def test_worst_under_a_ci_rule_is_the_attack_whose_ci_reaches_furthest() -> None:
    """Conservative reading of "the worst attack's mean <= 0.3": every attack's CI stays below."""
    measures = [Measure("decoder", 0.21, 0.17, 0.25, 40), Measure("rmle", 0.2, 0.07, 0.33, 40)]
    assert worst_measure(VERDICT_RULE, measures).attack == "rmle"
    assert worst_measure(dataclasses.replace(VERDICT_RULE, use="point"), measures).attack == "decoder"
    judged = verdict(pd.DataFrame([{"attack": m.attack, "metric": "ssim", "mean": m.value, "ci_low": m.ci_low, "ci_high": m.ci_high} for m in measures]))
    assert judged.text == "borderline (SSIM 0.20 by rmle, 95% CI up to 0.33)"


def test_the_starter_policy_is_the_default_policy(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    assert main(["gate", "--init", "--policy", str(path)]) == 0
    assert path.read_text(encoding="utf-8") == STARTER_POLICY
    assert load_policy(path) == DEFAULT_POLICY
    assert parse_policy(render_policy(DEFAULT_POLICY)) == DEFAULT_POLICY  # without the comments, too


def test_the_policy_in_docs_ci_is_the_default_policy() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "ci.md").read_text(encoding="utf-8")
    block = text.split("## The policy", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    assert parse_policy(block) == DEFAULT_POLICY
