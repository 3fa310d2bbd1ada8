"""Shared tiny fixtures: digits (bundled with scikit-learn) resized to 28x28, a few hundred images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from splitleak.data import DataConfig, Splits, load_splits
from splitleak.models import save_checkpoint
from splitleak.training import TrainConfig, train

TINY_DATA = DataConfig(dataset="digits", aux_pool=200, limit_train=400, limit_test=120)


@pytest.fixture(autouse=True)
def _two_threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_splits() -> Splits:
    return load_splits(TINY_DATA)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_splits: Splits, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An undefended small-cnn trained for one epoch on tiny digits, cut 1."""
    trained = train(TrainConfig(cut=1, epochs=1, batch_size=64, seed=0), tiny_splits)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", trained.model, trained.meta)
