import dataclasses
import json
import os

import numpy as np
import pandas as pd
import pytest

from splitleak.evaluation import EvalConfig, data_config_for, evaluate
from splitleak.models import load_checkpoint
from splitleak.results import COLUMNS

FAST = EvalConfig(attack_params={"decoder": {"epochs": 1, "width": 16}}, budget_scale=2, limit=50, dcor_samples=40, gallery=4, lpips=None)


def test_evaluate_returns_the_tidy_table(tiny_checkpoint, tiny_splits) -> None:
    checkpoint = load_checkpoint(tiny_checkpoint)
    results = evaluate(checkpoint, FAST, tiny_splits)
    table = results.table
    assert list(table.columns) == list(COLUMNS)
    attack_rows = table[table.attack == "decoder"]
    per_sample = attack_rows[attack_rows["sample"].notna()]
    assert sorted(per_sample.metric.unique()) == ["mse", "psnr", "semantic_accuracy", "ssim"]
    recon = attack_rows[attack_rows["sample"].isna()].set_index("metric")
    assert sorted(recon.index) == ["dcor_recon", "dcor_recon_u2"] and (recon.n == 50).all()
    assert (recon.ci_low <= recon.value).all() and (recon.value <= recon.ci_high).all()
    assert set(per_sample.query("metric == 'semantic_accuracy'").value) <= {0.0, 1.0}
    assert (per_sample.groupby("metric").size() == 50).all()
    assert set(per_sample["sample"]) == set(tiny_splits.test.indices[:50].tolist())
    model_rows = table[table.attack == ""].set_index("metric")
    assert set(model_rows.index) == {"accuracy", "dcor", "dcor_u2", "semantic_reference", "semantic_chance"}
    labels = tiny_splits.test.y[:50]
    assert model_rows.loc["semantic_chance", "value"] == pytest.approx(labels.bincount().max().item() / 50)  # the majority label's share
    assert 0.3 < model_rows.loc["semantic_reference", "value"] <= 1  # attacker's classifier beats chance (0.1)
    assert model_rows.loc["dcor", "n"] == 40 and 0 <= model_rows.loc["dcor", "value"] <= 1
    assert model_rows.loc["dcor", "ci_low"] <= model_rows.loc["dcor", "value"] <= model_rows.loc["dcor", "ci_high"]
    assert per_sample.ci_low.isna().all()
    assert model_rows["sample"].isna().all()
    assert (table.run == checkpoint.sha256[:12]).all() and (table.defense == "none").all()
    assert json.loads(table.defense_params.iloc[0]) == {}
    assert results.reconstructions["original"].shape == (4, 1, 28, 28)
    assert results.reconstructions["attack/decoder"].shape == (4, 1, 28, 28)
    ssim = per_sample.query("metric == 'ssim'").set_index("sample")["value"]
    best, median, worst = results.reconstructions["extremes/decoder/indices"].tolist()
    assert ssim[best] == ssim.max() and ssim[worst] == ssim.min() and ssim[worst] <= ssim[median] <= ssim[best]
    row = int(np.flatnonzero(tiny_splits.test.indices.numpy() == worst)[0])
    np.testing.assert_array_equal(results.reconstructions["extremes/decoder/original"][2], tiny_splits.test.x[row].numpy())
    prov = results.provenance.only
    assert results.provenance.runs.keys() == {checkpoint.sha256[:12]}
    assert prov.checkpoint is not None and prov.checkpoint.sha256 == checkpoint.sha256 and prov.meta == checkpoint.meta
    assert prov.attacks["decoder"]["budget"]["epochs"] == 2  # 1 epoch x budget_scale 2
    assert prov.evaluation["budget_scale"] == 2
    assert prov.attacks["decoder"]["threat_model"]["query_access"] is True
    assert prov.environment["packages"]["torch"]
    assert prov.lpips == {"available": False, "reason": "LPIPS was not asked for"}
    assert prov.dcor["x_vs_z"]["n"] == 40
    assert prov.semantic_classifier["enabled"] and prov.semantic_classifier["train_size"] == len(tiny_splits.aux)
    stages = prov.stages  # where the time went: training (from the checkpoint), each attack's steps, each scorer
    assert {"train", "activations", "attack/decoder/fit", "attack/decoder/reconstruct", "prepare/semantic_classifier", "score/ssim", "score/dcor"} <= stages.keys()
    assert all(seconds >= 0 for seconds in stages.values()) and stages["train"] > 0
    assert stages["attack/decoder/fit"] == prov.attacks["decoder"]["fit_seconds"]
    summary = results.summary().set_index(["attack", "metric"])
    row = summary.loc[("decoder", "ssim")]
    assert row["ci_low"] <= row["mean"] <= row["ci_high"] and row["count"] == 50


