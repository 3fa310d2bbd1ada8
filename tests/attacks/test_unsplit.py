import pytest
import torch

from splitleak.attacks import Access, ThreatModelError
from splitleak.attacks.unsplit import UnSplitAttack, UnSplitConfig
from splitleak.metrics import ssim
from splitleak.models import load_checkpoint

TINY = UnSplitConfig(outer_steps=8, input_steps=10, model_steps=10)


def _access(model, **overrides) -> Access:
    """All UnSplit gets: the spec, the activation shape and the architecture (no weights, no data)."""
    values = dict(spec=model.spec, activation_shape=(16, 28, 28), arch="small-cnn", cut=1, num_classes=10)
    values.update(overrides)
    return Access(**values)


@pytest.fixture(scope="module")
def observed(tiny_checkpoint, tiny_splits):
    model = load_checkpoint(tiny_checkpoint).model
    x = tiny_splits.test.x[:24]
    with torch.no_grad():
        return model, x, model.client(x)


def test_unsplit_lowers_its_objective_and_beats_the_grey_start(observed) -> None:
    model, x, z = observed
    attack = UnSplitAttack(TINY).fit(_access(model))
    x_hat = attack.reconstruct(z)
    assert x_hat.shape == x.shape and x_hat.min() >= 0 and x_hat.max() <= 1
    assert len(attack.history) == TINY.outer_steps + 1
    assert attack.history[-1] < 0.5 * attack.history[0]
    assert ssim(x, x_hat).mean() > ssim(x, torch.full_like(x, 0.5)).mean() + 0.2
    budget = attack.budget()
    assert budget["outer_steps"] == 8 and budget["objective_end"] == attack.history[-1]


def test_chunks_share_one_clone_and_calls_do_not(observed) -> None:
    model, _, z = observed
    attack = UnSplitAttack(UnSplitConfig(outer_steps=2, input_steps=3, model_steps=3, batch_size=10)).fit(_access(model))
    first = attack.reconstruct(z)  # three chunks: 10, 10, 4
    assert first.shape[0] == len(z)
    torch.testing.assert_close(attack.reconstruct(z), first)  # each call starts from the fitted clone


def test_same_seed_same_result_other_seed_other_result(observed) -> None:
    model, _, z = observed
    config = UnSplitConfig(outer_steps=2, input_steps=3, model_steps=3)
    runs = [UnSplitAttack(config).fit(_access(model, seed=s)).reconstruct(z[:4]) for s in (0, 0, 1)]
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"arch": None}, ThreatModelError, "unsplit.*architecture and cut"),
        ({"cut": None}, ThreatModelError, "architecture and cut"),
        ({"cut": 3}, ValueError, "cut 3 gives activations"),
    ],
)
def test_it_needs_the_architecture(observed, overrides, error, message) -> None:
    with pytest.raises(error, match=message):
        UnSplitAttack(TINY).fit(_access(observed[0], **overrides))


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="unsplit outer_steps"):
        UnSplitConfig.from_dict({"outer_steps": 0})
    with pytest.raises(ValueError, match="unsplit model_lr"):
        UnSplitConfig(model_lr=float("inf"))
    with pytest.raises(ValueError, match="unknown unsplit option"):
        UnSplitConfig.from_dict({"lambda_tv": 0.1})
    with pytest.raises(RuntimeError, match="fit"):
        UnSplitAttack().reconstruct(torch.zeros(1, 16, 28, 28))


@pytest.mark.slow
def test_unsplit_recovers_some_of_fashion_mnist_at_the_shallowest_cut(fashion_cut1) -> None:
    """Measured 0.54-0.56 at seed 0 today; the attack table of an earlier release had 0.71, and
    what changed is not identified (the outcome moves with the clone's initialisation and the
    activations' scale, docs/attacks.md)."""
    _, model, x, z = fashion_cut1
    attack = UnSplitAttack().fit(_access(model))
    assert ssim(x, attack.reconstruct(z)).mean() > 0.5


def test_activation_rms_makes_it_invariant_to_the_victims_scale(observed) -> None:
    """The clone's last layer absorbs any positive scale of z, so the attack should not depend on
    it; as observed (activation_rms 0) it does, which made noise-trained encoders (larger
    activations) look leakier than undefended ones (docs/attacks.md)."""
    model, _, z = observed
    config = UnSplitConfig(outer_steps=2, input_steps=3, model_steps=3)
    as_observed = [UnSplitAttack(config).fit(_access(model)).reconstruct(c * z[:6]) for c in (1.0, 4.0)]
    assert not torch.equal(*as_observed)
    invariant = UnSplitConfig(outer_steps=2, input_steps=3, model_steps=3, activation_rms=1.0)
    runs = [UnSplitAttack(invariant).fit(_access(model)).reconstruct(c * z[:6]) for c in (1.0, 4.0, 0.25)]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])
    assert not torch.equal(runs[0], as_observed[0])


def test_reconstruct_works_under_no_grad(observed) -> None:
    model, _, z = observed
    attack = UnSplitAttack(UnSplitConfig(outer_steps=1, input_steps=2, model_steps=2)).fit(_access(model))
    with torch.no_grad():
        x_hat = attack.reconstruct(z[:4])
    assert torch.equal(x_hat, attack.reconstruct(z[:4]))
