"""dp-noise: clipping, the analytic Gaussian calibration (checked against scipy), composition,
the noise, the adaptive estimate, bad parameters, the guarantee text."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from scipy.stats import norm

from splitleak import dp
from splitleak._random import without_draws
from splitleak.cli import main
from splitleak.defenses import DEFENSES, describe, make_defense
from splitleak.defenses.dp_noise import DPNoise, L2Clip
from splitleak.testing import check_defense


def _scipy_delta(sigma: float, epsilon: float, sensitivity: float) -> float:
    """Balle & Wang 2018, Theorem 8: the delta of the Gaussian mechanism with std sigma."""
    a, b = sensitivity / (2 * sigma), epsilon * sigma / sensitivity
    return norm.cdf(a - b) - math.exp(epsilon) * norm.cdf(-a - b)


def test_clipping_caps_norms_and_leaves_short_vectors_alone() -> None:
    z = torch.randn(64, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    z[:8] *= 0.01  # norms ~0.06, below the clip
    out = L2Clip(1.0)(z)
    norms = out.flatten(1).norm(dim=1)
    assert (norms <= 1.0 + 1e-6).all() and torch.allclose(norms[8:], torch.ones(56))
    assert torch.equal(out[:8], z[:8])
    assert torch.allclose(out[8:] / norms[8:, None, None, None], z[8:] / z[8:].flatten(1).norm(dim=1)[:, None, None, None])  # direction kept
    assert torch.equal(L2Clip(1.0)(torch.zeros(3, 5)), torch.zeros(3, 5))


@pytest.mark.parametrize(("epsilon", "delta", "clip"), [(0.5, 1e-5, 1.0), (1.0, 1e-5, 1.0), (8.0, 1e-5, 1.0), (8.0, 1e-3, 40.0), (64.0, 1e-6, 0.5), (200.0, 1e-5, 1.0)])
def test_analytic_sigma_meets_the_privacy_loss_condition_with_equality(epsilon, delta, clip) -> None:
    defense = DPNoise(epsilon=epsilon, delta=delta, clip=clip)
    assert _scipy_delta(defense.std, epsilon, 2 * clip) == pytest.approx(delta, rel=1e-6)
    assert _scipy_delta(defense.std * (1 - 1e-4), epsilon, 2 * clip) > delta  # the smallest such sigma


def test_analytic_matches_balle_and_wang_and_beats_classic() -> None:
    assert dp.noise_std(1.0, 1e-5, 1.0) == pytest.approx(3.73, abs=0.01)  # Balle & Wang 2018, Fig. 1's regime
    for epsilon in (0.1, 0.5, 0.9):
        classic = dp.noise_std(epsilon, 1e-5, 1.0, "classic")
        assert classic == pytest.approx(math.sqrt(2 * math.log(1.25 / 1e-5)) / epsilon)
        assert dp.noise_std(epsilon, 1e-5, 1.0) < classic


def test_sigma_falls_as_epsilon_and_delta_grow() -> None:
    by_epsilon = [DPNoise(epsilon=e).std for e in (0.25, 1, 4, 16, 64, 256)]
    by_delta = [DPNoise(delta=d).std for d in (1e-9, 1e-6, 1e-3, 0.1)]
    assert by_epsilon == sorted(by_epsilon, reverse=True) and by_delta == sorted(by_delta, reverse=True)
    assert DPNoise(clip=3.0).std == pytest.approx(3 * DPNoise(clip=1.0).std)


def test_classic_calibration_is_refused_from_epsilon_one() -> None:
    with pytest.raises(ValueError, match="classic.*epsilon < 1"):
        DPNoise(epsilon=1.0, calibration="classic")
    assert DPNoise(epsilon=0.5, calibration="classic").std > DPNoise(epsilon=0.5).std


def test_composition_over_releases() -> None:
    params = {"epsilon": 8.0, "delta": 1e-5, "clip": 1.0}
    assert dp.epsilon_after(params, 1) == 8.0
    mu = dp.analytic_mu(8.0, 1e-5)
    assert dp.composed_epsilon(mu, 1e-5, 1) == pytest.approx(8.0, rel=1e-9)
    epsilons = [dp.epsilon_after(params, k) for k in (1, 2, 4, 16, 100)]
    assert epsilons == sorted(epsilons) and len(set(epsilons)) == 5
    # K releases with std s are one release with std s / sqrt(K): the condition holds at (eps_K, delta)
    std = DPNoise(**params).std
    assert _scipy_delta(std / 2, epsilons[2], 2.0) == pytest.approx(1e-5, rel=1e-6)


def test_noise_std_is_sigma_and_the_transform_draws_from_its_generator() -> None:
    defense = DPNoise(epsilon=4.0, clip=2.0)
    layer = defense.transform(torch.Generator().manual_seed(0))
    z = torch.zeros(50, 4000)  # norm 0: nothing clipped, the output is the noise
    for training in (True, False):
        sample = layer.train(training)(z)
        assert sample.std().item() == pytest.approx(defense.std, rel=0.01) and abs(sample.mean().item()) < 0.01 * defense.std


def test_adaptive_estimate_is_the_mean_and_the_attacker_keeps_the_clip() -> None:
    releases = torch.randn(5, 3, 7, generator=torch.Generator().manual_seed(1))
    assert torch.equal(DPNoise().estimate(releases), releases.mean(0))
    kept = without_draws(DPNoise(clip=0.5).transform())
    z = torch.randn(4, 10) * 10
    assert torch.equal(kept(z), L2Clip(0.5)(z))  # what rMLE's noiseless client applies


def test_rmle_inverts_the_clip_too(tiny_splits) -> None:
    """At negligible noise rMLE recovers the image only if it inverts encoder + clip (without the
    clip it matched an unclipped f1(x) to a norm-1 target: SSIM 0.02 against 0.98 measured on a
    trained model)."""
    from splitleak.attacks import Access, make_attack
    from splitleak.metrics import ssim
    from splitleak.models.build import make_split_model

    torch.set_num_threads(1)  # tiny work: a second thread only waits on a busy machine
    model = make_split_model(arch="small-cnn", cut=1, spec=tiny_splits.spec, num_classes=10, defense="dp-noise",
                             defense_params={"epsilon": 1e6}, init=torch.Generator().manual_seed(0)).eval()
    x = tiny_splits.test.x[:8]
    with torch.no_grad():
        z = model.client(x)
    attack = make_attack("rmle", {"steps": 100}).fit(Access(spec=model.spec, activation_shape=tuple(z.shape[1:]), encoder=model))
    assert ssim(x, attack.reconstruct(z)).mean() > 0.7


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"epsilon": 0.0}, "epsilon must be > 0"),
        ({"epsilon": -1.0}, "epsilon must be > 0"),
        ({"epsilon": float("inf")}, "finite"),
        ({"delta": 0.0}, r"delta must be in \(0, 1\)"),
        ({"delta": 1.0}, r"delta must be in \(0, 1\)"),
        ({"clip": 0.0}, "clip must be > 0"),
        ({"clip": "big"}, "finite"),
        ({"calibration": "rdp"}, "calibration must be one of"),
        ({"sigma": 1.0}, "no parameter"),
    ],
)
def test_bad_parameters_are_refused_in_one_line(params, message) -> None:
    with pytest.raises(ValueError, match=message) as err:
        make_defense("dp-noise", params)
    assert "\n" not in str(err.value)


def test_cli_refuses_bad_parameters_with_exit_2(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    tiny = ["--dataset", "digits", "--limit-train", "100", "--limit-test", "50", "--aux-pool", "50", "--epochs", "1", "--out", "x.safetensors"]
    for flags in (["--dp-epsilon", "-1"], ["--dp-delta", "2"], ["--defense-param", "dp-noise.calibration=classic"]):
        assert main(["train", *tiny, "--defense", "dp-noise", *flags]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("splitleak: error:"), err
    assert not (tmp_path / "x.safetensors").exists()


def test_labels_strength_and_guarantee() -> None:
    assert DEFENSES["dp-noise"] is DPNoise
    assert describe(DPNoise, {"epsilon": 8.0, "delta": 1e-5, "clip": 1.0}) == "DP noise ε=8"
    assert describe(DPNoise, {"epsilon": 2.0, "delta": 1e-6, "clip": 4.0}) == "DP noise ε=2 (δ=1e-06, C=4)"
    text = DPNoise.guarantee(DPNoise(epsilon=8.0).params(), 2)
    assert text.startswith("(ε=8, δ=1e-05)-DP per released activation") and "replace-one" in text and "after 2 releases of one input: (ε=12.3, δ=1e-05)" in text
    assert "after" not in dp.guarantee({"epsilon": 8.0}, 1)
    assert make_defense("dp-noise", DPNoise(epsilon=3.0).params()) == DPNoise(epsilon=3.0)


def test_conformance() -> None:
    check_defense("dp-noise")
    check_defense(DPNoise(epsilon=0.5, calibration="classic", clip=0.1))


def test_report_notes_state_the_guarantee_after_training_and_the_attackers_releases() -> None:
    from types import SimpleNamespace

    from splitleak.reports.notes import _guarantee

    params = {"epsilon": 8.0, "delta": 1e-5, "clip": 1.0, "calibration": "analytic"}
    run = SimpleNamespace(run="r1", defense="dp-noise", params=params, defense_label="DP noise ε=8",
                          meta=SimpleNamespace(train={"epochs": 2}), provenance=SimpleNamespace(adaptive={"releases": 8}))
    line = _guarantee(run)
    assert line.startswith("r1 (DP noise ε=8): (ε=8, δ=1e-05)-DP per released activation")
    assert "after its 2 training epochs" in line and "(ε=12.3, δ=1e-05)" in line and "combined 8 releases: (ε=" in line
    assert _guarantee(SimpleNamespace(run="r2", defense="noise")) == ""
    broken = SimpleNamespace(**{**vars(run), "params": {"epsilon": -1.0}, "meta": None})
    assert "no guarantee can be computed" in _guarantee(broken)


@pytest.mark.slow
def test_a_smaller_epsilon_leaks_less_to_the_decoder_on_fashion_mnist() -> None:
    """small-cnn cut 2, 3,000 training images, 1 epoch, at epsilon 1 and 1000: the decoder attack
    (2,000 auxiliary images) reconstructs less of the strongly protected model's test images."""
    from splitleak.attacks import Access, DecoderAttack, DecoderConfig
    from splitleak.data import DEBIAN_FASHION_MNIST_DIR, DataConfig, DataError, load_splits
    from splitleak.metrics import ssim
    from splitleak.training import TrainConfig, train

    try:
        splits = load_splits(DataConfig(dataset="fashion-mnist", aux_size=2000, limit_train=3000, limit_test=200))
    except DataError as err:
        pytest.skip(f"Fashion-MNIST not available at {DEBIAN_FASHION_MNIST_DIR} ({err})")
    x = splits.test.x[:200]
    scores = {}
    for epsilon in (1.0, 1000.0):
        model = train(TrainConfig(cut=2, epochs=1, defense="dp-noise", defense_params={"epsilon": epsilon}), splits).model.eval()
        access = Access(spec=model.spec, activation_shape=(32, 14, 14), query=model.client, aux=splits.aux, seed=0)
        attack = DecoderAttack(DecoderConfig(epochs=5)).fit(access)
        with torch.no_grad():
            scores[epsilon] = ssim(x, attack.reconstruct(model.client(x))).mean().item()
    assert scores[1.0] < scores[1000.0] - 0.1, scores
