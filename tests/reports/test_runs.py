import dataclasses

import numpy as np
import pandas as pd
import pytest

from splitleak.reports.runs import ReportError, collect_runs, legacy_defense_label, legacy_defense_strength
from splitleak.records import Provenance, RunProvenance
from splitleak.results import Results


def test_runs_are_sorted_labelled_and_carry_their_provenance(report_dirs) -> None:
    runs = collect_runs(list(reversed(report_dirs)))
    assert [r.defense for r in runs] == ["none", "nopeek", "noise"]
    assert [r.label for r in runs] == ["no defense, cut 1", "NoPeek α=5, cut 1", "noise σ=1, cut 1"]
    for run in runs:
        assert run.provenance.checkpoint is not None and run.provenance.checkpoint.sha256 == run.first("checkpoint_sha256")
        assert run.attacks == ("decoder", "rmle")
        assert run.value_range == (0.0, 1.0)
        extremes = {f"extremes/{a}/{part}" for a in ("decoder", "rmle") for part in ("indices", "original", "reconstruction")}
        assert set(run.reconstructions) == {"indices", "original", "attack/decoder", "attack/rmle"} | extremes


def test_a_folder_may_hold_several_runs(report_results) -> None:
    """Runs are split by the `run` column; prefixed reconstructions go to their run."""
    none, nopeek = report_results["none"], report_results["nopeek"]
    table = pd.concat([none.table, nopeek.table], ignore_index=True)
    recon = {f"{nopeek.table.run.iloc[0]}/{k}": v for k, v in nopeek.reconstructions.items()} | dict(none.reconstructions)
    runs = collect_runs(Results(table=table, provenance=none.provenance, reconstructions=recon))
    assert [r.defense for r in runs] == ["none", "nopeek"]
    assert runs[0].provenance.checkpoint is not None and runs[1].provenance == RunProvenance()  # the folder's provenance names one checkpoint
    np.testing.assert_array_equal(runs[1].reconstructions["original"], nopeek.reconstructions["original"])
    np.testing.assert_array_equal(runs[0].reconstructions["attack/rmle"], none.reconstructions["attack/rmle"])
    assert runs[1].value_range == (0.0, 1.0)  # from the stored originals


def test_duplicate_labels_get_the_run_id(report_results) -> None:
    copy = report_results["none"].table.assign(run="abcdef123456", checkpoint_sha256="f" * 64)
    runs = collect_runs([report_results["none"], Results(table=copy)])
    assert len({r.label for r in runs}) == 2 and any("[abcdef]" in r.label for r in runs)


def test_bad_inputs_say_what_is_wrong(tmp_path) -> None:
    with pytest.raises(ReportError, match="no such results folder"):
        collect_runs(tmp_path / "missing")
    with pytest.raises(ReportError, match="not a results folder"):
        collect_runs(tmp_path)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ReportError, match="not a folder"):
        collect_runs(tmp_path / "file.txt")
    with pytest.raises(ReportError, match="no results"):
        collect_runs([])
    with pytest.raises(ReportError, match="expected Results"):
        collect_runs([42])


@pytest.mark.parametrize(
    ("defense", "params", "label", "strength"),
    [
        ("none", {}, "no defense", 0.0),
        ("nopeek", {"alpha": 5.0}, "NoPeek α=5", 5.0),
        ("nopeek", {"alpha": 0.25}, "NoPeek α=0.25", 0.25),
        ("noise", {"scale": 1.0, "distribution": "gaussian"}, "noise σ=1", 1.0),
        ("noise", {"scale": 0.5, "distribution": "laplace"}, "noise b=0.5 (Laplace)", 0.5),
        ("dropout", {"rate": 0.5}, "dropout p=0.5", 0.5),
        ("custom", {"k": 2, "a": "x"}, "custom a=x, k=2", float("nan")),
    ],
)
def test_defense_labels_of_old_results_and_of_the_registry_agree(defense, params, label, strength) -> None:
    """Results of an earlier release are labelled by the legacy table; evaluate now records each
    run's label from the defense's registry entry, and both say the same for the built-ins."""
    from splitleak.defenses import DEFENSES, defense_record

    assert legacy_defense_label(defense, params) == label
    assert legacy_defense_strength(defense, params) == pytest.approx(strength, nan_ok=True)
    if defense in DEFENSES:
        recorded = defense_record(defense, params)
        assert recorded["label"] == label and recorded["strength"] == pytest.approx(strength)


def test_reports_use_the_recorded_label_strength_and_rank(report_results) -> None:
    none = report_results["none"]
    run = none.provenance.only
    relabelled = dataclasses.replace(run, defense={"label": "my shield κ=3", "strength": 3.0, "rank": 9})
    (labelled,) = collect_runs(Results(table=none.table, provenance=Provenance.single(none.table.run.iloc[0], relabelled)))
    assert (labelled.label, labelled.strength, labelled.rank) == ("my shield κ=3, cut 1", 3.0, 9)
