import math

import pytest
import torch
from torch import nn

from splitleak._random import build, generator
from splitleak.attacks import ATTACKS, Access, ThreatModelError
from splitleak.attacks.fora import Critic, FORAAttack, FORAConfig, Substitute, gradient_penalty, mk_mmd
from splitleak.data import ArraySplit, InputSpec
from splitleak.defenses import make_defense
from splitleak.metrics import ssim
from splitleak.models.architectures import get_architecture
from splitleak.models.split import SplitModel

TINY = FORAConfig(substitute_steps=4, decoder_epochs=1, batch_size=16, width=8, critic_width=8, decoder_width=16)


def _reference_mk_mmd(s: torch.Tensor, t: torch.Tensor, alphas: tuple[float, ...]) -> float:
    """The authors' estimator written out: index matrix over the joint batch, minus their constant."""
    f = torch.cat([s.flatten(1), t.flatten(1)]).double()
    n = len(s)
    d2 = [[float(((f[i] - f[j]) ** 2).sum()) for j in range(2 * n)] for i in range(2 * n)]
    mean = sum(map(sum, d2)) / (2 * n) ** 2
    total = 0.0
    for i in range(2 * n):
        for j in range(2 * n):
            k = sum(math.exp(-d2[i][j] / (2 * a * mean)) for a in alphas)
            same = (i < n) == (j < n)
            if same and i != j:
                total += k / (n * (n - 1))
            elif not same:
                total -= k / n**2
    return total


def test_mk_mmd_matches_the_authors_estimator_and_is_scale_free() -> None:
    g = generator(0, "test", "mmd")
    s, t = torch.randn(5, 3, 2, 2, generator=g), torch.randn(5, 3, 2, 2, generator=g) + 0.5
    alphas = (0.125, 0.25, 0.5, 1.0, 2.0)
    assert mk_mmd(s, t).item() == pytest.approx(_reference_mk_mmd(s, t, alphas), abs=1e-5)
    assert mk_mmd(10 * s, 10 * t).item() == pytest.approx(mk_mmd(s, t).item(), abs=1e-5)  # bandwidth follows the data


def test_mk_mmd_separates_distributions_and_passes_gradients() -> None:
    g = generator(0, "test", "mmd2")
    a, b = torch.randn(64, 20, generator=g), torch.randn(64, 20, generator=g)
    far = (torch.randn(64, 20, generator=g) * 3 + 2).requires_grad_(True)
    assert abs(mk_mmd(a, b).item()) < 0.1 < mk_mmd(far, a).item()
    mk_mmd(far, a).backward()
    assert far.grad is not None and torch.isfinite(far.grad).all() and far.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="same size"):
        mk_mmd(a[:3], b[:4])


def test_gradient_penalty_is_zero_for_a_unit_slope_critic() -> None:
    g = generator(0, "test", "gp")
    critic = nn.Sequential(nn.Flatten(), nn.Linear(12, 1, bias=False))
    with torch.no_grad():
        critic[1].weight.copy_(torch.ones(1, 12) / math.sqrt(12))
    fake, real = torch.randn(8, 3, 2, 2, generator=g), torch.randn(8, 3, 2, 2, generator=g)
    assert gradient_penalty(critic, fake, real, torch.Generator().manual_seed(0)).item() == pytest.approx(0.0, abs=1e-10)
    with torch.no_grad():
        critic[1].weight.mul_(3)
    assert gradient_penalty(critic, fake, real, torch.Generator().manual_seed(0)).item() == pytest.approx(4.0, rel=1e-5)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("z_shape", [(16, 28, 28), (32, 14, 14), (64, 7, 7), (128,), (8, 5, 5)])
def test_substitute_and_critic_follow_the_activation_shape(channels, z_shape) -> None:
    spec = InputSpec(shape=(channels, 28, 28), value_range=(-1.0, 1.0))
    for relu_out in (True, False):
        z = Substitute(spec, z_shape, width=8, relu_out=relu_out)(torch.rand(3, channels, 28, 28) * 2 - 1)
        assert z.shape == (3, *z_shape) and ((z >= 0).all() or not relu_out)
    assert Critic(z_shape, width=8)(torch.randn(3, *z_shape)).shape == (3,)


def _victim(shape: tuple[int, int, int], cut: int, defense: str = "none") -> SplitModel:
    arch = get_architecture("small-cnn")
    transform = make_defense(defense).transform(generator(0, "test", "defense"))
    return build(lambda: SplitModel(*arch.build(shape, 10, cut), InputSpec(shape=shape), transform=transform), generator(0, "test", "victim")).eval()


