import pytest
import torch

from splitleak.attacks import ATTACKS, Access, DecoderAttack, DecoderConfig, ThreatModelError, make_attack
from splitleak.attacks.decoder import Decoder
from splitleak.data import InputSpec
from splitleak.metrics import ssim
from splitleak.models import load_checkpoint


@pytest.mark.parametrize("z_shape", [(16, 28, 28), (32, 14, 14), (64, 7, 7), (128,), (8, 5, 5)])
def test_decoder_shape_follows_the_activation_shape(z_shape) -> None:
    spec = InputSpec(shape=(1, 28, 28))
    out = Decoder(z_shape, spec, width=16)(torch.randn(2, *z_shape))
    assert out.shape == (2, 1, 28, 28) and out.min() >= 0 and out.max() <= 1


def test_decoder_respects_the_value_range() -> None:
    spec = InputSpec(shape=(3, 32, 32), value_range=(-1.0, 1.0))
    out = Decoder((64, 16, 16), spec, width=16)(torch.randn(2, 64, 16, 16) * 10)
    assert out.shape == (2, 3, 32, 32) and out.min() >= -1 and out.max() <= 1 and out.min() < 0


def _access(checkpoint, splits, **overrides) -> Access:
    model = checkpoint.model
    values = dict(spec=model.spec, activation_shape=(16, 28, 28), query=lambda x: model(x)[1], aux=splits.aux)
    values.update(overrides)
    return Access(**values)


def test_decoder_inverts_a_shallow_cut(tiny_checkpoint, tiny_splits) -> None:
    checkpoint = load_checkpoint(tiny_checkpoint)
    attack = DecoderAttack(DecoderConfig(epochs=15, batch_size=32, width=32)).fit(_access(checkpoint, tiny_splits))
    x = tiny_splits.test.x[:64]
    with torch.no_grad():
        x_hat = attack.reconstruct(checkpoint.model.client(x))
    assert x_hat.shape == x.shape
    assert ssim(x, x_hat).mean() > 0.6  # cut 1 of an undefended model: the image is still there
    assert attack.history[-1] < attack.history[0]
    assert attack.budget()["epochs"] == 15


@pytest.mark.parametrize(("missing", "message"), [("query", "query access"), ("aux", "auxiliary data")])
def test_missing_capabilities_fail_with_the_threat_model(tiny_checkpoint, tiny_splits, missing, message) -> None:
    checkpoint = load_checkpoint(tiny_checkpoint)
    with pytest.raises(ThreatModelError, match=message):
        DecoderAttack().fit(_access(checkpoint, tiny_splits, **{missing: None}))


def test_too_little_aux_data_is_named(tiny_checkpoint, tiny_splits) -> None:
    checkpoint = load_checkpoint(tiny_checkpoint)
    with pytest.raises(ThreatModelError, match="at least 16"):
        DecoderAttack().fit(_access(checkpoint, tiny_splits, aux=tiny_splits.aux.head(5)))


def test_registry_and_config_errors() -> None:
    assert ATTACKS["decoder"] is DecoderAttack
    with pytest.raises(ValueError, match="unknown attack"):
        make_attack("telepathy")
    with pytest.raises(ValueError, match="unknown decoder option"):
        make_attack("decoder", {"layers": 3})
    with pytest.raises(ValueError, match="epochs"):
        make_attack("decoder", {"epochs": 0})
    with pytest.raises(RuntimeError, match="fit"):
        DecoderAttack().reconstruct(torch.zeros(1, 4))


def test_aux_activations_beyond_the_memory_budget_are_queried_batch_by_batch(tiny_checkpoint, tiny_splits) -> None:
    checkpoint = load_checkpoint(tiny_checkpoint)
    model = checkpoint.model.eval()
    rows: list[int] = []

    def query(x: torch.Tensor) -> torch.Tensor:
        rows.append(len(x))
        return model(x)[1]

    config, n = DecoderConfig(epochs=2, batch_size=32, width=8), len(tiny_splits.aux)
    held = DecoderAttack(config).fit(_access(checkpoint, tiny_splits, query=query, activation_memory=n * 16 * 28 * 28 * 4))
    assert rows == [n]  # they fit: queried once and held
    rows.clear()
    streamed = DecoderAttack(config).fit(_access(checkpoint, tiny_splits, query=query, activation_memory=n * 16 * 28 * 28 * 4 - 1))
    assert max(rows) == 32 and sum(rows) == 2 * n  # one batch at a time, every epoch
    with torch.no_grad():
        z = model.client(tiny_splits.test.x[:8])
    torch.testing.assert_close(streamed.reconstruct(z), held.reconstruct(z), atol=1e-4, rtol=0)  # the same pairs, the same decoder
