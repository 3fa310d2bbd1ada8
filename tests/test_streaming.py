"""Activations within a memory budget: the plan, the chunked releases, and a streamed evaluate."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from splitleak.adaptive import adaptive_for
from splitleak.attacks import ATTACKS
from splitleak.errors import InputError
from splitleak.evaluation import EvalConfig, evaluate
from splitleak.models import load_checkpoint
from splitleak.streaming import ActivationPlan, Releases, client_outputs
from splitleak.training import TrainConfig, train

ROW = 16 * 28 * 28 * 4  # bytes of one tiny-checkpoint activation (cut 1 of small-cnn on 28x28)
PASSIVE = ("decoder", "rmle", "shadow", "unsplit", "sdar", "fora")  # every attack but fsha (needs an fsha-trained model)
TINY_ATTACKS = {
    "decoder": {"epochs": 1, "width": 8},
    "rmle": {"steps": 2, "batch_size": 5},
    "shadow": {"shadow_epochs": 1, "rmle_steps": 2},
    "unsplit": {"outer_steps": 1, "input_steps": 1, "model_steps": 1},
    "sdar": {"iterations": 2, "batch_size": 8},
    "fora": {"substitute_steps": 2, "decoder_epochs": 1, "batch_size": 8},
}
WHOLE = EvalConfig(attacks=PASSIVE, attack_params=TINY_ATTACKS, limit=30, dcor_samples=8, gallery=2, lpips=None, semantic_epochs=0)
STREAMED = dataclasses.replace(WHOLE, activation_memory=15 * ROW)  # chunks of 15 images; dCor (12 bytes a value) on 15 * 4 / 12 = 5


def test_plan_streams_only_above_the_budget() -> None:
    fits = ActivationPlan(budget=30 * ROW, activation_shape=(16, 28, 28), scored=30, dcor_asked=30)
    assert not fits.streamed and fits.chunk == 30 and fits.spans() == [slice(0, 30)] and fits.dcor_images == 10  # dCor counts its float64 copy
    tight = dataclasses.replace(fits, budget=30 * ROW - 1)
    assert tight.streamed and tight.chunk == 29 and tight.spans() == [slice(0, 29), slice(29, 30)] and tight.observed_images == 29
    adaptive = dataclasses.replace(fits, copies=2)  # the estimate is a second tensor of the same size
    assert adaptive.streamed and adaptive.chunk == 15 and adaptive.to_dict()["chunk_images"] == 15
    assert dataclasses.replace(fits, budget=1).chunk == 1  # at least one image per chunk
    assert fits.batch == 1024 and tight.batch == 3  # streamed, a forward pass's output takes an eighth of the budget at most
    assert dataclasses.replace(tight, scored=10**6, budget=2**30).batch == 1024


def test_releases_are_the_whole_release_chunk_by_chunk(tiny_checkpoint, tiny_splits) -> None:
    model = load_checkpoint(tiny_checkpoint).model.eval()
    x = tiny_splits.test.x[:30]
    whole, logits = client_outputs(model, x, "cpu")
    plan = ActivationPlan(budget=10 * ROW, activation_shape=tuple(whole.shape[1:]), scored=30, dcor_asked=30)
    releases = Releases(model, x, plan, None, device="cpu", seed=0)
    assert torch.equal(torch.cat([releases.observed(k) for k in range(3)]), whole)  # a deterministic encoder: identical activations
    torch.testing.assert_close(releases.logits(), logits)  # forward passes of one image: the head's last bits may differ


@pytest.fixture(scope="module")
def noisy(tiny_splits):
    """A tiny small-cnn trained briefly with Gaussian activation noise: its releases draw."""
    few = dataclasses.replace(tiny_splits, train=tiny_splits.train.head(64))
    return train(TrainConfig(cut=1, epochs=1, batch_size=64, defense="noise", defense_params={"scale": 0.5}), few)


def test_a_drawing_chunk_is_the_same_release_every_time(noisy, tiny_splits) -> None:
    model = noisy.model.eval()
    x = tiny_splits.test.x[:20]
    adaptive = adaptive_for(3, "noise", noisy.meta.defense.params, noisy.meta.train, model)
    plan = ActivationPlan(budget=2 * 8 * ROW, activation_shape=(16, 28, 28), scored=20, dcor_asked=20, copies=2)
    releases = Releases(model, x, plan, adaptive, device="cpu", seed=0)
    single = Releases(model, x, dataclasses.replace(plan, copies=1, budget=8 * ROW), None, device="cpu", seed=0)
    first = releases.observed(1)
    torch.manual_seed(123)  # torch's global generator plays no part
    assert torch.equal(releases.observed(1), first)
    assert not torch.equal(releases.observed(0), single.observed(0))  # the estimate over 3 releases, not the single one
    assert not torch.equal(Releases(model, x, plan, adaptive, device="cpu", seed=1).observed(1), first)  # the seed's own streams


def test_every_attack_sees_the_same_scored_release_of_a_drawing_defense(noisy, tiny_splits, tmp_path, monkeypatch) -> None:
    from splitleak.models import save_checkpoint

    checkpoint = load_checkpoint(save_checkpoint(tmp_path / "noisy.safetensors", noisy.model, noisy.meta))
    seen: dict[str, list[torch.Tensor]] = {}
    for name in ("decoder", "rmle"):
        cls = ATTACKS[name]
        original = cls.reconstruct

        def spy(self, z, _original=original, _name=name):
            seen.setdefault(_name, []).append(z.clone())
            return _original(self, z)

        monkeypatch.setattr(cls, "reconstruct", spy)
    config = dataclasses.replace(STREAMED, attacks=("decoder", "rmle"), attack_params={k: TINY_ATTACKS[k] for k in ("decoder", "rmle")})
    results = evaluate(checkpoint, config, tiny_splits)
    assert [len(z) for z in seen["decoder"]] == [15, 15]
    assert torch.equal(torch.cat(seen["decoder"]), torch.cat(seen["rmle"]))
    assert results.provenance.only.memory["streamed"] is True


@pytest.fixture(scope="module")
def both(tiny_checkpoint, tiny_splits) -> tuple[pd.DataFrame, pd.DataFrame, dict, dict]:
    checkpoint = load_checkpoint(tiny_checkpoint)
    whole = evaluate(checkpoint, dataclasses.replace(WHOLE, attacks=("rmle",)), tiny_splits)  # what must not change: rmle's inversions, the logits
    streamed = evaluate(checkpoint, STREAMED, tiny_splits)
    return whole.table, streamed.table, whole.provenance.only.memory, streamed.provenance.only.memory


def test_a_streamed_evaluation_runs_every_passive_attack(both) -> None:
    _, streamed, _, memory = both
    assert set(PASSIVE) <= set(streamed.attack)
    assert np.isfinite(streamed.value.dropna()).all()
    assert memory["streamed"] and memory["chunk_images"] == 15 and memory["observed_images"] == 15
    assert memory["dcor_images"] == 5 and memory["dcor_images_asked"] == 8
    assert memory["peak_rss_bytes"] > 0 and "ru_maxrss" in memory["peak_rss_scope"]


def test_streaming_keeps_the_numbers_that_do_not_depend_on_the_budget(both) -> None:
    whole, streamed, memory_whole, _ = both
    assert not memory_whole["streamed"] and memory_whole["chunk_images"] == 30 and memory_whole["dcor_images"] == 8

    def rows(table, attack, metric):
        return table[(table.attack == attack) & (table.metric == metric)].set_index("sample", drop=False)["value"]

    pd.testing.assert_series_equal(rows(whole, "", "accuracy"), rows(streamed, "", "accuracy"))  # the same logits
    assert rows(streamed, "", "dcor").index.size == 1
    assert (streamed[(streamed.attack == "") & (streamed.metric == "dcor")].n == 5).all()  # capped to what fits
    # the same activations in: a per-sample inversion gives the same reconstructions
    pd.testing.assert_series_equal(rows(whole, "rmle", "mse"), rows(streamed, "rmle", "mse"))


def test_a_budget_too_small_for_dcor_is_refused(tiny_checkpoint, tiny_splits) -> None:
    with pytest.raises(InputError, match="activation_memory of 100 bytes holds the activations .* of only 0 images for dCor"):
        evaluate(load_checkpoint(tiny_checkpoint), dataclasses.replace(WHOLE, activation_memory=100), tiny_splits)


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "1GB", None])
def test_bad_activation_memory_is_refused(value) -> None:
    with pytest.raises(InputError, match="activation_memory must be a whole number >= 1"):
        EvalConfig(activation_memory=value)


def test_activation_memory_is_recorded_only_when_set() -> None:
    assert "activation_memory" not in EvalConfig().to_dict()  # records and sweep cell keys as before
    assert EvalConfig(activation_memory=2**20).to_dict()["activation_memory"] == 2**20
    assert EvalConfig.from_dict(EvalConfig(activation_memory=2**20).to_dict()).activation_memory == 2**20


@pytest.mark.slow
def test_evaluate_of_10000_colour_images_at_resnet18_layer1_stays_under_4_gb(tmp_path) -> None:
    """Issue 18's acceptance, measured by benchmarks/memory.py in processes of their own (~15 min on one core)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "memory.md"
    done = subprocess.run([sys.executable, "-m", "benchmarks.memory", "--out", str(out)], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    row = out.read_text().splitlines()[-1]
    assert row.endswith("| yes |") and "10,000 photo-patches" in out.read_text(), out.read_text()
