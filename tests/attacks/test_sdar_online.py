"""SDAR during training: the passive server (`--server sdar`), its checkpoint state and the
`sdar-online` attack that decodes with it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from splitleak.attacks import ATTACKS, ThreatModelError, passive_attacks
from splitleak.attacks.sdar import SDARServer, SDARServerConfig
from splitleak.cli import main
from splitleak.data import Splits
from splitleak.errors import InputError
from splitleak.evaluation import EvalConfig, evaluate
from splitleak.models import load_checkpoint, save_checkpoint
from splitleak.protocol import SERVERS
from splitleak.training import TrainConfig, train

SMALL = {"batch_size": 32, "decoder_width": 8, "disc_width": 4}  # a cheap server for fast tests
TINY = ["--dataset", "digits", "--limit-train", "64", "--aux-pool", "200", "--limit-test", "40", "--quiet"]
EVAL = ["--limit", "20", "--dcor-samples", "20", "--semantic-epochs", "0", "--lpips", "none", "--quiet"]


@pytest.fixture(scope="module")
def few(tiny_splits: Splits) -> Splits:
    return dataclasses.replace(tiny_splits, train=tiny_splits.train.head(96))


def _config(**changes: object) -> TrainConfig:
    return TrainConfig(**{"cut": 2, "epochs": 2, "batch_size": 32, "server": "sdar", "server_params": SMALL, **changes})


@pytest.fixture(scope="module")
def online(few: Splits):
    return train(_config(), few)


def test_the_server_is_registered_with_the_recipe_as_its_parameters() -> None:
    assert SERVERS["sdar"] is SDARServer and ATTACKS["sdar-online"].threat_model.trained_by == "sdar"
    assert "sdar-online" not in passive_attacks()  # needs a model its server trained
    assert _config().server_params == {**dataclasses.asdict(SDARServerConfig()), **SMALL}
    with pytest.raises(InputError, match="unknown sdar server option"):
        TrainConfig(server="sdar", server_params={"iterations": 5})  # one iteration per training step


def test_the_server_is_passive_the_client_ends_as_with_an_honest_server(few: Splits, online) -> None:
    honest = train(_config(server="honest", server_params={}), few)
    for key, value in honest.model.state_dict().items():
        assert torch.equal(value, online.model.state_dict()[key]), key  # same gradients, same weights, bit for bit
    assert online.meta.test_accuracy == honest.meta.test_accuracy
    assert {k.split(".")[0] for k in online.server_state} == {"simulator", "feature_disc", "decoder", "image_disc"}
    diagnostics = online.meta.server["diagnostics"]
    assert diagnostics["iterations"] == 2 * 3  # one per training step: 96 images in batches of 32, two epochs
    again = train(_config(), few)
    assert all(torch.equal(v, again.server_state[k]) for k, v in online.server_state.items())  # same seed, same server


def test_resume_restores_the_server(few: Splits, online, tmp_path: Path) -> None:
    state = tmp_path / "m.partial"
    train(_config(epochs=1), few, state_file=state)
    resumed = train(_config(), few, state_file=state, resume=True)
    for key, value in online.server_state.items():
        assert torch.equal(value, resumed.server_state[key]), key
    assert resumed.meta.server["diagnostics"] == online.meta.server["diagnostics"]


def test_the_attack_decodes_with_the_servers_decoder(few: Splits, online, tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.safetensors", online.model, online.meta, online.defense_state, online.server_state)
    checkpoint = load_checkpoint(path)
    results = evaluate(checkpoint, EvalConfig(attacks=("sdar-online",), limit=20, lpips=None, semantic_epochs=0), few)
    assert set(results.table.attack) == {"", "sdar-online", "worst"}
    scored = results.table[(results.table.attack == "sdar-online") & (results.table.metric == "ssim")]
    assert len(scored) == 20 and scored.value.between(-1, 1).all()
    # the decoder is the server's: zeroing its weights in the checkpoint changes the reconstructions
    broken = {k: (torch.zeros_like(v) if k.startswith("decoder.") and v.is_floating_point() else v) for k, v in online.server_state.items()}
    other = load_checkpoint(save_checkpoint(tmp_path / "z.safetensors", online.model, online.meta, online.defense_state, broken))
    again = evaluate(other, EvalConfig(attacks=("sdar-online",), limit=20, lpips=None, semantic_epochs=0), few)
    assert not again.table[(again.table.attack == "sdar-online") & (again.table.metric == "ssim")].value.reset_index(drop=True).equals(
        scored.value.reset_index(drop=True)
    )


def test_an_honest_checkpoint_fails_before_any_work(few: Splits, tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(ThreatModelError, match="trained by the 'sdar' server"):
        evaluate(load_checkpoint(tiny_checkpoint), EvalConfig(attacks=("sdar-online",), lpips=None, semantic_epochs=0), few)
    assert main(["evaluate", str(tiny_checkpoint), "--attacks", "sdar-online", "--out", str(tmp_path / "r"), *EVAL]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "splitleak train --server sdar" in err[0]
    assert not (tmp_path / "r").exists()


def test_cli_trains_with_the_sdar_server_and_evaluates(tmp_path: Path, capsys) -> None:
    ckpt = tmp_path / "m.safetensors"
    params = [f"--server-param=sdar.{k}={v}" for k, v in SMALL.items()]
    assert main(["train", *TINY, "--cut", "2", "--epochs", "1", "--batch-size", "32", "--server", "sdar", *params, "--out", str(ckpt)]) == 0
    assert "server sdar" in capsys.readouterr().out
    assert load_checkpoint(ckpt).server_state
    assert main(["evaluate", str(ckpt), "--attacks", "decoder,sdar-online", "--attack-param", "decoder.epochs=1", "--out", str(tmp_path / "r"), *EVAL]) == 0


def test_the_server_and_attack_run_on_colour_images_and_a_resnet(tiny_splits: Splits, tmp_path: Path) -> None:
    """resnet18 at its stem cut on 32x32 RGB (random pixels: the point is the shapes, not the leakage)."""
    from splitleak.data import ArraySplit, InputSpec

    g = torch.Generator().manual_seed(0)

    def part(n: int, start: int) -> ArraySplit:
        return ArraySplit(torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g), torch.arange(start, start + n))

    colour = dataclasses.replace(tiny_splits, train=part(32, 0), aux=part(32, 32), test=part(8, 64), spec=InputSpec(shape=(3, 32, 32), value_range=(0.0, 1.0)))
    trained = train(_config(arch="resnet18", cut="stem", epochs=1, batch_size=16), colour)
    assert trained.meta.server["diagnostics"]["iterations"] == 2
    checkpoint = load_checkpoint(save_checkpoint(tmp_path / "m.safetensors", trained.model, trained.meta, trained.defense_state, trained.server_state))
    results = evaluate(checkpoint, EvalConfig(attacks=("sdar-online",), limit=8, lpips=None, semantic_epochs=0), colour)
    assert len(results.table[(results.table.attack == "sdar-online") & (results.table.metric == "ssim")]) == 8



def test_a_server_decoder_that_does_not_fit_is_refused_in_one_line(few: Splits, online, tmp_path: Path) -> None:
    state = {k: v for k, v in online.server_state.items() if k != "decoder.decoder.net.0.weight"}  # a tensor missing
    path = save_checkpoint(tmp_path / "m.safetensors", online.model, online.meta, online.defense_state, state)
    with pytest.raises(InputError, match="attack 'sdar-online': the checkpoint's server decoder does not fit"):
        evaluate(load_checkpoint(path), EvalConfig(attacks=("sdar-online",), limit=20, lpips=None, semantic_epochs=0), few)


def test_unlabelled_auxiliary_data_is_refused_before_training(few: Splits) -> None:
    from splitleak.data import ArraySplit

    unlabelled = dataclasses.replace(few, aux=ArraySplit(few.aux.x, torch.full_like(few.aux.y, -1), few.aux.indices))
    with pytest.raises(InputError, match="labelled with the task's 10 classes"):
        train(_config(), unlabelled)
