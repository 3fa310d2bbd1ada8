import math

import pandas as pd
import pytest
import torch

from splitleak.adaptive import MAX_OBSERVATIONS, Adaptive, adaptive_for, check_observations, mean_of_releases, releases_for
from splitleak.defenses import make_defense
from splitleak.defenses.dropout import AlwaysDropout
from splitleak.defenses.noise import AdditiveNoise
from splitleak.errors import InputError
from splitleak.evaluation import EvalConfig, evaluate
from splitleak.models import load_checkpoint, save_checkpoint
from splitleak.training import TrainConfig, train

FAST = EvalConfig(attacks=("rmle",), attack_params={"rmle": {"steps": 60}}, limit=40, gallery=2, lpips=None, semantic_epochs=0)


def _releases(layer: torch.nn.Module, z: torch.Tensor, k: int) -> torch.Tensor:
    return torch.stack([layer(z) for _ in range(k)])


def test_the_gaussian_estimate_is_the_mean_and_its_error_falls_as_one_over_root_k() -> None:
    noise = make_defense("noise", {"scale": 2.0})
    z = torch.rand(4000)
    layer = AdditiveNoise(2.0, "gaussian", torch.Generator().manual_seed(0))
    for k in (1, 4, 16):
        releases = _releases(layer, z, k)
        estimate = noise.estimate(releases)
        torch.testing.assert_close(estimate, releases.mean(0))
        assert (estimate - z).std().item() == pytest.approx(2.0 / math.sqrt(k), rel=0.08)


def test_the_laplace_estimate_is_the_median() -> None:
    laplace = make_defense("noise", {"scale": 1.0, "distribution": "laplace"})
    odd = torch.tensor([[3.0, -1.0], [0.0, 5.0], [1.0, 2.0]])
    torch.testing.assert_close(laplace.estimate(odd), torch.tensor([1.0, 2.0]))
    even = torch.tensor([[3.0], [0.0], [1.0], [10.0]])
    torch.testing.assert_close(laplace.estimate(even), torch.tensor([2.0]))
    z = torch.rand(4000)
    layer = AdditiveNoise(1.0, "laplace", torch.Generator().manual_seed(0))
    releases = _releases(layer, z, 15)
    median_error = (laplace.estimate(releases) - z).pow(2).mean()
    assert median_error < (releases.mean(0) - z).pow(2).mean()  # the MLE beats the mean under Laplace noise


def test_the_dropout_estimate_unmasks_every_entry_kept_at_least_once() -> None:
    dropout = make_defense("dropout", {"rate": 0.5})
    z = torch.rand(20000) + 0.1  # no exact zeros: a zero estimate means "dropped every time"
    layer = AlwaysDropout(0.5, torch.Generator().manual_seed(0))
    releases = _releases(layer, z, 4)
    estimate = dropout.estimate(releases)
    seen = (releases != 0).any(0)
    torch.testing.assert_close(estimate[seen], z[seen])
    assert (estimate[~seen] == 0).all()
    assert (~seen).float().mean().item() == pytest.approx(0.5**4, abs=0.01)
    assert (dropout.estimate(torch.zeros(3, 5)) == 0).all()  # a zero activation stays zero


def test_observations_are_checked_and_resolved() -> None:
    assert check_observations(1) == 1 and check_observations("epochs") == "epochs"
    for bad in (0, -1, MAX_OBSERVATIONS + 1, True, 2.5, "all"):
        with pytest.raises(InputError, match="observations"):
            check_observations(bad)
    assert releases_for(5, None) == 5
    assert releases_for("epochs", {"epochs": 3}) == 3
    with pytest.raises(InputError, match="training epochs"):
        releases_for("epochs", None)
    with pytest.raises(InputError, match="observations"):
        EvalConfig(observations=0)


def test_one_observation_is_not_recorded_so_existing_configs_and_sweep_keys_read_as_before() -> None:
    assert "observations" not in EvalConfig().to_dict()
    config = EvalConfig(observations="epochs")
    assert config.to_dict()["observations"] == "epochs"
    assert EvalConfig.from_dict(config.to_dict()) == config


