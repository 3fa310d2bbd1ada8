"""The per-image worst case over attacks (attack = "worst"): definition, recomputation, readers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from splitleak.results import Results
from splitleak.worst_case import WORST_CASE, with_worst_case, worst_case_rows

BASE = dict(run="r1", checkpoint="m.safetensors", checkpoint_sha256="a" * 64, dataset="digits", arch="small-cnn", cut=1,
            defense="none", defense_params="{}", seed=0, ci_low=np.nan, ci_high=np.nan)


def _rows(attack: str, metric: str, values: list[float], samples: list[int] | None = None) -> list[dict]:
    samples = samples if samples is not None else list(range(len(values)))
    return [dict(BASE, attack=attack, metric=metric, value=v, sample=s, n=len(values)) for v, s in zip(values, samples)]


def _table(*groups: list[dict]) -> pd.DataFrame:
    return Results(table=pd.DataFrame([row for group in groups for row in group])).table


def test_each_image_takes_its_best_reconstruction_in_the_metrics_direction() -> None:
    table = _table(
        _rows("decoder", "ssim", [0.9, 0.1, 0.5]), _rows("rmle", "ssim", [0.2, 0.8, 0.4]),
        _rows("decoder", "lpips", [0.1, 0.6, 0.3]), _rows("rmle", "lpips", [0.5, 0.2, 0.4]),
        [dict(BASE, attack="decoder", metric="dcor_recon", value=0.7, sample=pd.NA, n=3)],  # set-level: no per-image reading
        [dict(BASE, attack="", metric="accuracy", value=0.9, sample=pd.NA, n=3)],
    )
    worst = worst_case_rows(table).set_index(["metric", "sample"])["value"]
    assert worst["ssim"].tolist() == [0.9, 0.8, 0.5]  # higher leaks more: the maximum
    assert worst["lpips"].tolist() == [0.1, 0.2, 0.3]  # lower leaks more: the minimum
    assert set(worst.index.get_level_values("metric")) == {"ssim", "lpips"}
    assert (worst_case_rows(table)["n"] == 3).all() and (worst_case_rows(table)["attack"] == WORST_CASE).all()


def test_only_images_every_attack_scored_enter_and_recomputing_replaces() -> None:
    table = _table(_rows("decoder", "ssim", [0.9, 0.1, 0.5], [4, 5, 6]), _rows("rmle", "ssim", [0.2, 0.8], [5, 6]))
    once = with_worst_case(table)
    rows = once[once.attack == WORST_CASE]
    assert rows["sample"].tolist() == [5, 6] and rows["value"].tolist() == [0.2, 0.8] and (rows["n"] == 2).all()
    pd.testing.assert_frame_equal(with_worst_case(once), once)  # idempotent: old worst rows are dropped first
    assert worst_case_rows(_table([dict(BASE, attack="", metric="accuracy", value=0.9, sample=pd.NA, n=3)])).empty


def test_the_gate_and_the_report_judge_the_worst_case_when_present() -> None:
    from splitleak.policy import VERDICT_RULE, Policy
    from splitleak.gate import check_policy
    from splitleak.reports.runs import collect_runs
    from splitleak.reports.tables import attack_summary, verdict

    # each attack alone stays below 0.3 on average; the worst case per image does not
    rng = np.random.default_rng(0)
    a = np.where(np.arange(40) % 2 == 0, 0.40, 0.02) + rng.normal(0, 0.01, 40)
    b = np.where(np.arange(40) % 2 == 1, 0.40, 0.02) + rng.normal(0, 0.01, 40)
    plain = _table(_rows("decoder", "ssim", a.tolist()), _rows("rmle", "ssim", b.tolist()))
    judged = Results(table=with_worst_case(plain))
    (run,) = collect_runs(judged)
    assert run.attacks == ("decoder", "rmle")
    assert verdict(attack_summary(run)).category == "reconstructable"
    (old,) = collect_runs(Results(table=plain))  # results of an earlier release: the attack that leaks most
    assert verdict(attack_summary(old)).category == "unrecognisable"
    policy = Policy(rules=(VERDICT_RULE,), source="test")
    checked = check_policy(policy, judged)
    assert not checked.passed and checked.checks[0].attack == WORST_CASE
    assert check_policy(policy, Results(table=plain)).passed


def test_worst_is_a_reserved_attack_name() -> None:
    from splitleak.attacks.base import _check_attack

    class Worst:
        name = "worst"
        config_class = threat_model = None

        def fit(self): ...

        def reconstruct(self): ...

        def budget(self): ...

    from splitleak.attacks.base import ThreatModel

    Worst.threat_model = ThreatModel(summary="x")
    with pytest.raises(TypeError, match="reserved"):
        _check_attack(Worst)


def test_the_gain_of_attacks_beyond_a_baseline() -> None:
    from splitleak.worst_case import worst_case_gain

    r2 = {**BASE, "run": "r2"}
    table = with_worst_case(_table(
        _rows("decoder", "ssim", [0.5, 0.2]), _rows("rmle", "ssim", [0.1, 0.1]), _rows("fora", "ssim", [0.1, 0.9]),
        [dict(r2, attack="decoder", metric="ssim", value=0.4, sample=0, n=1)],  # r2: the baseline alone
        [dict(BASE, run="r3", attack="fora", metric="ssim", value=0.3, sample=0, n=1)],  # r3 lacks the baseline: left out
    ))
    gains = worst_case_gain(table, ("decoder", "rmle"), ["ssim"])
    assert [g.run for g in gains] == ["r1"]
    (gain,) = gains
    assert gain.extra == ("fora",) and gain.before["ssim"] == pytest.approx(0.35) and gain.after["ssim"] == pytest.approx(0.7)
    (alone,) = worst_case_gain(table, ("decoder",), ["ssim"])[1:]
    assert alone.run == "r2" and alone.extra == () and alone.before == alone.after == {"ssim": pytest.approx(0.4)}
