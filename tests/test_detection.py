"""SplitGuard: the score, the detector in training (honest vs FSHA), resume, records, bad input."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from splitleak.cli import main
from splitleak.data import DEBIAN_FASHION_MNIST_DIR, DataConfig, DataError, Splits, load_splits
from splitleak.detection import DETECTORS, SplitGuard, SplitGuardConfig, splitguard_score
from splitleak.errors import InputError
from splitleak.models import load_checkpoint
from splitleak.protocol import HonestServer, client_parameters
from splitleak.records import CheckpointMeta
from splitleak.training import TrainConfig, _fake_exchange, build_split_model, train

SMALL = {"critic_width": 16, "critic_blocks": 1, "decoder_width": 16}  # a cheap FSHA server (as in test_fsha)
FAST = {"warmup": 3, "p_fake": 0.3}  # fakes early and often on the tiny data
TINY = ["--dataset", "digits", "--limit-train", "128", "--aux-pool", "200", "--limit-test", "40", "--quiet"]


@pytest.fixture(autouse=True)
def _two_threads() -> None:
    """One thread here (overrides conftest's two): these small steps spend two threads' time on
    barriers when other processes share the cores (10x slower measured under load)."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def few(tiny_splits: Splits) -> Splits:
    """The tiny digits with 128 training images: 4 steps of 32 per epoch."""
    return dataclasses.replace(tiny_splits, train=tiny_splits.train.head(128))


def _config(server: str = "honest", **changes: object) -> TrainConfig:
    params = SMALL if server == "fsha" else {}
    base = {"cut": 2, "epochs": 4, "batch_size": 32, "server": server, "server_params": params, "detector": "splitguard", "detector_params": FAST}
    return TrainConfig(**{**base, **changes})


def _reference_score(fakes: list[np.ndarray], r1: list[np.ndarray], r2: list[np.ndarray], alpha: float, beta: float) -> float:
    """The authors' formula written out with numpy over lists of gradients."""
    def angle(u: np.ndarray, v: np.ndarray) -> float:
        return float(np.arccos(np.clip(u @ v / np.linalg.norm(u) / np.linalg.norm(v), -1, 1)))

    f, c, r = (sum(g) / len(g) for g in (fakes, r1, r2))
    fm, cm, rm = (np.mean([np.linalg.norm(v) for v in g]) for g in (fakes, r1, r2))
    div = abs(fm - (cm + rm) / 2) + abs(cm - rm)
    d = angle(f, (c + r) / 2) * abs(fm - (cm + rm) / 2) / div - angle(c, r) * abs(rm - cm) / div
    return (1 / (1 + math.exp(-alpha * d))) ** beta


def test_score_matches_the_formula_and_separates_aligned_from_random_gradients() -> None:
    gen = torch.Generator().manual_seed(0)
    direction = torch.randn(144, generator=gen, dtype=torch.float64)
    regular = direction + 0.3 * torch.randn(40, 144, generator=gen, dtype=torch.float64)
    r1, r2 = regular[:20], regular[20:]
    aligned = direction + 0.3 * torch.randn(8, 144, generator=gen, dtype=torch.float64)  # a server that ignores labels
    other = 2 * torch.randn(8, 144, generator=gen, dtype=torch.float64)  # gradients for wrong labels: elsewhere, larger
    for fakes in (aligned, other):
        expected = _reference_score(list(fakes.numpy()), list(r1.numpy()), list(r2.numpy()), 5.0, 2.0)
        assert splitguard_score(fakes, r1, r2) == pytest.approx(expected, rel=1e-9)
    assert splitguard_score(aligned, r1, r2) < 0.5 < 0.9 < splitguard_score(other, r1, r2)
    assert 0.0 <= splitguard_score(-aligned, r1, r2, alpha=1.0, beta=1.0) <= 1.0
    with pytest.raises(InputError, match="at least one"):
        splitguard_score(aligned[:0], r1, r2)


def test_bad_parameters_are_input_errors() -> None:
    assert DETECTORS["splitguard"] is SplitGuard
    assert _config().detector_params == {**dataclasses.asdict(SplitGuardConfig()), **FAST}  # defaults filled in
    for bad in ({"p_fake": 0}, {"p_fake": 1.5}, {"threshold": 2}, {"window": 0}, {"warmup": -1}, {"alpha": "x"}, {"fake_fraction": 0}, {"gamma": 1}):
        with pytest.raises(InputError):
            TrainConfig(detector="splitguard", detector_params=bad)
    with pytest.raises(InputError, match="without a detector"):
        TrainConfig(detector_params={"p_fake": 0.2})
    with pytest.raises(InputError, match="detector"):
        TrainConfig(detector="oracle")


def test_without_a_detector_configs_keep_their_keys() -> None:
    assert "detector" not in TrainConfig().to_dict() and "detector_params" not in TrainConfig().to_dict()
    config = _config()
    assert TrainConfig.from_dict(config.to_dict()) == config and config.to_dict()["detector"] == "splitguard"


def test_a_detector_that_never_starts_leaves_training_bit_identical(few: Splits) -> None:
    plain = train(TrainConfig(cut=2, epochs=1, batch_size=32), few)
    idle = train(TrainConfig(cut=2, epochs=1, batch_size=32, detector="splitguard", detector_params={"warmup": 1000}), few)
    for key, value in plain.model.state_dict().items():
        assert torch.equal(value, idle.model.state_dict()[key]), key
    assert plain.meta.detection is None and idle.meta.detection["fakes"] == 0 and idle.meta.detection["alarm_step"] is None


def test_a_fake_batch_trains_the_server_but_never_the_client(few: Splits) -> None:
    model = build_split_model(_config(), few)
    server = HonestServer(model)
    optimiser = torch.optim.Adam(client_parameters(model), lr=1e-3)
    detector = SplitGuard(SplitGuardConfig(), torch.Generator().manual_seed(0))
    encoder = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    head = {k: v.clone() for k, v in model.head.state_dict().items()}
    x, y = detector.fake_batch(few.train.x, few.train.y, 32, few.num_classes)
    assert len(x) == 32
    _fake_exchange(detector, model, server, optimiser, (x, y), step=1)
    assert all(torch.equal(v, model.encoder.state_dict()[k]) for k, v in encoder.items())
    assert not optimiser.state and all(p.grad is None for p in client_parameters(model))
    assert not all(torch.equal(v, model.head.state_dict()[k]) for k, v in head.items())  # the server cannot tell
    assert detector.groups["fake"].count == 1


def test_fake_labels_are_all_wrong_and_drawn_from_the_detectors_stream(few: Splits) -> None:
    first, again = (SplitGuard(SplitGuardConfig(fake_fraction=0.5), torch.Generator().manual_seed(3)) for _ in range(2))
    x, y = first.fake_batch(few.train.x, few.train.y, 32, few.num_classes)
    x2, y2 = again.fake_batch(few.train.x, few.train.y, 32, few.num_classes)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    truth = torch.stack([few.train.y[(few.train.x == xi).flatten(1).all(1)][0] for xi in x])
    assert bool((y[:16] != truth[:16]).all()) and torch.equal(y[16:], truth[16:])


@pytest.mark.parametrize("seed", [0, 1])
def test_alarm_on_fsha_and_none_on_honest_training(few: Splits, seed: int) -> None:
    hijacked = train(_config("fsha", seed=seed, epochs=3), few).meta.detection
    honest = train(_config(seed=seed, epochs=6), few).meta.detection
    assert hijacked["alarm_step"] is not None and hijacked["alarm_step"] <= 12
    assert honest["alarm_step"] is None and honest["fakes"] >= 3
    assert min(s for _, s in honest["scores"]) > 0.5 > hijacked["scores"][0][1]


def test_with_nopeek_the_detector_watches_the_servers_part_alone(few: Splits, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[torch.Tensor] = []
    original = SplitGuard.observe
    monkeypatch.setattr(SplitGuard, "observe", lambda self, step, g, *, fake: (seen.append(g.clone()), original(self, step, g, fake=fake))[1])
    config = _config(defense="nopeek", defense_params={"alpha": 5.0}, epochs=1, detector_params={"warmup": 0, "p_fake": 0.01})
    trained = train(config, few)
    plain = train(dataclasses.replace(config, defense="none", defense_params={}), few)  # same first step, without the penalty
    assert len(seen) == 4 + trained.meta.detection["fakes"] + 4 + plain.meta.detection["fakes"]
    assert torch.allclose(seen[0], seen[4 + trained.meta.detection["fakes"]], atol=1e-6)  # step 1: same model, same server reply
    assert trained.meta.detection["alarm_step"] is None


def test_resume_gives_the_same_alarm_and_scores(few: Splits, tmp_path: Path) -> None:
    whole = train(_config("fsha", epochs=2), few)
    state = tmp_path / "m.partial"
    train(_config("fsha", epochs=1), few, state_file=state)
    resumed = train(_config("fsha", epochs=2), few, state_file=state, resume=True)
    assert resumed.meta.detection == whole.meta.detection and whole.meta.detection["alarm_step"] is not None
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert [e["detector_fakes"] for e in resumed.meta.log] == [e["detector_fakes"] for e in whole.meta.log]


def test_the_checkpoint_records_the_detection_and_the_cli_reports_it(tmp_path: Path, capsys) -> None:
    ckpt = tmp_path / "m.safetensors"
    params = ["--server-param", "fsha.critic_width=16", "--server-param", "fsha.critic_blocks=1", "--server-param", "fsha.decoder_width=16"]
    detector = ["--detector", "splitguard", "--detector-param", "splitguard.warmup=3", "--detector-param", "splitguard.p_fake=0.3"]
    assert main(["train", *TINY, "--cut", "2", "--epochs", "3", "--batch-size", "32", "--server", "fsha", *params, *detector, "--out", str(ckpt)]) == 0
    assert "splitguard: ALARM at step" in capsys.readouterr().out
    meta = load_checkpoint(ckpt).meta
    assert meta.detection["alarm_step"] is not None and meta.detection["params"]["p_fake"] == 0.3
    assert CheckpointMeta.from_dict(meta.to_dict()) == meta and meta.train["detector"] == "splitguard"
    assert main(["train", *TINY, "--detector", "splitguard", "--detector-param", "nopeek.alpha=1", "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "--detector is 'splitguard'" in capsys.readouterr().err


@pytest.mark.slow
def test_fashion_mnist_splitguard_alarms_on_fsha_only() -> None:
    """Fashion-MNIST small-cnn cut 2, batch 64, 3,200 images, the default parameters: honest
    training for 300 steps raises no alarm; FSHA (default server) is caught within 100 steps."""
    torch.set_num_threads(1)
    try:
        splits = load_splits(DataConfig(dataset="fashion-mnist", limit_train=3200, limit_test=500))
    except DataError:
        pytest.skip(f"Fashion-MNIST not found (Debian's dataset-fashion-mnist: {DEBIAN_FASHION_MNIST_DIR})")
    base = {"cut": 2, "batch_size": 64, "detector": "splitguard", "seed": 0}
    honest = train(TrainConfig(**base, epochs=6), splits)
    assert honest.meta.detection["alarm_step"] is None and honest.meta.detection["fakes"] >= 15
    assert honest.meta.test_accuracy > 0.7
    hijacked = train(TrainConfig(**base, epochs=2, server="fsha"), splits).meta.detection
    assert hijacked["alarm_step"] is not None and hijacked["alarm_step"] <= 100
