import copy
import dataclasses

import pytest
import torch

from splitleak.attacks import Access, ThreatModelError
from splitleak.attacks.decoder import DecoderAttack
from splitleak.attacks.shadow import ShadowAttack, ShadowConfig
from splitleak.metrics import ssim
from splitleak._random import generator
from splitleak.attacks._optim import attack_generator, fresh_client
from splitleak.training import TrainConfig, build_split_model, train

TINY = ShadowConfig(shadow_epochs=3, decoder_epochs=2, batch_size=32, lr=3e-3, decoder_width=16, rmle_steps=30)


@pytest.fixture(scope="module")
def victim(tiny_splits):
    """A tiny-digits model cut 2 whose head is worth attacking (~90% accuracy; the shared
    tiny_checkpoint's is ~20%). At cut 1 even a random conv16 layer feeds this head well
    enough to classify ~90% of the digits, so cut 1 could not tell a trained shadow apart."""
    model = train(TrainConfig(cut=2, epochs=8, batch_size=32, seed=0), tiny_splits).model
    model.zero_grad(set_to_none=True)  # the trainer leaves its last gradients behind
    return model


def _access(model, splits, **overrides) -> Access:
    """What evaluate hands a query-free attacker: head, aux and architecture, no encoder, no queries."""
    with torch.no_grad():
        z_shape = tuple(model.client(splits.aux.x[:1]).shape[1:])
    values = dict(spec=model.spec, activation_shape=z_shape, head=model.head, aux=splits.aux, arch=model.arch, cut=model.cut, num_classes=10)
    values.update(overrides)
    return Access(**values)


def _head_accuracy(head, client, split) -> float:
    with torch.no_grad():
        return (head(client(split.x)).argmax(1) == split.y).float().mean().item()


def test_the_attackers_networks_do_not_start_from_the_victims_initial_weights(victim, tiny_splits) -> None:
    access = _access(victim, tiny_splits)
    victim_init = build_split_model(TrainConfig(cut=2, seed=0), tiny_splits)  # the trainer's "train/init" stream
    same_stream = fresh_client(access, "shadow", "test", generator(0, "train", "init"))
    assert torch.equal(victim_init.encoder[0][0].weight, same_stream.encoder[0][0].weight)  # the hazard
    own = fresh_client(access, "shadow", "test", attack_generator(0, "shadow", "init"))
    assert not torch.equal(victim_init.encoder[0][0].weight, own.encoder[0][0].weight)
    seeds = {attack_generator(0, a, s).initial_seed() for a in ("shadow", "unsplit", "decoder") for s in ("init", "order")}
    assert len(seeds) == 6 and attack_generator(0, "shadow", "init").initial_seed() == attack_generator(0, "shadow", "init").initial_seed()


def test_shadow_learns_under_the_frozen_head_and_decodes(victim, tiny_splits) -> None:
    model = victim
    head_before = copy.deepcopy(model.head.state_dict())
    access = _access(model, tiny_splits)
    untrained = _head_accuracy(model.head, fresh_client(access, "shadow", "test", attack_generator(access.seed, "shadow", "init")).client, tiny_splits.aux)
    attack = ShadowAttack(TINY).fit(access)
    assert attack.history[-1] < attack.history[0]
    assert untrained < 0.4 and attack.aux_accuracy > 0.7  # chance is 0.1; the head itself never moved
    assert attack.aux_accuracy == pytest.approx(_head_accuracy(model.head, attack.shadow.client, tiny_splits.aux))
    assert all(torch.equal(head_before[k], v) for k, v in model.head.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    x = tiny_splits.test.x[:32]
    with torch.no_grad():
        x_hat = attack.reconstruct(model.client(x))
    assert x_hat.shape == x.shape and x_hat.min() >= 0 and x_hat.max() <= 1
    budget = attack.budget()
    assert budget["shadow_epochs"] == TINY.shadow_epochs and budget["shadow_aux_accuracy"] == attack.aux_accuracy
    assert budget["inversion"] == "rmle" and budget["objective_end"] < budget["objective_start"]


def test_the_decoder_inversion_is_still_there(victim, tiny_splits) -> None:
    attack = ShadowAttack(dataclasses.replace(TINY, inversion="decoder")).fit(_access(victim, tiny_splits))
    assert isinstance(attack.inverse, DecoderAttack) and attack.budget()["final_train_mse"] is not None
    x = tiny_splits.test.x[:8]
    with torch.no_grad():
        assert attack.reconstruct(victim.client(x)).shape == x.shape


def test_same_seed_same_attack_other_seed_other_attack(victim, tiny_splits) -> None:
    model = victim
    config = ShadowConfig(shadow_epochs=1, decoder_epochs=1, batch_size=64, decoder_width=16, rmle_steps=5)
    z = torch.rand(4, 32, 14, 14)
    runs = [ShadowAttack(config).fit(_access(model, tiny_splits, seed=s)).reconstruct(z) for s in (0, 0, 1)]
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"head": None}, ThreatModelError, "shadow.*server head"),
        ({"aux": None}, ThreatModelError, "auxiliary data"),
        ({"arch": None}, ThreatModelError, "architecture and cut"),
        ({"cut": None}, ThreatModelError, "architecture and cut"),
        ({"cut": 1}, ValueError, "cut 1 gives activations"),
        ({"arch": "resnet-9000"}, ValueError, "unknown architecture"),
    ],
)
def test_missing_capabilities_fail_clearly(victim, tiny_splits, overrides, error, message) -> None:
    with pytest.raises(error, match=message):
        ShadowAttack(TINY).fit(_access(victim, tiny_splits, **overrides))


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="shadow shadow_epochs"):
        ShadowConfig.from_dict({"shadow_epochs": 0})
    with pytest.raises(ValueError, match="shadow lr"):
        ShadowConfig(lr=-1.0)
    with pytest.raises(ValueError, match="unknown shadow option"):
        ShadowConfig.from_dict({"epochs": 3})
    with pytest.raises(ValueError, match="shadow inversion must be one of"):
        ShadowConfig(inversion="magic")
    with pytest.raises(RuntimeError, match="fit"):
        ShadowAttack().reconstruct(torch.zeros(1, 16, 28, 28))


@pytest.mark.slow
def test_shadow_on_fashion_mnist_fools_the_head_and_inverts_itself(fashion_cut1) -> None:
    splits, model, x, z = fashion_cut1
    attack = ShadowAttack().fit(_access(model, splits))
    assert attack.aux_accuracy > 0.7  # the frozen head accepts the shadow (the victim: ~0.84)
    with torch.no_grad():
        assert ssim(x, attack.reconstruct(attack.shadow.client(x))).mean() > 0.8  # the shadow itself inverts
    x_hat = attack.reconstruct(z)  # the victim's activations (docs/attacks.md)
    assert x_hat.shape == x.shape and torch.isfinite(x_hat).all()
