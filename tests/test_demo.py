"""The main job: its plan (fast) and a whole `splitleak demo --quick` on Fashion-MNIST (slow)."""

from pathlib import Path

import pandas as pd
import pytest

from splitleak.attacks import ATTACKS
from splitleak.cli import main
from splitleak.data import DEBIAN_FASHION_MNIST_DIR, DataConfig, DataError, load_splits
from splitleak.defenses import DEFENSES
from splitleak import demo
from splitleak.demo import NOPEEK_ALPHAS, demo_plan, demo_workers


def test_plan_covers_every_kind_of_defense_with_every_attack() -> None:
    plan = demo_plan()
    assert [label for label, _ in plan.models] == ["none", *(f"nopeek-{a:g}" for a in NOPEEK_ALPHAS), "noise-1", "dp-noise-1024", "dropout-0.5", "adversarial-1"]
    builtin = {name for name in DEFENSES if DEFENSES[name].__module__.startswith("splitleak.")}
    assert {t.defense for _, t in plan.models} == builtin  # every defense splitleak ships has a row in the demo's report
    assert [t.defense_params.get("alpha") for _, t in plan.models if t.defense == "nopeek"] == list(NOPEEK_ALPHAS)
    grid = plan.grid()  # a study is a sweep: one cell per model under every attack
    assert len(grid.cells) == len(plan.models) and all(c.evaluation == plan.evaluation for c in grid.cells)
    assert set(plan.evaluation.attacks) <= set(ATTACKS) and {"decoder", "rmle"} <= set(plan.evaluation.attacks) and plan.evaluation.limit == plan.data.limit_test
    assert plan.data.dataset == "fashion-mnist" and plan.data.limit_train is None
    assert plan.evaluation.observations == "epochs"  # the adaptive attacker: one release per training epoch
    quick = demo_plan(quick=True)
    assert len(quick.models) < len(plan.models) and {t.defense for _, t in quick.models} == {"none", "nopeek", "noise"}
    assert quick.evaluation.budget_scale < 1 and quick.data.limit_train < 10_000
    seeded = demo_plan(seeds=(0, 1, 2)).grid()  # --seeds: each setting once per training seed
    assert len(seeded.cells) == 3 * len(plan.models) and {c.train.seed for c in seeded.cells} == {0, 1, 2}


def test_attacks_default_all_or_named_and_training_time_ones_are_refused_before_any_work() -> None:
    from splitleak.attacks import passive_attacks
    from splitleak.errors import InputError

    assert demo_plan().evaluation.attacks == ("decoder", "rmle", "shadow", "unsplit")
    assert demo_plan(attacks=("all",)).evaluation.attacks == passive_attacks() and {"sdar", "fora"} <= set(passive_attacks())
    assert "fsha" not in passive_attacks()
    assert demo_plan(quick=True, attacks=("decoder", "sdar")).evaluation.attacks == ("decoder", "sdar")
    for bad, message in ((("fsha",), "trained by its 'fsha' server"), (("decoder", "nope"), "unknown attack 'nope'"), (("rmle", "rmle"), "distinct"), (("all", "decoder"), "stands alone")):
        with pytest.raises(InputError, match=message):
            demo_plan(attacks=bad)


def test_workers_fill_the_cores_but_never_exceed_the_models(monkeypatch) -> None:
    monkeypatch.setattr(demo, "usable_cores", lambda: 2)
    assert demo_workers("cpu", 7) == 1 and demo_workers("cpu", 7, threads=1) == 2 and demo_workers("cpu", 7, threads=4) == 1
    monkeypatch.setattr(demo, "usable_cores", lambda: 16)
    assert demo_workers("cpu", 7) == 7 and demo_workers("cpu", 3, threads=1) == 3 and demo_workers("cpu", 21) == 8
    assert demo_workers("cuda", 7) == demo_workers("cuda:1", 7) == 1  # the models share one device
    monkeypatch.setattr(demo, "resolve_device", lambda device: "cpu" if device == "auto" else device)  # auto on a machine without CUDA
    assert demo_workers("auto", 7) == 7


@pytest.mark.slow
def test_quick_demo_writes_the_report(tmp_path: Path, capsys) -> None:
    try:
        load_splits(DataConfig(dataset="fashion-mnist", limit_train=10, limit_test=10))
    except DataError as err:
        pytest.skip(f"Fashion-MNIST not available at {DEBIAN_FASHION_MNIST_DIR} ({err})")
    assert main(["demo", "--out", str(tmp_path), "--quick", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"report: {tmp_path / 'report.pdf'}" in printed
    assert printed.count("verdict: ") == len(demo_plan(quick=True).models)  # one line per model
    pdf = (tmp_path / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and len(pdf) > 50_000
    summary = pd.read_csv(tmp_path / "report.summary.csv").set_index("defense")
    assert set(summary.index) == {"none", "nopeek", "noise"}
    table = pd.read_csv(tmp_path / "results.csv")  # the merged table of every model
    assert table.run.nunique() == len(demo_plan(quick=True).models)
    assert all(set(rows.attack.dropna()) >= set(demo_plan(quick=True).evaluation.attacks) for _, rows in table.groupby("run"))
    from splitleak.results import Results

    adaptive = {run.defense["label"]: run.adaptive for run in Results.load(tmp_path).provenance.runs.values()}
    assert adaptive["noise σ=1"] == {"releases": 2, "estimator": "noise.estimate"} and adaptive["NoPeek α=20"] == {}
