import copy

import pytest
import torch
from torch import nn

from splitleak.attacks import Access, ThreatModelError
from splitleak.attacks._optim import total_variation
from splitleak.attacks.rmle import RMLEAttack, RMLEConfig
from splitleak.data import InputSpec
from splitleak.defenses.noise import AdditiveNoise
from splitleak.metrics import ssim
from splitleak.models import SplitModel, get_architecture, load_checkpoint


def _access(model, splits, **overrides) -> Access:
    with torch.no_grad():
        z_shape = tuple(model.client(splits.test.x[:1]).shape[1:])
    values = dict(
        spec=model.spec, activation_shape=z_shape, query=lambda x: model(x)[1], encoder=model, head=model.head,
        aux=splits.aux, arch=model.arch, cut=model.cut, num_classes=10,
    )
    values.update(overrides)
    return Access(**values)


def test_total_variation_is_zero_on_flat_images_and_per_sample() -> None:
    flat = torch.full((2, 1, 8, 8), 0.3)
    stripes = torch.zeros(1, 1, 8, 8)
    stripes[..., ::2] = 1.0
    tv = total_variation(torch.cat([flat, stripes]))
    assert tv.shape == (3,) and tv[:2].abs().max() == 0 and tv[2] == pytest.approx(1.0)


def test_rmle_inverts_a_shallow_cut_without_touching_the_model(tiny_checkpoint, tiny_splits) -> None:
    model = load_checkpoint(tiny_checkpoint).model
    before = copy.deepcopy(model.state_dict())
    x = tiny_splits.test.x[:32]
    with torch.no_grad():
        z = model.client(x)
    attack = RMLEAttack(RMLEConfig(steps=60, lr=0.1, tv_weight=0.01)).fit(_access(model, tiny_splits))
    x_hat = attack.reconstruct(z)
    assert x_hat.shape == x.shape and x_hat.min() >= 0 and x_hat.max() <= 1
    assert ssim(x, x_hat).mean() > 0.9  # cut 1 (conv16 + ReLU) of an undefended model
    assert ssim(x, torch.full_like(x, 0.5)).mean() < 0.3  # the start point is far from it
    assert attack.history[-1] < 0.1 * attack.history[0]
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert attack.budget()["steps"] == 60 and attack.budget()["objective_end"] == attack.history[-1]


def test_rmle_targets_the_noiseless_encoder(tiny_checkpoint, tiny_splits) -> None:
    model = load_checkpoint(tiny_checkpoint).model
    noisy = SplitModel(model.encoder, model.head, model.spec, transform=AdditiveNoise(0.05, "gaussian"), arch="small-cnn", cut=1)
    x = tiny_splits.test.x[:16]
    torch.manual_seed(0)
    with torch.no_grad():
        z = noisy.client(x)
    x_hat = RMLEAttack(RMLEConfig(steps=40, lr=0.1, tv_weight=0.01)).fit(_access(noisy, tiny_splits)).reconstruct(z)
    assert ssim(x, x_hat).mean() > 0.7  # light noise: still recognisable, and the run is deterministic
    again = RMLEAttack(RMLEConfig(steps=40, lr=0.1, tv_weight=0.01)).fit(_access(noisy, tiny_splits)).reconstruct(z)
    assert torch.equal(x_hat, again)


def test_chunks_do_not_change_the_result() -> None:
    torch.manual_seed(0)
    encoder, head = get_architecture("small-cnn").build((1, 28, 28), 10, 2)
    model = SplitModel(encoder, head, InputSpec(shape=(1, 28, 28)), arch="small-cnn", cut=2).eval()
    x = torch.rand(6, 1, 28, 28)
    with torch.no_grad():
        z = model.client(x)
    access = Access(spec=model.spec, activation_shape=tuple(z.shape[1:]), encoder=model)
    whole = RMLEAttack(RMLEConfig(steps=10, batch_size=6)).fit(access).reconstruct(z)
    split = RMLEAttack(RMLEConfig(steps=10, batch_size=4)).fit(access).reconstruct(z)
    torch.testing.assert_close(whole, split, atol=1e-4, rtol=0)


