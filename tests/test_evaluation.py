import json

import numpy as np
import pandas as pd
import pytest

from splitleak.evaluation import EvalConfig, data_config_for, evaluate
from splitleak.models import load_checkpoint
from splitleak.results import COLUMNS

FAST = EvalConfig(attack_params={"decoder": {"epochs": 2, "width": 16}}, limit=50, dcor_samples=40, gallery=4)


def test_evaluate_returns_the_tidy_table(tiny_checkpoint, tiny_splits) -> None:
    checkpoint = load_checkpoint(tiny_checkpoint)
    results = evaluate(checkpoint, FAST, tiny_splits)
    table = results.table
    assert list(table.columns) == list(COLUMNS)
    per_sample = table[table.attack == "decoder"]
    assert sorted(per_sample.metric.unique()) == ["mse", "psnr", "semantic_accuracy", "ssim"]
    assert set(per_sample.query("metric == 'semantic_accuracy'").value) <= {0.0, 1.0}
    assert (per_sample.groupby("metric").size() == 50).all()
    assert set(per_sample["sample"]) == set(tiny_splits.test.indices[:50].tolist())
    model_rows = table[table.attack == ""].set_index("metric")
    assert set(model_rows.index) == {"accuracy", "dcor", "dcor_u2", "semantic_reference"}
    assert 0.3 < model_rows.loc["semantic_reference", "value"] <= 1  # attacker's classifier beats chance (0.1)
    assert model_rows.loc["dcor", "n"] == 40 and 0 <= model_rows.loc["dcor", "value"] <= 1
    assert model_rows["sample"].isna().all()
    assert (table.run == checkpoint.sha256[:12]).all() and (table.defense == "none").all()
    assert json.loads(table.defense_params.iloc[0]) == {}
    assert results.reconstructions["original"].shape == (4, 1, 28, 28)
    assert results.reconstructions["attack/decoder"].shape == (4, 1, 28, 28)
    prov = results.provenance
    assert prov["checkpoint"]["sha256"] == checkpoint.sha256
    assert prov["attacks"]["decoder"]["budget"]["epochs"] == 2
    assert prov["attacks"]["decoder"]["threat_model"]["query_access"] is True
    assert prov["environment"]["packages"]["torch"]
    assert prov["semantic_classifier"]["enabled"] and prov["semantic_classifier"]["train_size"] == len(tiny_splits.aux)
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
    assert config.split_seed == checkpoint.meta["data"]["split_seed"]


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

    from splitleak.evaluation import _score

    torch.manual_seed(0)
    x = torch.rand(4, 1, 28, 28)
    y = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    for metric in ("ssim", "psnr"):
        unit = _score(metric, x, y, (0.0, 1.0))
        np.testing.assert_allclose(_score(metric, 2 * x, 2 * y, (0.0, 2.0)), unit, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_score("mse", 2 * x, 2 * y, (0.0, 2.0)), 4 * _score("mse", x, y, (0.0, 1.0)), rtol=1e-5)
    # reconstructions outside the range are clipped before scoring
    np.testing.assert_allclose(_score("mse", x, x + 5, (0.0, 1.0)), _score("mse", x, torch.ones_like(x), (0.0, 1.0)))
