"""run_study on tiny digits: one folder per cell, finished cells reused only when configs match."""

from pathlib import Path

import pytest

from splitleak import study
from splitleak.evaluation import EvalConfig
from splitleak.results import Results
from splitleak.study import Cell, run_study
from splitleak.training import TrainConfig

EVAL = EvalConfig(attack_params={"decoder": {"epochs": 1, "width": 16}}, limit=20, lpips=None, semantic_epochs=0, gallery=2)
CELLS = [
    Cell("none", TrainConfig(cut=1, epochs=1, batch_size=64)),
    Cell("noise-0.5", TrainConfig(cut=1, epochs=1, batch_size=64, defense="noise", defense_params={"scale": 0.5})),
]


def test_run_study_then_reuse(tiny_splits, tmp_path: Path, monkeypatch) -> None:
    folders = run_study(CELLS, tiny_splits, EVAL, tmp_path)
    assert folders == [tmp_path / "results" / "none", tmp_path / "results" / "noise-0.5"]
    assert (tmp_path / "checkpoints" / "noise-0.5.safetensors").is_file()
    assert [set(Results.load(f).table.defense) for f in folders] == [{"none"}, {"noise"}]

    def no_training(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(study, "train", no_training)
    assert run_study(CELLS, tiny_splits, EVAL, tmp_path, reuse=True) == folders
    changed = EvalConfig(attack_params={"decoder": {"epochs": 2, "width": 16}}, limit=20, lpips=None, semantic_epochs=0)
    with pytest.raises(AssertionError, match="trained again"):  # another evaluation config: not the same cell
        run_study(CELLS[:1], tiny_splits, changed, tmp_path, reuse=True)
    with pytest.raises(AssertionError, match="trained again"):  # reuse is opt-in
        run_study(CELLS[:1], tiny_splits, EVAL, tmp_path)


@pytest.mark.parametrize("name", ["", "../up", "a b", ".hidden", "x/y"])
def test_cell_names_must_be_folder_safe(name: str) -> None:
    with pytest.raises(ValueError, match="cell name"):
        Cell(name, TrainConfig())


def test_cell_names_must_be_unique(tiny_splits, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unique"):
        run_study([CELLS[0], CELLS[0]], tiny_splits, EVAL, tmp_path)
    assert not any(tmp_path.iterdir())