def test_value_range_and_normalisation_of_the_spec_are_respected() -> None:
    torch.manual_seed(0)
    spec = InputSpec(shape=(3, 32, 32), value_range=(-1.0, 1.0), mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.5))
    encoder, head = get_architecture("cifar-cnn").build(spec.shape, 10, 1)
    model = SplitModel(encoder, head, spec, arch="cifar-cnn", cut=1).eval()
    x = torch.rand(4, *spec.shape) * 2 - 1
    with torch.no_grad():
        z = model.client(x)
    x_hat = RMLEAttack(RMLEConfig(steps=30, lr=0.1)).fit(Access(spec=spec, activation_shape=tuple(z.shape[1:]), encoder=model)).reconstruct(z)
    assert x_hat.shape == x.shape and x_hat.min() >= -1 and x_hat.max() <= 1 and x_hat.min() < -0.5
    assert (x_hat - x).abs().mean() < 0.5 * x.abs().mean()  # closer to x than the grey start (0)


def test_a_plain_module_is_taken_as_the_client_function() -> None:
    spec = InputSpec(shape=(1, 8, 8))
    x = torch.rand(3, 1, 8, 8)
    x_hat = RMLEAttack(RMLEConfig(steps=150, lr=0.05, tv_weight=0.0)).fit(Access(spec=spec, activation_shape=(1, 8, 8), encoder=nn.Identity())).reconstruct(x)
    torch.testing.assert_close(x_hat, x, atol=2e-2, rtol=0)


def test_missing_weights_and_bad_configs_fail_clearly(tiny_checkpoint, tiny_splits) -> None:
    model = load_checkpoint(tiny_checkpoint).model
    with pytest.raises(ThreatModelError, match="rmle.*encoder's weights"):
        RMLEAttack().fit(_access(model, tiny_splits, encoder=None))
    with pytest.raises(RuntimeError, match="fit"):
        RMLEAttack().reconstruct(torch.zeros(1, 16, 28, 28))
    with pytest.raises(ValueError, match="rmle steps"):
        RMLEConfig.from_dict({"steps": 0})
    with pytest.raises(ValueError, match="rmle tv_weight"):
        RMLEConfig(tv_weight=float("nan"))
    with pytest.raises(ValueError, match="unknown rmle option"):
        RMLEConfig.from_dict({"iterations": 3})
    assert RMLEConfig.from_dict({"steps": 7}).steps == 7


@pytest.mark.slow
def test_rmle_recovers_fashion_mnist_at_the_shallowest_cut(fashion_cut1) -> None:
    splits, model, x, z = fashion_cut1
    x_hat = RMLEAttack().fit(_access(model, splits)).reconstruct(z)
    assert ssim(x, x_hat).mean() > 0.9


def test_the_objective_history_covers_every_reconstruct_call_since_fit() -> None:
    torch.manual_seed(0)
    encoder, head = get_architecture("small-cnn").build((1, 28, 28), 10, 2)
    model = SplitModel(encoder, head, InputSpec(shape=(1, 28, 28)), arch="small-cnn", cut=2).eval()
    with torch.no_grad():
        z = model.client(torch.rand(6, 1, 28, 28))
    access = Access(spec=model.spec, activation_shape=tuple(z.shape[1:]), encoder=model)
    whole = RMLEAttack(RMLEConfig(steps=3, batch_size=2)).fit(access)
    whole.reconstruct(z)
    parts = RMLEAttack(RMLEConfig(steps=3, batch_size=2)).fit(access)
    parts.reconstruct(z[:4])
    parts.reconstruct(z[4:])  # as a streamed evaluation calls it: chunk by chunk
    assert parts.history == pytest.approx(whole.history, rel=1e-6) and parts.history[1] < parts.history[0]
    assert parts.fit(access).history == [] and parts.budget()["objective_start"] is None  # a new fit starts over