def _query_free_access(model: SplitModel, n_aux: int = 48, n_obs: int = 24, **overrides) -> Access:
    """Only what FORA may use: the spec, unlabelled aux images, the observed activations."""
    g = generator(0, "test", "data")
    x = torch.rand(n_aux + n_obs, *model.spec.shape, generator=g)
    with torch.no_grad():
        z = model.client(x[n_aux:])
    aux = ArraySplit(x[:n_aux], torch.zeros(n_aux, dtype=torch.int64), torch.arange(n_aux))
    values = dict(spec=model.spec, activation_shape=tuple(z.shape[1:]), aux=aux, labelled=False, observed=z)
    values.update(overrides)
    return Access(**values)


@pytest.mark.parametrize(
    ("shape", "cut", "defense"),
    [((1, 8, 8), 2, "none"), ((3, 8, 8), 1, "noise"), ((1, 8, 8), 4, "none"), ((3, 8, 8), 4, "noise")],
)
def test_fora_runs_query_free_on_maps_vectors_channels_and_noise(shape, cut, defense) -> None:
    model = _victim(shape, cut, defense)
    access = _query_free_access(model)
    attack = FORAAttack(TINY).fit(access)
    x_hat = attack.reconstruct(access.observed)
    assert x_hat.shape == (len(access.observed), *shape) and x_hat.min() >= 0 and x_hat.max() <= 1
    relu_out = bool((access.observed >= 0).all())
    assert isinstance(attack.substitute.net[-1], nn.ReLU) == relu_out  # noise makes activations negative
    budget = attack.budget()
    assert budget["substitute_steps"] == 4 and budget["final_mk_mmd"] is not None and budget["final_train_mse"] is not None


def test_fora_needs_the_observed_activations_and_checks_them() -> None:
    model = _victim((1, 8, 8), 2)
    with pytest.raises(ThreatModelError, match="observed"):
        FORAAttack(TINY).fit(_query_free_access(model, observed=None))
    with pytest.raises(ThreatModelError, match="auxiliary data"):
        FORAAttack(TINY).fit(_query_free_access(model, aux=None))
    good = _query_free_access(model)
    with pytest.raises(ValueError, match="observed activations have shape"):
        FORAAttack(TINY).fit(_query_free_access(model, observed=good.observed[:, :3]))
    with pytest.raises(ValueError, match="at least 2"):
        FORAAttack(TINY).fit(_query_free_access(model, observed=good.observed[:1]))
    bad = good.observed.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        FORAAttack(TINY).fit(_query_free_access(model, observed=bad))


def test_fora_is_registered_query_free_and_label_free() -> None:
    tm = ATTACKS["fora"].threat_model
    assert tm.aux_data and not (tm.query_access or tm.encoder_weights or tm.server_head or tm.aux_labels or tm.architecture)


def test_same_seed_same_attack_other_seed_other_attack() -> None:
    model = _victim((1, 8, 8), 2)
    z = _query_free_access(model).observed
    runs = [FORAAttack(TINY).fit(_query_free_access(model, seed=s)).reconstruct(z) for s in (0, 0, 1)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="fora substitute_steps"):
        FORAConfig.from_dict({"substitute_steps": 0})
    with pytest.raises(ValueError, match="fora mmd_weight"):
        FORAConfig(mmd_weight=1.5)
    with pytest.raises(ValueError, match="unknown fora option"):
        FORAConfig.from_dict({"epochs": 3})
    with pytest.raises(RuntimeError, match="fit"):
        FORAAttack().reconstruct(torch.zeros(1, 32, 14, 14))


@pytest.mark.slow
def test_fora_on_fashion_mnist_aligns_the_substitute_and_reconstructs(fashion_cut1) -> None:
    """Undefended cut 1, 3,000 unlabelled aux images, the 200 test activations observed."""
    splits, model, x, z = fashion_cut1
    aux = ArraySplit(splits.aux.x[:3000], splits.aux.y[:3000], splits.aux.indices[:3000])
    access = Access(spec=model.spec, activation_shape=tuple(z.shape[1:]), aux=aux, labelled=False, observed=z)
    attack = FORAAttack(FORAConfig(substitute_steps=600, decoder_epochs=5)).fit(access)
    assert attack.history[-1] < 0.5 * attack.history[0]  # the substitute's features moved toward the observed ones
    x_hat = attack.reconstruct(z)
    assert x_hat.shape == x.shape and torch.isfinite(x_hat).all()
    assert ssim(x, x_hat).mean() > 0.4  # query-free, yet recognisable (He et al.: < 0.3 is not)


@pytest.fixture(autouse=True)
def _two_threads() -> None:
    """One thread here (overrides conftest's two): these tiny fits are latency-bound, and on a
    shared 2-core machine two threads wait on each other (docs: field notes, oversubscription)."""
    torch.set_num_threads(1)
