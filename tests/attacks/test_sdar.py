import copy

import pytest
import torch
from torch import nn

from splitleak.attacks import Access, ThreatModelError
from splitleak.attacks.sdar import GenericSimulator, SDARAttack, SDARConfig
from splitleak.data import ArraySplit, InputSpec
from splitleak.errors import InputError
from splitleak.metrics import ssim
from splitleak.training import TrainConfig, train

TINY = SDARConfig(iterations=4, batch_size=16, decoder_width=8, disc_width=4)


@pytest.fixture(scope="module")
def victim(tiny_splits):
    """A tiny-digits model cut 2 whose head is worth attacking (as in test_shadow)."""
    model = train(TrainConfig(cut=2, epochs=8, batch_size=32, seed=0), tiny_splits).model
    model.zero_grad(set_to_none=True)
    return model


def _access(model, splits, **overrides) -> Access:
    """What evaluate hands a passive server: head, labelled aux, architecture and the observed activations."""
    with torch.no_grad():
        observed = model.client(splits.test.x[:64])
    values = dict(
        spec=model.spec, activation_shape=tuple(observed.shape[1:]), head=model.head, aux=splits.aux, arch=model.arch, cut=model.cut,
        num_classes=10, observed=observed,
    )
    values.update(overrides)
    return Access(**values)


def _synthetic(channels: int, z_shape: tuple[int, ...], n: int = 24) -> Access:
    """Random images and a random head over activations of `z_shape`; no architecture known."""
    g = torch.Generator().manual_seed(0)
    spec = InputSpec(shape=(channels, 8, 8), value_range=(-1.0, 1.0))
    x = torch.rand(n, channels, 8, 8, generator=g) * 2 - 1
    head = nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(z_shape).prod()), 3))
    aux = ArraySplit(x, torch.randint(0, 3, (n,), generator=g), torch.arange(n))
    observed = torch.randn(10, *z_shape, generator=g)
    return Access(spec=spec, activation_shape=z_shape, head=head, aux=aux, observed=observed)


@pytest.mark.parametrize(("channels", "z_shape"), [(1, (12,)), (3, (12,)), (3, (5, 4, 4)), (1, (6, 3, 3))])
def test_any_activation_shape_and_channels_without_the_architecture(channels, z_shape) -> None:
    access = _synthetic(channels, z_shape)
    x_hat = SDARAttack(TINY).fit(access).reconstruct(access.observed)
    assert x_hat.shape == (10, channels, 8, 8) and torch.isfinite(x_hat).all()
    assert x_hat.min() >= -1 and x_hat.max() <= 1


def test_generic_simulator_produces_the_activation_shape() -> None:
    for z_shape in [(7,), (4, 8, 8), (4, 4, 4), (4, 3, 3), (2, 1, 1)]:
        assert GenericSimulator((3, 8, 8), z_shape)(torch.rand(2, 3, 8, 8)).shape == (2, *z_shape)


def test_simulator_learns_under_the_frozen_head_and_decoder_improves(victim, tiny_splits) -> None:
    head_before = copy.deepcopy(victim.head.state_dict())
    access = _access(victim, tiny_splits)
    attack = SDARAttack(SDARConfig(iterations=60, batch_size=32, decoder_width=16, disc_width=8)).fit(access)
    budget = attack.budget()
    assert budget["simulator_aux_accuracy"] > 0.5  # chance is 0.1
    assert attack.history[-1] < attack.history[0]  # the decoder's MSE on the simulator's activations
    assert all(torch.equal(head_before[k], v) for k, v in victim.head.state_dict().items())
    assert all(p.grad is None for p in victim.parameters())
    x_hat = attack.reconstruct(access.observed)
    assert x_hat.shape == (64, 1, 28, 28) and x_hat.min() >= 0 and x_hat.max() <= 1


def test_noisy_observed_activations(tiny_splits) -> None:
    model = train(TrainConfig(cut=2, epochs=1, batch_size=64, seed=0, defense="noise", defense_params={"scale": 1.0}), tiny_splits).model
    access = _access(model, tiny_splits)
    x_hat = SDARAttack(TINY).fit(access).reconstruct(access.observed)
    assert torch.isfinite(x_hat).all()


def test_reconstruction_is_a_function_of_z(victim, tiny_splits) -> None:
    access = _access(victim, tiny_splits)
    attack = SDARAttack(TINY).fit(access)
    z = access.observed
    # equal up to float rounding: the convolutions may pick another kernel for another batch size
    # (seen with one thread); a batch-dependent decoder (BatchNorm in training mode) differs by far more
    torch.testing.assert_close(attack.reconstruct(z)[:5], attack.reconstruct(z[:5]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"observed": None}, ThreatModelError, "observed activations"),
        ({"observed": torch.zeros(4, 3, 3)}, InputError, "observed activations of shape"),
        ({"observed": torch.zeros(1, 32, 14, 14)}, InputError, "at least 2"),
        ({"head": None}, ThreatModelError, "server head"),
        ({"labelled": False}, ThreatModelError, "labelled auxiliary"),
        ({"cut": 1}, InputError, "cut 1 gives activations"),
    ],
)
def test_missing_or_bad_input_fails_clearly(victim, tiny_splits, overrides, error, message) -> None:
    with pytest.raises(error, match=message):
        SDARAttack(TINY).fit(_access(victim, tiny_splits, **overrides))


def test_config_errors() -> None:
    with pytest.raises(InputError, match="sdar iterations"):
        SDARConfig.from_dict({"iterations": 0})
    with pytest.raises(InputError, match="sdar lambda1"):
        SDARConfig(lambda1=-1.0)
    with pytest.raises(InputError, match="unknown sdar option"):
        SDARConfig.from_dict({"epochs": 3})
    assert SDARConfig().scaled(0.5).iterations == SDARConfig().iterations // 2
    with pytest.raises(RuntimeError, match="fit"):
        SDARAttack().reconstruct(torch.zeros(1, 16, 28, 28))


@pytest.mark.slow
def test_sdar_on_fashion_mnist_reconstructs_the_observed_images(fashion_cut1) -> None:
    splits, model, x, z = fashion_cut1
    access = Access(
        spec=model.spec, activation_shape=tuple(z.shape[1:]), head=model.head, aux=splits.aux.head(5000), arch=model.arch, cut=model.cut,
        num_classes=10, observed=z,
    )
    attack = SDARAttack(SDARConfig(iterations=300)).fit(access)
    assert attack.budget()["simulator_aux_accuracy"] > 0.7
    assert ssim(x, attack.reconstruct(z)).mean() > 0.3
