"""Blocked dCor at scale: against dcor and the small-n functions, block-size invariance, jackknife."""

from __future__ import annotations

import json
import math

import dcor
import numpy as np
import pytest
import torch

from splitleak.metrics.dependence import distance_correlation, u_distance_correlation_sqr
from splitleak.metrics.dependence_scale import DcorEstimate, block_size_for, dcor_statistics

TOL64 = 1e-9  # float64 Gram: observed <= ~1e-13 here
TOL32 = 1e-5  # float32 Gram: observed <= ~1e-6 here


def flat(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.reshape(a.shape[0], -1))


def cases(n: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 12))
    return {
        "linear+noise": (x, x[:, :5] @ rng.normal(size=(5, 4)) + rng.normal(size=(n, 4))),
        "square": (x, x**2),  # non-linear: squared distances would miss it
        "independent": (x, rng.normal(size=(n, 6))),
        "image_vs_activation": (rng.random((n, 1, 6, 6)), rng.random((n, 3, 2, 2))),
        "offset_and_scale": (1e4 + 1e-2 * x, 1e-3 * np.abs(x[:, :3])),
    }


@pytest.mark.parametrize("n", [4, 5, 17, 150])
def test_matches_dcor_and_small_n(n: int) -> None:
    for name, (x, z) in cases(n, seed=n).items():
        ci = None if n < 5 else 0.95
        got = dcor_statistics(torch.tensor(x), torch.tensor(z), ci=ci, n_groups=n)
        assert got.v == pytest.approx(float(dcor.distance_correlation(flat(x), flat(z))), abs=TOL64), name
        assert got.u2 == pytest.approx(float(dcor.u_distance_correlation_sqr(flat(x), flat(z))), abs=TOL64), name
        tx, tz = torch.tensor(x), torch.tensor(z)
        assert got.v == pytest.approx(distance_correlation(tx, tz).item(), abs=TOL64), name
        assert got.u2 == pytest.approx(u_distance_correlation_sqr(tx, tz).item(), abs=TOL64), name
        # float32 Gram products (inputs stay float64: float32 inputs would round x = 1e4 + 1e-2 u)
        got32 = dcor_statistics(tx, tz, ci=ci, precision="float32")
        assert got32.v == pytest.approx(got.v, abs=TOL32), name
        assert got32.u2 == pytest.approx(got.u2, abs=TOL32), name


def test_matches_small_n_at_1000_with_many_blocks() -> None:
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.random((1000, 40)))
    z = torch.relu(x @ torch.tensor(rng.normal(size=(40, 30))) - 1) + 0.1 * torch.tensor(rng.normal(size=(1000, 30)))
    got = dcor_statistics(x, z, memory_budget=32 * 250**2)  # blocks of 250: 4 x 4
    assert got.block_size == 250
    assert got.v == pytest.approx(distance_correlation(x, z).item(), abs=TOL64)
    assert got.u2 == pytest.approx(u_distance_correlation_sqr(x, z).item(), abs=TOL64)
    got32 = dcor_statistics(x.float(), z.float(), precision="float32")
    assert abs(got32.v - got.v) < TOL32 and abs(got32.u2 - got.u2) < TOL32


def test_independent_of_block_size() -> None:
    rng = np.random.default_rng(2)
    x = torch.tensor(rng.normal(size=(97, 9)))
    z = torch.tensor(np.sin(rng.normal(size=(97, 9)) + x.numpy()))
    ref = dcor_statistics(x, z, n_groups=10)
    for budget in (32 * 3**2, 32 * 5**2, 32 * 13**2, 32 * 60**2, 2**30):  # blocks of 3, 5, 13, 60, 97
        got = dcor_statistics(x, z, n_groups=10, memory_budget=budget)
        assert got.block_size == block_size_for(97, budget)
        for field in ("v", "u2", "v_se", "u2_se"):
            assert getattr(got, field) == pytest.approx(getattr(ref, field), abs=1e-12), (budget, field)
    assert block_size_for(10**6, 2**40) == 2048  # capped


def test_delete_one_jackknife_matches_brute_force() -> None:
    """n_groups = n is the delete-one jackknife; recompute it with dcor on the n subsamples."""
    rng = np.random.default_rng(3)
    n = 30
    x = rng.normal(size=(n, 4))
    z = np.tanh(x[:, :2]) + 0.3 * rng.normal(size=(n, 2))
    got = dcor_statistics(torch.tensor(x), torch.tensor(z), n_groups=n, memory_budget=32 * 7**2)
    for field, ref_fn in (("v", dcor.distance_correlation), ("u2", dcor.u_distance_correlation_sqr)):
        loo = np.array([ref_fn(np.delete(x, i, 0), np.delete(z, i, 0)) for i in range(n)])
        se = math.sqrt((n - 1) / n * ((loo - loo.mean()) ** 2).sum())
        assert getattr(got, f"{field}_se") == pytest.approx(se, rel=1e-9)
        low, high = getattr(got, f"{field}_ci")
        t = (high - low) / (2 * se)
        assert t == pytest.approx(2.045, abs=1e-3)  # t quantile, 29 degrees of freedom


