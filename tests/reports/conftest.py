"""Three tiny evaluated checkpoints (none, NoPeek alpha 5, noise) saved as results folders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from splitleak.data import Splits
from splitleak.evaluation import EvalConfig, evaluate
from splitleak.models import load_checkpoint, save_checkpoint
from splitleak.results import Results
from splitleak.training import TrainConfig, train

FAST_EVAL = EvalConfig(
    attacks=("decoder", "rmle"), limit=20, lpips=None, semantic_epochs=0, gallery=8,
    attack_params={"decoder": {"epochs": 1}, "rmle": {"steps": 5}},
)
DEFENDED = {"nopeek": ("nopeek", {"alpha": 5.0}), "noise": ("noise", {"scale": 1.0})}


@pytest.fixture(scope="session")
def report_results(tiny_splits: Splits, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Results]:
    """Results of the undefended tiny model and of a NoPeek and a noise model trained like it.

    One thread: these tiny models gain nothing from two, and lose a lot on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _evaluated(tiny_splits, tiny_checkpoint, tmp_path_factory)
    finally:
        torch.set_num_threads(threads)


def _evaluated(tiny_splits: Splits, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Results]:
    out = {"none": evaluate(load_checkpoint(tiny_checkpoint), FAST_EVAL, tiny_splits)}
    folder = tmp_path_factory.mktemp("report_ckpt")
    for name, (defense, params) in DEFENDED.items():
        trained = train(TrainConfig(cut=1, epochs=1, batch_size=64, defense=defense, defense_params=params), tiny_splits)
        path = save_checkpoint(folder / f"{name}.safetensors", trained.model, trained.meta)
        out[name] = evaluate(load_checkpoint(path), FAST_EVAL, tiny_splits)
    return out


@pytest.fixture(scope="session")
def report_dirs(report_results: dict[str, Results], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The three results saved as folders, in the order none, nopeek, noise."""
    root = tmp_path_factory.mktemp("report_results")
    return [results.save(root / name) for name, results in report_results.items()]