def test_semantic_leakage_can_be_switched_off(tiny_checkpoint, tiny_splits) -> None:
    from dataclasses import replace

    table = evaluate(load_checkpoint(tiny_checkpoint), replace(FAST, semantic_epochs=0), tiny_splits).table
    assert not table.metric.str.startswith("semantic").any()


def test_same_seed_same_numbers(tiny_checkpoint, tiny_splits) -> None:
    a = evaluate(load_checkpoint(tiny_checkpoint), FAST, tiny_splits).table
    b = evaluate(load_checkpoint(tiny_checkpoint), FAST, tiny_splits).table
    pd.testing.assert_frame_equal(a, b)


def test_data_config_reuses_the_checkpoint_split(tiny_checkpoint) -> None:
    checkpoint = load_checkpoint(tiny_checkpoint)
    config = data_config_for(checkpoint, aux_size=50, limit_test=10)
    assert config.dataset == "digits" and config.aux_pool == 200 and config.aux_size == 50
    assert config.split_seed == checkpoint.meta.data["split_seed"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"attacks": ("decoder", "psychic")}, "unknown attack"),
        ({"attacks": ()}, "at least one"),
        ({"metrics": ("ssim", "vibes")}, "unknown reconstruction metric"),
        ({"limit": 0}, "limit"),
        ({"gallery": -1}, "gallery"),
        ({"semantic_epochs": 1.5}, "semantic_epochs"),
        ({"colour": "red"}, "unknown evaluation option"),
        ({"lpips": "resnet"}, "unknown LPIPS backbone"),
        ({"lpips": None, "require_lpips": True}, "require_lpips"),
        ({"dcor_samples": 0}, "dcor_samples"),
    ],
)
def test_bad_eval_configs(values, message) -> None:
    with pytest.raises(ValueError, match=message):
        EvalConfig.from_dict(values)


def test_shape_mismatch_between_model_and_data_is_refused(tiny_checkpoint, tiny_splits) -> None:
    from dataclasses import replace

    from splitleak.data import InputSpec

    other = replace(tiny_splits, spec=InputSpec(shape=(3, 32, 32)))
    with pytest.raises(ValueError, match="does not match"):
        evaluate(load_checkpoint(tiny_checkpoint), FAST, other)


def test_scores_use_the_value_range_as_data_range() -> None:
    import torch

    from splitleak.metrics import METRICS
    from splitleak.scoring import reconstruction_values

    def _score(metric, x, x_hat, value_range):
        return reconstruction_values(METRICS[metric], x, x_hat, value_range)

    torch.manual_seed(0)
    x = torch.rand(4, 1, 28, 28)
    y = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    for metric in ("ssim", "psnr"):
        unit = _score(metric, x, y, (0.0, 1.0))
        np.testing.assert_allclose(_score(metric, 2 * x, 2 * y, (0.0, 2.0)), unit, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_score("mse", 2 * x, 2 * y, (0.0, 2.0)), 4 * _score("mse", x, y, (0.0, 1.0)), rtol=1e-5)
    # reconstructions outside the range are clipped before scoring
    np.testing.assert_allclose(_score("mse", x, x + 5, (0.0, 1.0)), _score("mse", x, torch.ones_like(x), (0.0, 1.0)))


