"""Whole pipeline on real Fashion-MNIST: NoPeek must lower dCor(x, z) and decoder SSIM (minutes)."""

import pytest

from splitleak.data import DataConfig, DataError, load_splits
from splitleak.evaluation import EvalConfig, evaluate
from splitleak.models import load_checkpoint, save_checkpoint
from splitleak.training import TrainConfig, train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fashion():
    try:
        return load_splits(DataConfig(dataset="fashion-mnist", limit_test=1000))
    except DataError as err:
        pytest.skip(f"Fashion-MNIST not available ({err}); apt-get install dataset-fashion-mnist")


def test_nopeek_lowers_dcor_and_decoder_ssim_at_the_same_cut(fashion, tmp_path) -> None:
    scores = {}
    for defense, params in [("none", {}), ("nopeek", {"alpha": 5.0})]:
        trained = train(TrainConfig(cut=1, epochs=2, defense=defense, defense_params=params), fashion)
        path = save_checkpoint(tmp_path / f"{defense}.safetensors", trained.model, trained.meta)
        results = evaluate(load_checkpoint(path), EvalConfig(limit=1000, attack_params={"decoder": {"epochs": 5}}), fashion)
        scores[defense] = results.summary().set_index(["attack", "metric"])["mean"]
    none, nopeek = scores["none"], scores["nopeek"]
    assert none[("", "accuracy")] > 0.8 and nopeek[("", "accuracy")] > 0.7
    assert none[("decoder", "ssim")] > 0.9  # cut 1 of an undefended model: near-perfect inversion
    assert nopeek[("", "dcor")] < none[("", "dcor")] - 0.2
    assert nopeek[("", "dcor_u2")] < none[("", "dcor_u2")] - 0.2
    assert nopeek[("decoder", "ssim")] < none[("decoder", "ssim")] - 0.1