@pytest.fixture(scope="module")
def stochastic_checkpoints(tiny_splits, tmp_path_factory):
    folder = tmp_path_factory.mktemp("adaptive")
    out = {}
    for name, params in (("dropout", {"rate": 0.5}), ("noise", {"scale": 0.5}), ("nopeek", {"alpha": 1.0})):
        trained = train(TrainConfig(cut=1, epochs=2, batch_size=64, seed=0, defense=name, defense_params=params), tiny_splits)
        out[name] = save_checkpoint(folder / f"{name}.safetensors", trained.model, trained.meta)
    return out


def test_adaptive_for_picks_the_defenses_estimator_and_nothing_when_there_is_nothing_to_combine(stochastic_checkpoints) -> None:
    def adaptive(name: str, observations: int | str) -> Adaptive | None:
        checkpoint = load_checkpoint(stochastic_checkpoints[name])
        meta = checkpoint.meta
        return adaptive_for(observations, meta.defense.name, meta.defense.params, meta.train, checkpoint.model)

    assert adaptive("dropout", 1) is None
    assert adaptive("nopeek", 8) is None  # draws nothing: every release is the same
    chosen = adaptive("dropout", "epochs")
    assert chosen is not None and chosen.describe() == {"releases": 2, "estimator": "dropout.estimate"}
    checkpoint = load_checkpoint(stochastic_checkpoints["noise"])
    unknown = adaptive_for(3, "someone-elses-defense", {}, None, checkpoint.model)
    assert unknown is not None and unknown.estimator is mean_of_releases


def test_evaluate_with_one_observation_is_the_non_adaptive_evaluation(stochastic_checkpoints, tiny_splits) -> None:
    checkpoint = load_checkpoint(stochastic_checkpoints["noise"])
    plain = evaluate(checkpoint, FAST, tiny_splits)
    assert plain.provenance.only.adaptive == {}
    nothing_to_combine = evaluate(load_checkpoint(stochastic_checkpoints["nopeek"]), EvalConfig(**{**FAST.__dict__, "observations": 6}), tiny_splits)
    baseline = evaluate(load_checkpoint(stochastic_checkpoints["nopeek"]), FAST, tiny_splits)
    pd.testing.assert_frame_equal(nothing_to_combine.table, baseline.table)
    assert nothing_to_combine.provenance.only.adaptive == {}


def test_the_adaptive_attacker_undoes_dropout(stochastic_checkpoints, tiny_splits) -> None:
    checkpoint = load_checkpoint(stochastic_checkpoints["dropout"])
    ssim = {}
    for k in (1, 8):
        results = evaluate(checkpoint, EvalConfig(**{**FAST.__dict__, "observations": k}), tiny_splits)
        rows = results.table
        ssim[k] = rows[(rows.attack == "rmle") & (rows.metric == "ssim")].value.mean()
        if k > 1:
            assert results.provenance.only.adaptive == {"releases": 8, "estimator": "dropout.estimate"}
            assert results.provenance.only.evaluation["observations"] == 8
    model_rows = rows[rows.attack == ""]
    assert ssim[8] > ssim[1] + 0.1, ssim  # white-box rMLE on the unmasked activations
    assert len(model_rows)  # the model-level scores are still there


def test_the_adaptive_query_answers_with_the_estimate_over_fresh_releases() -> None:
    layer = AdditiveNoise(1.0, "gaussian", torch.Generator().manual_seed(0))
    adaptive = Adaptive(16, mean_of_releases, "mean")
    x = torch.zeros(2000)
    answer = adaptive.query(layer)(x)
    assert answer.std().item() == pytest.approx(0.25, rel=0.1)
    observed = adaptive.observe(layer, x.view(-1, 1), first=torch.full((2000, 1), 100.0), batch=300)
    assert observed.mean().item() == pytest.approx(100 / 16, abs=0.05)  # the given release counts as the first
