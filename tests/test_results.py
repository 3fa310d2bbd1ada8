from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from splitleak.results import COLUMNS, Results, ResultsError, validate
from splitleak.records import Provenance, RunProvenance


def _table() -> pd.DataFrame:
    base = dict(run="abc", checkpoint="m.safetensors", checkpoint_sha256="f" * 64, dataset="digits", arch="small-cnn",
                cut=1, defense="nopeek", defense_params='{"alpha": 1.0}', seed=0, n=3)
    rows = [dict(base, attack="", metric="accuracy", value=0.9, sample=None)]
    rows += [dict(base, attack="decoder", metric="ssim", value=v, sample=i) for i, v in enumerate([0.5, 0.7, 0.9])]
    rows += [dict(base, attack="decoder", metric="psnr", value=v, sample=i) for i, v in enumerate([20.0, np.inf, 30.0])]
    return pd.DataFrame(rows)


def test_save_load_round_trip(tmp_path: Path) -> None:
    provenance = Provenance.single("abc", RunProvenance(evaluation={"seed": 1}, attacks={"decoder": {"budget": {"epochs": 3}}}))
    results = Results(_table(), provenance, {"original": torch.rand(2, 1, 4, 4)})
    results.save(tmp_path / "r")
    back = Results.load(tmp_path / "r")
    pd.testing.assert_frame_equal(back.table, results.table)
    assert back.provenance == provenance
    torch.testing.assert_close(back.reconstructions["original"], results.reconstructions["original"])
    assert back.table.loc[0, "attack"] == "" and pd.isna(back.table.loc[0, "sample"])
    assert list(back.table.columns) == list(COLUMNS)
    assert (tmp_path / "r" / "summary.csv").is_file()


def test_saved_folder_follows_the_umask_not_mkdtemps_0700(tmp_path: Path) -> None:
    import os

    previous = os.umask(0o022)
    try:
        Results(_table()).save(tmp_path / "r")
    finally:
        os.umask(previous)
    assert (tmp_path / "r").stat().st_mode & 0o777 == 0o755


def test_summary_counts_and_skips_infinite(tmp_path: Path) -> None:
    summary = Results(_table()).summary().set_index("metric")
    assert summary.loc["ssim", "mean"] == pytest.approx(0.7) and summary.loc["ssim", "median"] == pytest.approx(0.7)
    assert summary.loc["psnr", "mean"] == pytest.approx(25.0) and summary.loc["psnr", "infinite"] == 1
    assert summary.loc["ssim", "ci_low"] < 0.7 < summary.loc["ssim", "ci_high"] and summary.loc["ssim", "level"] == "sample"
    assert summary.loc["accuracy", "level"] == "set" and summary.loc["accuracy", "count"] == 3


def test_save_replaces_the_whole_folder(tmp_path: Path) -> None:
    out = tmp_path / "r"
    Results(_table(), reconstructions={"original": torch.zeros(1)}).save(out)
    Results(_table().head(2)).save(out)
    assert len(Results.load(out).table) == 2
    assert not (out / "reconstructions.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # no staging leftovers


def test_failed_save_keeps_the_old_results(tmp_path: Path) -> None:
    out = tmp_path / "r"
    Results(_table()).save(out)
    bad = Results(_table(), provenance=Provenance.single("abc", RunProvenance(attacks={"decoder": {"not json": object()}})))
    with pytest.raises(TypeError):
        bad.save(out)
    assert len(Results.load(out).table) == len(_table())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.drop(columns=["metric"]), "lacks column"),
        (lambda t: t.assign(value="high"), "non-numeric"),
        (lambda t: t.assign(cut=1.5), "whole numbers"),
        (lambda t: t.assign(sample=-1), "non-negative"),
        (lambda t: t.assign(metric=""), "metric name"),
        (lambda t: t.assign(ci_low="wide"), "numeric or empty"),
    ],
)
def test_validate_rejects_bad_tables(mutate, message) -> None:
    with pytest.raises(ResultsError, match=message):
        validate(mutate(_table()))


def test_load_rejects_bad_folders(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="not a results folder"):
        Results.load(tmp_path)
    Results(_table()).save(tmp_path / "r")
    (tmp_path / "r" / "provenance.json").write_text("{oops")
    with pytest.raises(ResultsError, match="not valid JSON"):
        Results.load(tmp_path / "r")
    (tmp_path / "r" / "provenance.json").write_text("{}")
    (tmp_path / "r" / "results.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ResultsError, match="lacks column"):
        Results.load(tmp_path / "r")


def test_write_into_keeps_other_files_and_follows_the_umask(tmp_path: Path) -> None:
    import os

    (tmp_path / "cells").mkdir()
    (tmp_path / "reconstructions.safetensors").write_bytes(b"stale")
    previous = os.umask(0o022)
    try:
        written = Results(_table(), {"k": 1}).write_into(tmp_path)
        assert (tmp_path / "cells").is_dir() and not (tmp_path / "reconstructions.safetensors").exists()
        written += Results(_table(), {"k": 1}, {"original": torch.rand(2, 1, 4, 4)}).write_into(tmp_path)
    finally:
        os.umask(previous)
    assert [p.name for p in written[:3]] == ["results.csv", "summary.csv", "provenance.json"]
    assert written[-1].name == "reconstructions.safetensors"
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in written)
    pd.testing.assert_frame_equal(Results.load(tmp_path).table, Results(_table()).table)


def test_named_cuts_keep_their_names_and_numbers_stay_int64(tmp_path: Path) -> None:
    named = pd.concat([_table(), _table().assign(run="def", arch="resnet18", cut="layer2")])
    results = Results(named)
    assert results.table["cut"].tolist()[:1] == ["1"] and set(results.table["cut"]) == {"1", "layer2"}
    results.save(tmp_path / "r")
    assert Results.load(tmp_path / "r").table["cut"].tolist() == results.table["cut"].tolist()
    assert Results(_table()).table["cut"].dtype == "int64"
