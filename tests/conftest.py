"""Shared tiny fixtures: digits (bundled with scikit-learn) resized to 28x28, a few hundred images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from splitleak.data import DEBIAN_FASHION_MNIST_DIR, DataConfig, DataError, Splits, load_splits
from splitleak.models import SplitModel
from splitleak.models import save_checkpoint
from splitleak.training import TrainConfig, train

TINY_DATA = DataConfig(dataset="digits", aux_pool=200, limit_train=400, limit_test=120)


@pytest.fixture(autouse=True)
def _two_threads() -> None:
    """Two torch threads (the CI machine's cores), or $OMP_NUM_THREADS when set: on a loaded
    machine `OMP_NUM_THREADS=1` keeps tests from waiting on thread barriers, and the
    subprocesses tests start read the same variable."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 2))


@pytest.fixture(scope="session")
def tiny_splits() -> Splits:
    return load_splits(TINY_DATA)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_splits: Splits, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An undefended small-cnn trained for one epoch on tiny digits, cut 1."""
    trained = train(TrainConfig(cut=1, epochs=1, batch_size=64, seed=0), tiny_splits)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", trained.model, trained.meta)


@pytest.fixture(scope="session")
def fashion_cut1() -> tuple[Splits, SplitModel, torch.Tensor, torch.Tensor]:
    """Slow tests: Fashion-MNIST (200 test images), an undefended small-cnn cut 1 trained for
    one epoch, the 200 test images and their activations. Trained once per session."""
    try:
        splits = load_splits(DataConfig(dataset="fashion-mnist", limit_test=200))
    except DataError as err:
        pytest.skip(f"Fashion-MNIST not available at {DEBIAN_FASHION_MNIST_DIR} ({err})")
    model = train(TrainConfig(cut=1, epochs=1), splits).model
    x = splits.test.x[:200]
    with torch.no_grad():
        z = model.client(x)
    return splits, model, x, z
