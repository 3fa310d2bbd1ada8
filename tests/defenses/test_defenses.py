import pytest
import torch

from splitleak.defenses import DEFENSES, ActivationNoise, NoDefense, NoPeek, make_defense
from splitleak.metrics import distance_correlation


def test_registry_names_match_classes() -> None:
    assert set(DEFENSES) == {"none", "nopeek", "noise", "dropout", "dp-noise", "adversarial"}
    assert all(cls.name == name for name, cls in DEFENSES.items())


def test_none_is_a_defense_with_no_hooks() -> None:
    d = make_defense("none")
    assert isinstance(d, NoDefense) and d.penalty(torch.zeros(4, 3), torch.zeros(4, 2)) is None and d.transform() is None


def test_nopeek_penalty_is_alpha_times_dcor_and_differentiable() -> None:
    x = torch.rand(32, 1, 28, 28)
    z = (x.flatten(1)[:, :50] ** 2).requires_grad_()
    penalty = NoPeek(alpha=3.0).penalty(x, z)
    torch.testing.assert_close(penalty, 3.0 * distance_correlation(x.flatten(1), z))
    penalty.backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_nopeek_keeps_channels_last_activations_and_their_gradient_in_that_layout() -> None:
    x = torch.rand(16, 1, 28, 28)
    z = torch.relu(torch.randn(16, 8, 14, 14)).contiguous(memory_format=torch.channels_last).requires_grad_()
    penalty = NoPeek(alpha=2.0).penalty(x, z)
    torch.testing.assert_close(penalty, 2.0 * distance_correlation(x.flatten(1), z.detach().contiguous().flatten(1)))
    penalty.backward()
    assert z.grad.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("distribution", ["gaussian", "laplace"])
def test_noise_has_the_configured_scale_in_train_and_eval(distribution: str) -> None:
    noise = ActivationNoise(scale=0.5, distribution=distribution).transform()
    z = torch.zeros(200_000)
    for mode in (True, False):
        noise.train(mode)
        sample = noise(z)
        expected_std = 0.5 if distribution == "gaussian" else 0.5 * 2**0.5
        assert abs(sample.mean().item()) < 0.01
        assert sample.std().item() == pytest.approx(expected_std, rel=0.02)
    if distribution == "laplace":  # mean absolute deviation of Laplace(0, b) is b
        assert sample.abs().mean().item() == pytest.approx(0.5, rel=0.02)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("nopeek", {"alpha": -1.0}, ">= 0"),
        ("nopeek", {"alpha": float("nan")}, "finite"),
        ("nopeek", {"alpha": "big"}, "finite"),
        ("nopeek", {"beta": 1.0}, "no parameter"),
        ("noise", {"scale": -0.1}, ">= 0"),
        ("noise", {"distribution": "cauchy"}, "gaussian"),
        ("dropout", {"rate": 1.0}, "< 1"),
        ("dropout", {"rate": -0.2}, ">= 0"),
        ("dropout9", {}, "unknown defense"),
    ],
)
def test_bad_defense_parameters_are_refused(name, params, message) -> None:
    with pytest.raises(ValueError, match=message):
        make_defense(name, params)


def test_params_round_trip() -> None:
    for name, params in [("none", {}), ("nopeek", {"alpha": 2.0}), ("noise", {"scale": 0.3, "distribution": "laplace"}), ("dropout", {"rate": 0.3})]:
        d = make_defense(name, params)
        assert make_defense(name, d.params()) == d


def test_dropout_thins_activations_in_eval_mode_and_keeps_the_expectation() -> None:
    drop = make_defense("dropout", {"rate": 0.25}).transform().eval()
    z = torch.ones(400_000)
    out = drop(z)
    assert (out == 0).float().mean().item() == pytest.approx(0.25, abs=0.01)
    assert out.mean().item() == pytest.approx(1.0, abs=0.01)
    assert out.unique().tolist() == pytest.approx([0.0, 1 / 0.75])
    assert torch.equal(make_defense("dropout", {"rate": 0.0}).transform()(z), z)
