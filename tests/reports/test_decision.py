"""The decision page: settings over seeds, the choice for an accuracy budget, the page, the gate rule."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread
from scipy import stats

import splitleak
from splitleak.cli import main
from splitleak.errors import InputError
from splitleak.gate import GateError, check_policy, parse_policy, render_policy
from splitleak.records import Provenance
from splitleak.reports.decision import decide, decision_table, group_settings, over_seeds, pareto_front, Estimate
from splitleak.reports.decision_page import decision_page
from splitleak.reports.pdf import write_pdf
from splitleak.reports.runs import collect_runs
from splitleak.reports.style import report_style
from splitleak.results import Results

from tests.reports.synthetic import DEMO_LIKE, study


@pytest.fixture(scope="module")
def demo_like() -> list[Results]:
    return study()


@pytest.fixture(scope="module")
def demo_decisions(demo_like):
    return decide(group_settings(collect_runs(demo_like)))


def _decision(results, budget=3.0):
    (decision,) = decide(group_settings(collect_runs(results)), budget)
    return decision


def _merged(results: list[Results]) -> Results:
    table = pd.concat([r.table for r in results], ignore_index=True)
    runs = {k: v for r in results for k, v in r.provenance.runs.items()}
    return Results(table=table, provenance=Provenance(runs=runs))


def test_runs_that_differ_only_in_the_seed_are_one_setting_with_a_t_interval(demo_like) -> None:
    settings = group_settings(collect_runs(demo_like))
    assert [s.label for s in settings] == ["no defense, cut 2", "NoPeek α=5, cut 2", "NoPeek α=20, cut 2", "NoPeek α=50, cut 2", "noise σ=1, cut 2"]
    assert all(s.seeds == (0, 1, 2) and s.n_seeds == 3 for s in settings)
    nopeek20 = settings[2]
    accuracies = DEMO_LIKE[2][2]
    half = stats.t.ppf(0.975, 2) * np.std(accuracies, ddof=1) / math.sqrt(3)
    assert (nopeek20.accuracy.value, nopeek20.accuracy.low, nopeek20.accuracy.high) == pytest.approx((np.mean(accuracies), np.mean(accuracies) - half, np.mean(accuracies) + half))
    assert nopeek20.accuracy.basis == "seeds" and nopeek20.ssim.basis == "seeds"
    per_seed = [r.table.query("attack == 'worst' and metric == 'ssim'").value.mean() for r in demo_like[6:9]]
    assert nopeek20.ssim.value == pytest.approx(np.mean(per_seed))  # the per-image worst case, averaged over the seeds
    assert nopeek20.attacks == ("decoder", "rmle")


def test_one_seed_keeps_the_runs_own_interval_and_says_so(demo_like) -> None:
    decision = _decision([demo_like[0], demo_like[6]])
    single = decision.settings[1]
    assert single.n_seeds == 1 and single.seeds_text() == "1 seed" and single.accuracy.basis == "images"
    assert single.accuracy.low < single.accuracy.value < single.accuracy.high  # Wilson over 2,000 test images
    assert "over 1 seed (CI over test images)" in decision.paragraph
    assert any(c.startswith("1 seed: ") for c in decision.caveats)
    assert over_seeds([Estimate(math.nan, math.nan, math.nan, 1, "images")]).known is False


def test_the_choice_for_a_3_point_budget_when_nothing_reaches_the_line(demo_decisions) -> None:
    (decision,) = demo_decisions
    assert decision.baseline.label == "no defense, cut 2" and decision.floor == pytest.approx(0.84 - 0.03)
    assert decision.feasible == (True, True, True, False, False)  # noise σ=1: 4 points below
    assert decision.choice.label == "NoPeek α=20, cut 2" and decision.verdict == "reconstructable"
    text = decision.paragraph
    assert text.startswith("Ship NoPeek α=20: accuracy 0.81 [0.80, 0.83] (2.8 points below undefended 0.84), worst-case SSIM 0.57 [0.34, 0.80] over 3 seeds")
    assert "reconstructable: no setting within 3 points reaches SSIM < 0.3" in text
    assert "Best trade-off beyond it: NoPeek α=50: accuracy 0.74" in text and "Next: try a deeper cut than 2" in text
    caveats = " ".join(decision.caveats)
    assert "not run here: fora, sdar, shadow, unsplit" in caveats and "fsha: its threat model is a malicious server during training" in caveats
    table = decision_table([decision])
    assert table.choice.tolist() == [False, False, True, False, False] and table.pareto.tolist() == [True, True, True, True, False]


def test_a_wider_budget_ships_the_private_setting_and_ties_go_to_the_more_accurate() -> None:
    spec = (
        ("none", {}, (0.84, 0.84), (0.86, 0.88)),
        ("nopeek", {"alpha": 50.0}, (0.76, 0.77), (0.20, 0.21)),
        ("noise", {"scale": 1.0}, (0.78, 0.79), (0.20, 0.21)),  # the same leakage, more accurate
    )
    decision = _decision(study(spec, seeds=(0, 1)), budget=10)
    assert decision.choice.defense == "noise" and decision.verdict == "unrecognisable"
    assert decision.paragraph.startswith("Ship noise σ=1") and "unrecognisable (SSIM < 0.3" in decision.paragraph


def test_without_an_undefended_model_the_page_says_so(demo_like, tmp_path) -> None:
    decision = _decision(demo_like[3:])
    assert decision.baseline is None and decision.choice is None and not any(decision.feasible)
    assert decision.paragraph.startswith("No decision: there is no undefended model at cut 2")
    assert "NoPeek α=50" in decision.paragraph  # still names the least leaky setting measured
    with report_style():
        decision_page([decision], "test").savefig(tmp_path / "page.png", dpi=50)
    assert (tmp_path / "page.png").read_bytes().startswith(b"\x89PNG")


def test_pareto_front() -> None:
    leakage = np.array([0.9, 0.2, 0.5, 0.6, np.nan, 0.2])
    utility = np.array([0.9, 0.5, 0.8, 0.7, 1.0, 0.4])
    assert pareto_front(leakage, utility).tolist() == [True, True, True, False, False, False]
    assert pareto_front(np.array([0.3, 0.3]), np.array([0.8, 0.8])).tolist() == [True, True]  # equal points do not beat each other


def test_the_page_renders_to_a_png(demo_decisions, tmp_path) -> None:
    with report_style():
        decision_page(demo_decisions, "fashion-mnist · 15 checkpoints").savefig(tmp_path / "decision.png", dpi=60)
    png = tmp_path / "decision.png"
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    pixels = imread(png)
    assert pixels.shape[:2] == (round(8.27 * 60), round(11.69 * 60)) and pixels[..., :3].std() > 0.05


def test_the_decision_page_is_byte_identical_in_a_pdf(demo_decisions, tmp_path) -> None:
    def write(path):
        with report_style():
            return write_pdf([decision_page(demo_decisions, "test")], path, title="t").read_bytes()

    assert write(tmp_path / "a.pdf") == write(tmp_path / "b.pdf")


@pytest.mark.slow
def test_the_report_opens_with_the_decision_and_is_byte_identical(tmp_path) -> None:
    results = study(DEMO_LIKE[:3:2], seeds=(0, 1))
    first = splitleak.report(results, tmp_path / "a" / "r.pdf", html=True, accuracy_budget=3)
    again = splitleak.report(results, tmp_path / "b" / "r.pdf", html=True, accuracy_budget=3)
    assert first.read_bytes() == again.read_bytes()
    html = first.with_name("r.html").read_text()
    assert html.index("<h2>Decision</h2>") < html.index("<h2>Leakage summary</h2>") and "Ship NoPeek α=20" in html
    with pytest.raises(InputError, match="accuracy budget"):
        splitleak.report(results, tmp_path / "c" / "r.pdf", accuracy_budget=-1)


def test_cli_accuracy_budget(demo_like, tmp_path, capsys, monkeypatch) -> None:
    import splitleak.reports.document as document

    folder = demo_like[0].save(tmp_path / "run")
    seen = {}
    monkeypatch.setattr(document, "write_report", lambda results, out, **options: seen.update(options) or document.ReportPaths.for_pdf(out))
    assert main(["report", str(folder), "--out", str(tmp_path / "r.pdf"), "--accuracy-budget", "1.5"]) == 0 and seen["accuracy_budget"] == 1.5
    assert main(["report", str(folder), "--out", str(tmp_path / "r.pdf")]) == 0 and seen["accuracy_budget"] == 3.0
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["report", str(folder), "--out", str(tmp_path / "s.pdf"), "--accuracy-budget", "101"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("splitleak: error:") and "accuracy budget" in err and err.count("\n") == 1
    assert not (tmp_path / "s.pdf").exists()


@pytest.mark.slow
def test_cli_budget_reaches_the_page(demo_like, tmp_path) -> None:
    folders = [r.save(tmp_path / f"run{k}") for k, r in enumerate(demo_like[:6:3])]  # no defense and NoPeek α=5, seed 0
    out = tmp_path / "r.pdf"
    assert main(["report", *map(str, folders), "--out", str(out), "--html", "--accuracy-budget", "1"]) == 0
    assert "no setting within 1 point reaches" in out.with_name("r.html").read_text()


def test_the_gate_enforces_the_same_budget(demo_like) -> None:
    policy = parse_policy("[decision]\naccuracy_budget = 3\n", "p.toml")
    assert parse_policy(render_policy(policy)) == policy
    verdict = check_policy(policy, _merged(demo_like))
    status = {c.run_config.split(",")[0]: set() for c in verdict.checks}
    for c in verdict.checks:
        status[c.run_config.split(",")[0]].add(c.status)
    assert status['none'] == {"pass"} and status['nopeek {"alpha": 50.0}'] == {"fail"}
    nopeek20 = [c.status for c in verdict.checks if "20.0" in c.run_config]  # per run: seed 1 (0.806) is 3.4 points below 0.84
    assert nopeek20 == ["pass", "fail", "pass"]
    assert status['noise {"scale": 1.0}'] == {"fail", "pass"} and not verdict.passed  # 0.79 and 0.80 fail, 0.81 is 3.0 points below
    failed = next(c for c in verdict.checks if c.status == "fail")
    assert "more than the 3-point budget" in failed.message and failed.baseline_value == pytest.approx(0.84)
    alone = check_policy(policy, _merged(demo_like[6:9]))
    assert not alone.passed and "no undefended run" in alone.checks[0].message
    against = check_policy(policy, _merged(demo_like[6:9]), baseline=_merged(demo_like[:3]))
    assert [c.status for c in against.checks] == ["pass", "fail", "pass"] and "in the baseline results" in against.checks[0].message
    for bad in ("[decision]\n", "[decision]\naccuracy_budget = -1\n", "[decision]\naccuracy_budget = 3\nalpha = 1\n"):
        with pytest.raises(GateError, match=r"\[decision\]"):
            parse_policy(bad)


def test_evaluate_lists_the_registered_attacks_with_their_threat_models() -> None:
    from splitleak.evaluation import registered_attacks

    registered = registered_attacks()
    assert {"decoder", "rmle", "fsha"} <= set(registered) and registered["fsha"]["trained_by"] == "fsha"
    assert registered["decoder"]["trained_by"] is None and list(registered) == sorted(registered)


@pytest.mark.slow
def test_evaluate_records_the_registered_attacks_for_the_caveats(report_results) -> None:
    registered = next(iter(report_results["none"].provenance.runs.values())).environment["registered_attacks"]
    assert registered["fsha"]["trained_by"] == "fsha" and registered["decoder"]["trained_by"] is None
    decision = _decision(list(report_results.values()))
    assert any("fsha: its threat model" in c for c in decision.caveats)


def test_runs_of_several_seeds_are_labelled_by_seed(demo_like) -> None:
    labels = [r.label for r in collect_runs(demo_like[6:9])]
    assert labels == ["NoPeek α=20, cut 2, seed 0", "NoPeek α=20, cut 2, seed 1", "NoPeek α=20, cut 2, seed 2"]


def test_a_study_extended_by_an_attack_on_some_seeds_says_which_rows_had_it() -> None:
    """Runs attacked by more attacks (fora added on seed 0 only) are another setting: their labels
    say how many attacks each faced, not a hash, and the caveats say the attack sets differ."""
    from tests.reports.synthetic import run_results

    results = [run_results("none", {}, seed, 0.84, {"decoder": 0.86, "rmle": 0.8, **({"fora": 0.5} if seed == 0 else {})}) for seed in (0, 1, 2)]
    results += [run_results("nopeek", {"alpha": 5.0}, seed, 0.83, {"decoder": 0.7, "rmle": 0.65}) for seed in (0, 1, 2)]
    decision = _decision(results)
    labels = sorted(s.label for s in decision.settings)
    assert labels == ["NoPeek α=5, cut 2", "no defense, cut 2 [2 attacks]", "no defense, cut 2 [3 attacks]"]
    assert any(c.startswith("Not every setting faced the same attacks: fora ran on some settings only") for c in decision.caveats)
    assert sorted(s.tag for s in decision.settings) == ["", "[2 attacks]", "[3 attacks]"]
    same = _decision([r for r in results if "fora" not in set(r.table["attack"])])
    assert not any(c.startswith("Not every setting") for c in same.caveats)


def test_a_long_setting_label_stays_in_its_column() -> None:
    from splitleak.reports.decision_page import COLUMNS, decision_page
    from splitleak.reports.style import MARGIN
    from tests.reports.synthetic import run_results

    results = [run_results("none", {}, seed, 0.84, {"decoder": 0.86, "rmle": 0.8, **({"fora": 0.5} if seed == 0 else {})}) for seed in (0, 1, 2)]
    decision = _decision(results)
    with report_style():
        fig = decision_page([decision], "labels")
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        width_px = fig.get_figwidth() * fig.dpi
        seeds_left = (MARGIN + COLUMNS[1][1]) / fig.get_figwidth() * width_px
        labels = [t for t in fig.texts if "no defense, cut 2 [" in t.get_text() and "\u2022" not in t.get_text()]  # not the caveats' bullets
        assert len(labels) == 2
        for text in labels:  # "no defense, cut 2 [2 attacks] (baseline)" is longer than the column at full size
            assert text.get_window_extent(renderer).x1 < seeds_left, text.get_text()


def test_the_plot_tells_settings_of_the_same_label_apart() -> None:
    """The plot's point labels carry the tag the table's labels carry (were both "no defense")."""
    from splitleak.reports.decision_page import decision_page
    from tests.reports.synthetic import run_results

    results = [run_results("none", {}, seed, 0.84, {"decoder": 0.86, "rmle": 0.8, **({"fora": 0.5} if seed == 0 else {})}) for seed in (0, 1, 2)]
    with report_style():
        fig = decision_page([_decision(results)], "labels")
    points = sorted(t.get_text() for ax in fig.axes for t in ax.texts if t.get_text().startswith("no defense"))
    assert points == ["no defense [2 attacks]", "no defense [3 attacks]"]
