"""What a file says is data: a checkpoint's recorded data config never makes splitleak download
or create folders where the file chose (docs/trust.md, "What a file says is data")."""

from __future__ import annotations

import dataclasses
import gzip
import json
import shutil
import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import splitleak._compat
from splitleak.cli import main
from splitleak.data import ENV_DATA_DIR, LOCATION_FIELDS
from splitleak.evaluation import data_config_for
from splitleak.models import load_checkpoint, save_checkpoint
from splitleak.sweep.grid import LOCATION_OPTIONS
from splitleak.training import TrainConfig
from splitleak.results import Results

FAST = ["--attack-param", "decoder.epochs=1", "--attack-param", "decoder.width=8", "--limit", "20", "--lpips", "none", "--semantic-epochs", "0", "--gallery", "2", "--quiet"]
TRAIN_IMAGES, TEST_IMAGES = 640, 30  # the recorded aux_pool (200) + limit_train (400), and --limit (20)


class _Downloads:
    """Stands in for torchvision: records every dataset constructed, downloads nothing."""

    def __init__(self) -> None:
        self.calls: list[dict[str, object]] = []
        record = self._record
        self.datasets = SimpleNamespace(MNIST=record, FashionMNIST=record, CIFAR10=record)

    def _record(self, root: str, train: bool = True, download: bool = False) -> None:
        self.calls.append({"root": root, "train": train, "download": download})


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> _Downloads:
    """No torchvision, no network, and data roots only under tmp_path (no ~/.cache, no env root)."""
    fake = _Downloads()
    monkeypatch.setattr(splitleak._compat, "import_torchvision", lambda: fake)

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(ENV_DATA_DIR, raising=False)
    return fake


@pytest.fixture
def hostile_checkpoint(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    """The tiny digits checkpoint, its metadata rewritten to say: MNIST, download it into tmp_path/evil."""
    loaded = load_checkpoint(tiny_checkpoint)
    data = {**(loaded.meta.data or {}), "dataset": "mnist", "download": True, "data_dir": str(tmp_path / "evil" / "data")}
    path = save_checkpoint(tmp_path / "hostile.safetensors", loaded.model, dataclasses.replace(loaded.meta, data=data))
    assert load_checkpoint(path).meta.data["download"] is True
    return path


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def _user_mnist(folder: Path) -> Path:
    """A tiny MNIST-shaped dataset (random pixels) where the user keeps their data."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", TRAIN_IMAGES), ("t10k", TEST_IMAGES)):
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, size=(n, 28, 28)))
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return folder


def test_a_checkpoint_cannot_start_a_download(hostile_checkpoint: Path, downloads: _Downloads, tmp_path: Path, capsys) -> None:
    out = tmp_path / "results"
    code = main(["evaluate", str(hostile_checkpoint), "--out", str(out), *FAST])
    err = capsys.readouterr().err
    assert downloads.calls == []
    assert not (tmp_path / "evil").exists()
    assert code == 2 and not out.exists()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("splitleak: error: dataset 'mnist' not found"), err
    assert "evil" not in err  # the file's folder was not even looked in


def test_the_data_comes_from_the_command_line(hostile_checkpoint: Path, downloads: _Downloads, tmp_path: Path, capsys) -> None:
    mine = _user_mnist(tmp_path / "mine")
    out = tmp_path / "results"
    assert main(["evaluate", str(hostile_checkpoint), "--data-dir", str(mine), "--out", str(out), *FAST]) == 0, capsys.readouterr().err
    assert downloads.calls == []
    assert not (tmp_path / "evil").exists()
    data = Results.load(out).provenance.only.data
    assert data["dataset"] == "mnist" and data["data_dir"] == str(mine) and data["download"] is False
    assert data["aux_pool"] == 200 and data["origin"] == str(mine)  # the recorded split is kept


def test_the_data_comes_from_the_environment(hostile_checkpoint: Path, downloads: _Downloads, tmp_path: Path, monkeypatch, capsys) -> None:
    mine = _user_mnist(tmp_path / "env-data")
    monkeypatch.setenv(ENV_DATA_DIR, str(mine))
    out = tmp_path / "results"
    assert main(["evaluate", str(hostile_checkpoint), "--out", str(out), *FAST]) == 0, capsys.readouterr().err
    assert downloads.calls == [] and not (tmp_path / "evil").exists()
    assert Results.load(out).provenance.only.data["origin"] == str(mine)


def test_download_on_the_command_line_goes_where_the_command_line_says(hostile_checkpoint: Path, downloads: _Downloads, tmp_path: Path, capsys) -> None:
    target = tmp_path / "mine"
    code = main(["evaluate", str(hostile_checkpoint), "--download", "--data-dir", str(target), "--out", str(tmp_path / "results"), *FAST])
    err = capsys.readouterr().err
    assert code == 2 and "not found" in err  # the stand-in torchvision fetched nothing
    assert downloads.calls and {c["root"] for c in downloads.calls} == {str(target)}
    assert all(c["download"] is True for c in downloads.calls)
    assert not (tmp_path / "evil").exists()


def test_data_config_for_drops_the_recorded_locations(hostile_checkpoint: Path, tmp_path: Path) -> None:
    checkpoint = load_checkpoint(hostile_checkpoint)
    config = data_config_for(checkpoint)
    assert config.dataset == "mnist" and config.data_dir is None and config.download is False
    assert config.aux_pool == 200 and config.split_seed == checkpoint.meta.data["split_seed"]
    asked = data_config_for(checkpoint, data_dir=str(tmp_path / "mine"), download=True)
    assert asked.data_dir == str(tmp_path / "mine") and asked.download is True
    assert data_config_for(checkpoint, download=None, data_dir=None).download is False


def test_one_list_of_location_fields() -> None:
    assert set(LOCATION_FIELDS) == {"data_dir", "download"}
    assert tuple(LOCATION_OPTIONS["data"]) == LOCATION_FIELDS


def test_study_reuse_compares_without_locations(tiny_splits, tiny_checkpoint: Path, tmp_path: Path) -> None:
    """A results folder's recorded data_dir / download are never acted on and are left out of the reuse comparison."""
    from splitleak.evaluation import EvalConfig
    from splitleak.sweep.grid import study_grid
    from splitleak.sweep.runner import cell_folder, checkpoint_path, is_cell_finished

    evaluation = EvalConfig(lpips=None)
    (cell,) = study_grid("s", tiny_splits.config, [("none", TrainConfig(cut=1, epochs=1))], evaluation).cells
    folder = cell_folder(tmp_path, cell)
    folder.mkdir(parents=True)
    (folder / "results.csv").write_text("run\n")
    checkpoint_path(tmp_path, cell).parent.mkdir(parents=True)
    shutil.copyfile(tiny_checkpoint, checkpoint_path(tmp_path, cell))  # the model the results name
    recorded = {**tiny_splits.config.to_dict(), "data_dir": str(tmp_path / "evil"), "download": True}
    meta = {**load_checkpoint(tiny_checkpoint).meta.to_dict(), "train": cell.train.to_dict(), "data": recorded}
    provenance = {"checkpoint": {"meta": meta, "sha256": load_checkpoint(tiny_checkpoint).sha256}, "evaluation": evaluation.to_dict()}
    (folder / "provenance.json").write_text(json.dumps(provenance))
    assert is_cell_finished(tmp_path, cell)
    provenance["checkpoint"]["meta"]["data"]["split_seed"] += 1  # type: ignore[index]
    (folder / "provenance.json").write_text(json.dumps(provenance))
    assert not is_cell_finished(tmp_path, cell)
    assert not (tmp_path / "evil").exists()