def test_lpips_rows_when_real_weights_exist(tiny_checkpoint, tiny_splits) -> None:
    from dataclasses import replace

    from splitleak.metrics.perceptual import lpips_available

    ok, reason = lpips_available("alex")
    if not ok:
        if os.environ.get("SPLITLEAK_REQUIRE_WEIGHTS"):  # CI prepares them: skipping would hide a failure
            pytest.fail(reason)
        pytest.skip(reason)
    results = evaluate(load_checkpoint(tiny_checkpoint), replace(FAST, lpips="alex", limit=20, dcor_samples=None), tiny_splits)
    lpips = results.table.query("metric == 'lpips' and attack != 'worst'")
    assert len(lpips) == 20 and (lpips.value >= 0).all() and (lpips.value < 1).all()
    assert results.provenance.only.lpips["available"] and "64x64" in results.provenance.only.lpips["definition"]


def test_missing_lpips_weights_are_reported_or_fatal(tiny_checkpoint, tiny_splits, tmp_path, monkeypatch) -> None:
    from dataclasses import replace

    from splitleak.metrics import perceptual

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SPLITLEAK_WEIGHTS_DIR", str(tmp_path / "weights"))
    perceptual.clear_lpips_cache()
    try:
        config = replace(FAST, lpips="alex", limit=20, dcor_samples=None)
        results = evaluate(load_checkpoint(tiny_checkpoint), config, tiny_splits)
        assert "lpips" not in set(results.table.metric)
        assert not results.provenance.only.lpips["available"] and "unavailable" in results.provenance.only.lpips["reason"]
        with pytest.raises(ValueError, match="unavailable"):
            evaluate(load_checkpoint(tiny_checkpoint), replace(config, require_lpips=True), tiny_splits)
    finally:
        perceptual.clear_lpips_cache()


def test_too_few_test_images_is_a_clear_error(tiny_checkpoint, tiny_splits) -> None:
    from dataclasses import replace

    with pytest.raises(ValueError, match="at least 5 test images"):
        evaluate(load_checkpoint(tiny_checkpoint), replace(FAST, limit=4, dcor_samples=None), tiny_splits)
    table = evaluate(load_checkpoint(tiny_checkpoint), replace(FAST, limit=5, dcor_samples=None, semantic_epochs=0), tiny_splits).table
    assert (table.query("metric == 'dcor'").n == 5).all()


def test_ssim_on_images_smaller_than_its_window_fails_before_any_attack(tiny_checkpoint, tiny_splits, monkeypatch) -> None:
    from splitleak import evaluation

    monkeypatch.setattr(evaluation, "SSIM_WINDOW", 29)  # as if the 28x28 model took 10x10 images
    monkeypatch.setattr(evaluation, "make_attack", lambda *a, **k: pytest.fail("an attack was built"))
    with pytest.raises(ValueError, match="ssim needs images of at least 29x29"):
        evaluate(load_checkpoint(tiny_checkpoint), FAST, tiny_splits)


def test_attacks_that_can_run_follow_the_threat_models(tiny_checkpoint, tiny_splits) -> None:
    """`evaluate --attacks all`: every passive attack on an honestly trained checkpoint, in registry
    order; the training-time attacks are left out, each with what it would need."""
    from splitleak.attacks import ATTACKS, passive_attacks
    from splitleak.evaluation import attacks_that_can_run

    can, cannot = attacks_that_can_run(load_checkpoint(tiny_checkpoint), tiny_splits, FAST)
    assert can == passive_attacks() and set(can) | set(cannot) == set(ATTACKS)
    assert cannot["fsha"] == ["a checkpoint trained by the 'fsha' server (splitleak train --server fsha)"]
    assert "sdar" in cannot["sdar-online"][0]
    unlabelled = dataclasses.replace(tiny_splits, labelled=False)  # shadow and sdar need labelled auxiliary data
    can, cannot = attacks_that_can_run(load_checkpoint(tiny_checkpoint), unlabelled, FAST)
    assert {"shadow", "sdar"} <= set(cannot) and {"decoder", "rmle", "unsplit", "fora"} <= set(can)