def test_group_jackknife_matches_brute_force_unequal_groups() -> None:
    rng = np.random.default_rng(4)
    n, big_g, seed = 47, 6, 11
    x = rng.normal(size=(n, 5))
    z = x[:, :2] ** 2 + 0.5 * rng.normal(size=(n, 2))
    got = dcor_statistics(torch.tensor(x), torch.tensor(z), n_groups=big_g, seed=seed, memory_budget=32 * 10**2)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    sizes = np.full(big_g, n // big_g)
    sizes[: n % big_g] += 1
    starts = np.concatenate([[0], np.cumsum(sizes)])
    for field, ref_fn in (("v", dcor.distance_correlation), ("u2", dcor.u_distance_correlation_sqr)):
        theta = getattr(got, field)
        loo = np.array(
            [ref_fn(np.delete(x, perm[lo:hi], 0), np.delete(z, perm[lo:hi], 0)) for lo, hi in zip(starts, starts[1:])]
        )
        h = n / sizes
        pseudo = h * theta - (h - 1) * loo
        theta_j = big_g * theta - ((1 - sizes / n) * loo).sum()
        se = math.sqrt((((pseudo - theta_j) ** 2) / (h - 1)).sum() / big_g)
        assert getattr(got, f"{field}_se") == pytest.approx(se, rel=1e-9)


def test_nonlinear_and_independent() -> None:
    rng = np.random.default_rng(5)
    x = torch.tensor(rng.uniform(-1, 1, size=(800, 1)))
    sq = dcor_statistics(x, x**2)
    assert sq.v > 0.4 and sq.u2 > 0.15 and sq.u2_ci[0] > 0.1  # dependent, though uncorrelated
    ind = dcor_statistics(torch.tensor(rng.normal(size=(800, 20))), torch.tensor(rng.normal(size=(800, 5))))
    assert ind.u2_ci[0] < 0 < ind.u2_ci[1]
    same = dcor_statistics(x, 3 * x - 1)
    assert same.v == pytest.approx(1.0, abs=1e-12) and same.u2 == pytest.approx(1.0, abs=1e-12)


def test_ci_contains_estimate_and_shrinks_with_n() -> None:
    rng = np.random.default_rng(6)
    widths = []
    for n in (100, 400, 1600):
        x = rng.normal(size=(n, 6))
        z = np.tanh(x[:, :3]) + 0.5 * rng.normal(size=(n, 3))
        e = dcor_statistics(torch.tensor(x), torch.tensor(z))
        assert e.v_ci[0] <= e.v <= e.v_ci[1] and e.u2_ci[0] <= e.u2 <= e.u2_ci[1]
        assert 0.0 <= e.v_ci[0] and e.v_ci[1] <= 1.0
        widths.append((e.v_ci[1] - e.v_ci[0], e.u2_ci[1] - e.u2_ci[0]))
    for (v0, u0), (v1, u1) in zip(widths, widths[1:]):
        assert v1 < 0.75 * v0 and u1 < 0.75 * u0  # ~1/sqrt(n): halves per 4x n


def test_coverage_quick() -> None:
    """~95% of intervals from independent draws contain the target (quick version; the full study
    is ``python -m benchmarks.dcor_scale --coverage``). u2 is unbiased, so the mean over draws
    approximates the population dCor^2; v's target is the mean V-statistic at this n."""
    gen = torch.Generator().manual_seed(7)
    draws = []
    for r in range(120):  # coverage 0.95-0.97 for seeds 7-9; binomial sd 0.02
        x = torch.randn(60, 5, generator=gen, dtype=torch.float64)
        z = torch.tanh(1.5 * x[:, :2]) + 0.5 * torch.randn(60, 2, generator=gen, dtype=torch.float64)
        draws.append(dcor_statistics(x, z, n_groups=20, seed=r))
    for field in ("v", "u2"):
        target = float(np.mean([getattr(e, field) for e in draws]))
        covered = np.mean([getattr(e, f"{field}_ci")[0] <= target <= getattr(e, f"{field}_ci")[1] for e in draws])
        assert 0.88 <= covered <= 1.0, (field, covered)


def test_result_is_plain_and_json_able() -> None:
    rng = np.random.default_rng(8)
    x = torch.tensor(rng.random((50, 1, 4, 4)), dtype=torch.float32)
    x_hat = (x + 0.1 * torch.tensor(rng.random((50, 1, 4, 4)), dtype=torch.float32)).requires_grad_()
    e = dcor_statistics(x, x_hat)  # originals vs reconstructions, any rank, grad-tracking input
    assert isinstance(e, DcorEstimate) and e.n == 50 and e.precision == "float64"
    d = json.loads(json.dumps(e.to_dict()))
    assert d["v"] == e.v and d["u2_ci"] == list(e.u2_ci) and d["n_groups"] == 50
    assert all(isinstance(d[k], float) for k in ("v", "u2", "v_se", "u2_se", "ci_level"))
    no_ci = dcor_statistics(x, x_hat, ci=None)
    assert no_ci.v == e.v and no_ci.v_ci is None and no_ci.ci_method == "none"
    with pytest.raises(AttributeError):
        e.v = 0.0  # type: ignore[misc]


def test_does_not_modify_inputs_and_seed_only_moves_ci() -> None:
    rng = np.random.default_rng(9)
    x = torch.tensor(rng.normal(size=(64, 3)))
    z = torch.tensor(rng.normal(size=(64, 2))) + x[:, :2]
    xc, zc = x.clone(), z.clone()
    a, b = dcor_statistics(x, z, n_groups=8, seed=0), dcor_statistics(x, z, n_groups=8, seed=1)
    assert torch.equal(x, xc) and torch.equal(z, zc)
    assert a.v == pytest.approx(b.v, abs=1e-13) and a.u2 == pytest.approx(b.u2, abs=1e-13)
    assert a.v_se != b.v_se


def test_degenerate_inputs() -> None:
    x = torch.tensor([[0.1], [0.1], [0.1], [0.1], [0.1]], dtype=torch.float64)
    z = torch.arange(5.0, dtype=torch.float64)[:, None]
    e = dcor_statistics(x, z)
    assert (e.v, e.u2, e.v_ci, e.u2_ci) == (0.0, 0.0, (0.0, 0.0), (0.0, 0.0))
    # U-centred distance matrix vanishes (distances u_i + u_j): u2 = 0, as dcor
    e = dcor_statistics(torch.tensor([[0.0], [1.0], [1.0], [1.0]]), torch.tensor([[1.0], [2.0], [5.0], [3.0]]), ci=None)
    assert e.u2 == 0.0
    assert e.v == pytest.approx(float(dcor.distance_correlation(np.array([0.0, 1, 1, 1]), np.array([1.0, 2, 5, 3]))))


@pytest.mark.parametrize(
    ("x", "z", "kwargs", "match"),
    [
        (np.zeros((5, 2)), torch.zeros(5, 2), {}, "torch.Tensor"),
        (torch.zeros(5, 2, dtype=torch.long), torch.zeros(5, 2), {}, "floating-point"),
        (torch.tensor(1.0), torch.zeros(5, 2), {}, "sample dimension"),
        (torch.rand(5, 2), torch.rand(6, 2), {}, "5 samples but z has 6"),
        (torch.rand(3, 2), torch.rand(3, 2), {"ci": None}, "at least 4"),
        (torch.rand(5, 0), torch.rand(5, 2), {}, "no features"),
        (torch.tensor([[1.0], [float("nan")], [0.0], [2.0], [3.0]]), torch.rand(5, 1), {}, "NaN or infinite"),
        (torch.rand(5, 1), torch.tensor([[1.0], [float("inf")], [0.0], [2.0], [3.0]]), {}, "NaN or infinite"),
        (torch.rand(4, 2), torch.rand(4, 2), {}, "leave-group-out"),
        (torch.rand(7, 2), torch.rand(7, 2), {"n_groups": 2}, "leave-group-out"),
        (torch.rand(8, 2), torch.rand(8, 2), {"n_groups": 1}, "n_groups"),
        (torch.rand(8, 2), torch.rand(8, 2), {"ci": 1.0}, "ci must be"),
        (torch.rand(8, 2), torch.rand(8, 2), {"ci": True}, "ci must be"),
        (torch.rand(8, 2), torch.rand(8, 2), {"memory_budget": 0}, "memory_budget"),
        (torch.rand(8, 2), torch.rand(8, 2), {"precision": "float16"}, "precision"),
    ],
)
def test_validation(x: object, z: object, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dcor_statistics(x, z, **kwargs)  # type: ignore[arg-type]
