"""CIFAR-10's python batches, read with the restricted unpickler (splitleak.cifar): small files
in the real format (protocol-2 pickles of dicts with b'data' / b'labels'), and pickles that
would run code, refused without running it."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from splitleak import cifar, data
from splitleak.data import DataConfig, DataError, load_splits


def _batch(rng: np.random.Generator, n: int, label: str) -> dict[bytes, object]:
    return {
        b"batch_label": label.encode(),
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def write_cifar(root: Path, per_batch: int = 6, test: int = 8, seed: int = 0) -> dict[str, dict[bytes, object]]:
    """Five tiny training batches and a test batch under root/cifar-10-batches-py, as the originals (protocol 2)."""
    rng = np.random.default_rng(seed)
    folder = root / cifar.FOLDER
    folder.mkdir(parents=True)
    batches = {name: _batch(rng, per_batch, f"training batch {k + 1} of 5") for k, name in enumerate(cifar.TRAIN_FILES)}
    batches["test_batch"] = _batch(rng, test, "testing batch 1 of 1")
    for name, batch in batches.items():
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return batches


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(data.ENV_DATA_DIR, raising=False)
    return tmp_path


def test_batches_are_read_as_chw_images_and_labels(isolated: Path) -> None:
    batches = write_cifar(isolated / "root")
    s = load_splits(DataConfig(dataset="cifar10", data_dir=str(isolated / "root"), aux_pool=5))
    assert s.spec.shape == (3, 32, 32) and s.num_classes == 10 and s.origin == str(isolated / "root" / cifar.FOLDER)
    train = np.concatenate([batches[n][b"data"] for n in cifar.TRAIN_FILES]).reshape(-1, 3, 32, 32)  # type: ignore[union-attr]
    labels = sum((batches[n][b"labels"] for n in cifar.TRAIN_FILES), [])  # type: ignore[arg-type]
    assert torch.equal(s.train.x, torch.from_numpy(train).float().div(255)[s.train.indices])
    assert s.train.y.tolist() == [labels[i] for i in s.train.indices.tolist()]
    test = batches["test_batch"][b"data"].reshape(-1, 3, 32, 32)  # type: ignore[union-attr]
    assert torch.equal(s.test.x, torch.from_numpy(test).float().div(255)) and s.test.y.tolist() == batches["test_batch"][b"labels"]
    # the red plane is the first 1024 bytes of a row, as in the originals
    assert torch.equal(s.test.x[0, 0].flatten(), torch.from_numpy(batches["test_batch"][b"data"][0, :1024]).float().div(255))  # type: ignore[index]


def test_text_keys_are_read_too(tmp_path: Path) -> None:
    path = tmp_path / "b"
    path.write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 9]}, protocol=2))
    x, y = cifar.read_batch(path)
    assert x.shape == (2, 3, 32, 32) and y.tolist() == [0, 9]


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_runs_code_is_refused_without_running(isolated: Path) -> None:
    write_cifar(isolated / "root")
    marker = isolated / "pwned"
    batch = pickle.loads((isolated / "root" / cifar.FOLDER / "data_batch_3").read_bytes())
    batch[b"labels"] = _Payload(marker)
    (isolated / "root" / cifar.FOLDER / "data_batch_3").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_3: refusing to load global (posix|os)\.system") as info:
        load_splits(DataConfig(dataset="cifar10", data_dir=str(isolated / "root"), aux_pool=5))
    assert "\n" not in str(info.value) and not marker.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, r"'data' must be uint8 \[N, 3072\]"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "one label per image"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"labels must be whole numbers in \[0, 10\)"),
        ([1, 2], "holds a list, not a dict"),
        ({b"data": np.array([object()], dtype=object), b"labels": []}, "object dtype"),
    ],
)
def test_malformed_batches_are_one_line_errors(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "b"
    path.write_bytes(pickle.dumps(content, protocol=2))
    with pytest.raises(DataError, match=message) as info:
        cifar.read_batch(path)
    assert "\n" not in str(info.value)


def test_truncated_and_missing_files(isolated: Path) -> None:
    write_cifar(isolated / "root")
    folder = isolated / "root" / cifar.FOLDER
    (folder / "test_batch").write_bytes((folder / "test_batch").read_bytes()[:100])
    with pytest.raises(DataError, match="test_batch: cannot read pickle"):
        load_splits(DataConfig(dataset="cifar10", data_dir=str(isolated / "root"), aux_pool=5))
    (folder / "data_batch_2").unlink()
    with pytest.raises(DataError, match=r"missing data_batch_2(.|\n)*--download"):
        load_splits(DataConfig(dataset="cifar10", data_dir=str(isolated / "root"), aux_pool=5))


def test_download_fetches_through_torchvision_then_reads_restricted(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    calls: list[tuple[str, str, str | None]] = []

    def download_and_extract_archive(url: str, root: str, filename: str | None = None, md5: str | None = None) -> None:
        calls.append((url, root, md5))
        write_cifar(Path(root))

    known = types.SimpleNamespace(url="https://example.invalid/cifar-10-python.tar.gz", filename="cifar-10-python.tar.gz", tgz_md5="abc")
    fake = types.SimpleNamespace(datasets=types.SimpleNamespace(CIFAR10=known, utils=types.SimpleNamespace(download_and_extract_archive=download_and_extract_archive)))
    monkeypatch.setattr("splitleak._compat.import_torchvision", lambda: fake)
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("CIFAR batches must not be unpickled with pickle.load"))
    s = load_splits(DataConfig(dataset="cifar10", data_dir=str(isolated / "new"), aux_pool=5, download=True))
    assert calls == [(known.url, str(isolated / "new"), "abc")] and len(s.test) == 8
