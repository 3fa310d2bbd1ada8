"""Distance correlation: against the dcor package, properties, gradients, validation."""

from __future__ import annotations

import dcor
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from splitleak.metrics.dependence import as_rows, distance_correlation, u_distance_correlation_sqr

TOL64 = 1e-6  # the contract in float64 (observed ~1e-13)
TOL32 = 1e-4


def flat(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.reshape(a.shape[0], -1))


def ref_v(x: np.ndarray, z: np.ndarray, method: str = "auto") -> float:
    return float(dcor.distance_correlation(flat(x), flat(z), method=method))


def ref_u(x: np.ndarray, z: np.ndarray, method: str = "auto") -> float:
    return float(dcor.u_distance_correlation_sqr(flat(x), flat(z), method=method))


def t(a: np.ndarray, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.tensor(a, dtype=dtype)


def pairs(n: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 20))
    return {
        "random": (x, x[:, :7] + rng.normal(size=(n, 7))),
        "square": (x, x**2),
        "independent": (x, rng.normal(size=(n, 7))),
        "abs_1d": (x[:, 0], np.abs(x[:, 0])),
        "image_vs_activation": (rng.random((n, 1, 8, 8)), rng.random((n, 4, 3, 3))),
    }


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8, 33, 128, 300])
def test_matches_dcor(n: int) -> None:
    for name, (x, z) in pairs(n, seed=n).items():
        got = distance_correlation(t(x), t(z))
        assert got.ndim == 0 and got.dtype == torch.float64
        assert got.item() == pytest.approx(ref_v(x, z), abs=TOL64), name
        got32 = distance_correlation(t(x, torch.float32), t(z, torch.float32)).item()
        assert got32 == pytest.approx(ref_v(x, z), abs=TOL32), name
        if n > 3:
            assert u_distance_correlation_sqr(t(x), t(z)).item() == pytest.approx(ref_u(x, z), abs=TOL64), name
            got32 = u_distance_correlation_sqr(t(x, torch.float32), t(z, torch.float32)).item()
            assert got32 == pytest.approx(ref_u(x, z), abs=TOL32), name


def test_squared_distance_pitfall() -> None:
    """z = x^2 for x symmetric about 0: linearly uncorrelated, strongly dependent.

    With squared distances the statistic is sqrt(RV coefficient), ~0 here; real dCor is ~0.5.
    """
    x = np.linspace(-1.0, 1.0, 101)[:, None]
    z = x**2
    rv_like = _squared_distance_dcor(t(x), t(z))
    assert rv_like < 0.05  # what the pitfall would report
    got = distance_correlation(t(x), t(z)).item()
    assert got == pytest.approx(ref_v(x, z), abs=TOL64)
    assert got > 0.4
    # also multivariate
    rng = np.random.default_rng(0)
    xm = rng.normal(size=(200, 5))
    got = distance_correlation(t(xm), t(xm**2)).item()
    assert got == pytest.approx(ref_v(xm, xm**2), abs=TOL64)
    assert abs(got - _squared_distance_dcor(t(xm), t(xm**2))) > 0.1


def _squared_distance_dcor(x: torch.Tensor, z: torch.Tensor) -> float:
    """The buggy variant (squared Euclidean distances), for the pitfall test only."""

    def centred(a: torch.Tensor) -> torch.Tensor:
        d = torch.cdist(a, a) ** 2
        return d - d.mean(0, keepdim=True) - d.mean(1, keepdim=True) + d.mean()

    a, b = centred(x), centred(z)
    return float(((a * b).mean().clamp(min=0) / ((a * a).mean() * (b * b).mean()).sqrt()).sqrt())


def test_v_statistic_bias_and_u_statistic() -> None:
    """Independent data: V shrinks with n (biased), U is ~0 at every n."""
    gen = torch.Generator().manual_seed(0)
    v_small, v_large, u_vals = [], [], []
    for _ in range(5):
        v_small.append(distance_correlation(torch.randn(8, 100, generator=gen), torch.randn(8, 100, generator=gen)))
        x, z = torch.randn(256, 100, generator=gen), torch.randn(256, 100, generator=gen)
        v_large.append(distance_correlation(x, z))
        u_vals.append(u_distance_correlation_sqr(x, z))
    assert torch.stack(v_small).mean() > 0.9  # field notes: ~0.99 at n = 8
    assert torch.stack(v_large).mean() < torch.stack(v_small).mean() - 0.1
    assert abs(torch.stack(u_vals).mean().item()) < 0.01


# --- properties ----------------------------------------------------------------------------


def test_invariances_and_symmetry() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(50, 6, dtype=torch.float64, generator=gen)
    z = torch.tanh(x[:, :3]) + 0.3 * torch.randn(50, 3, dtype=torch.float64, generator=gen)
    base = distance_correlation(x, z)
    base_u = u_distance_correlation_sqr(x, z)
    # 1e-6 * x + 1e3 itself keeps only ~9 significant digits of x, hence atol 1e-6;
    # extreme scales must neither underflow nor overflow (dcor itself returns 0 at 1e-200)
    cases = [(s, b) for s in (1e-6, 1e-3, 7.0, 1e4) for b in (0.0, -3.0, 1e3)]
    cases += [(1e-200, 0.0), (1e-150, 0.0), (1e150, 0.0), (1e200, 0.0)]
    for scale, shift in cases:
        for fn, ref in ((distance_correlation, base), (u_distance_correlation_sqr, base_u)):
            torch.testing.assert_close(fn(scale * x + shift, z), ref, rtol=0, atol=TOL64)
            torch.testing.assert_close(fn(x, scale * z + shift), ref, rtol=0, atol=TOL64)
    torch.testing.assert_close(distance_correlation(z, x), base, rtol=0, atol=1e-12)
    torch.testing.assert_close(u_distance_correlation_sqr(z, x), base_u, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_affine_copy_gives_one(dtype: torch.dtype) -> None:
    x = torch.randn(40, 10, dtype=dtype)
    for a, b in ((1.0, 0.0), (3.0, 2.0), (-0.5, 100.0)):
        assert distance_correlation(x, a * x + b).item() == pytest.approx(1.0, abs=1e-5)
        assert u_distance_correlation_sqr(x, a * x + b).item() == pytest.approx(1.0, abs=1e-5)
    # also across shapes: activations that are a reshaped, scaled copy of the input
    assert distance_correlation(x, 2 * x.view(40, 2, 5)).item() == pytest.approx(1.0, abs=1e-5)


def test_degenerate_u_centred_matrix_gives_zero() -> None:
    """x = [0, 1, 1, 1]: distances are additive (d_ij = u_i + u_j), the U-variance is exactly 0."""
    x = torch.tensor([[0.0], [1.0], [1.0], [1.0]], dtype=torch.float64)
    assert float(dcor.u_distance_correlation_sqr(x.numpy(), x.numpy(), method="naive")) == 0.0
    for scale in (1.0, 0.1, 3.7, 1.47816682):
        assert u_distance_correlation_sqr(scale * x, x).item() == 0.0
        assert u_distance_correlation_sqr(scale * x, scale * x).item() == 0.0


def test_constant_input_gives_zero() -> None:
    for value in (0.0, 0.1, 1e4):
        c = torch.full((10, 3), value, requires_grad=True)
        z = torch.randn(10, 2)
        v = distance_correlation(c, z)
        assert v.item() == 0.0 and u_distance_correlation_sqr(c, z).item() == 0.0
        assert distance_correlation(z, c).item() == 0.0
        v.backward()
        assert c.grad is not None and bool(torch.isfinite(c.grad).all())


def test_output_dtype_and_no_mutation() -> None:
    for dtype in (torch.float32, torch.float64):
        x, z = torch.randn(9, 4, dtype=dtype), torch.randn(9, 2, 2, dtype=dtype)
        x0 = x.clone()
        for fn in (distance_correlation, u_distance_correlation_sqr):
            out = fn(x, z)
            assert out.shape == () and out.dtype == dtype
        assert torch.equal(x, x0)


# --- gradients -----------------------------------------------------------------------------


def test_gradcheck() -> None:
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(10, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    z = torch.randn(10, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(distance_correlation, (x, z))
    assert torch.autograd.gradcheck(u_distance_correlation_sqr, (x, z))


def test_float32_gradient_is_accurate_for_offset_relu_activations() -> None:
    """The hand-written backward in float32 agrees with float64 to a few 1e-6 (relative norm),
    also for non-negative, offset activations like a ReLU layer's (which once gave 1e-4)."""
    gen = torch.Generator().manual_seed(7)
    x = torch.rand(128, 784, generator=gen)
    z = torch.relu(torch.randn(128, 2048, generator=gen)) + 3.0
    grads = []
    for dtype in (torch.float32, torch.float64):
        zz = z.to(dtype).clone().requires_grad_()
        distance_correlation(x.to(dtype), zz).backward()
        grads.append(zz.grad.double())
    assert float((grads[0] - grads[1]).norm() / grads[1].norm()) < 2e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradient_finite_with_duplicate_rows(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(32, 1, 8, 8, dtype=dtype, generator=gen)
    x[5] = x[2]
    x[6] = x[2]
    x.requires_grad_()
    z = torch.relu(x.detach().flatten(1)[:, :16] * 2 - 1).clone()
    z[9] = z[8]
    z.requires_grad_()
    for fn in (distance_correlation, u_distance_correlation_sqr):
        x.grad = z.grad = None
        fn(x, z).backward()
        for g in (x.grad, z.grad):
            assert g is not None and bool(torch.isfinite(g).all()) and g.abs().sum() > 0


def test_gradient_lowers_dcor_like_nopeek() -> None:
    """A few gradient steps on dCor (as the NoPeek penalty does) decrease it."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(64, 10, generator=gen)
    w = torch.randn(10, 5, generator=gen, requires_grad=True)
    start = distance_correlation(x, x @ w).item()
    opt = torch.optim.SGD([w], lr=0.5)
    for _ in range(20):
        opt.zero_grad()
        loss = distance_correlation(x, torch.tanh(x @ w))
        loss.backward()
        opt.step()
    assert distance_correlation(x, torch.tanh(x @ w)).item() < start


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu() -> None:
    x, z = torch.randn(64, 20, dtype=torch.float64), torch.randn(64, 5, dtype=torch.float64)
    for fn in (distance_correlation, u_distance_correlation_sqr):
        xc = x.cuda().requires_grad_()
        out = fn(xc, z.cuda())
        out.backward()
        assert out.is_cuda and bool(torch.isfinite(xc.grad).all())
        torch.testing.assert_close(out.cpu(), fn(x, z))


# --- hypothesis ----------------------------------------------------------------------------


@st.composite
def sample_pair(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(4, 24))
    dx, dz = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    # magnitudes 0 or >= 1e-30: dcor's products of squared distances underflow for all-tiny
    # data (it returns 0 for x = z = [0, 1e-136, 1e-136, 1e-136]); extreme scales are tested
    # in test_invariances_and_symmetry instead
    elems = st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False, width=64).map(
        lambda v: v if abs(v) >= 1e-30 else 0.0
    )
    x = draw(hnp.arrays(np.float64, (n, dx), elements=elems))
    z = draw(hnp.arrays(np.float64, (n, dz), elements=elems))
    return x, z


@settings(max_examples=60, deadline=None, database=None)
@given(sample_pair())
def test_hypothesis_dcor(pair: tuple[np.ndarray, np.ndarray]) -> None:
    """Arbitrary values, incl. duplicates and constant columns, against dcor's naive O(n^2) path.

    Why the naive path, and why the tolerance widens on ill-conditioned inputs:
    - dcor's default ("auto") O(n log n) path for 1-D inputs loses precision on constant data
      (it returns 1.82 for x = [0.1] * 4, z = [0, 1, 1, 1]); the naive path returns 0, as we do.
    - dcor's naive path forms each (U-)variance as a difference of sums, with absolute error
      ~1e-15 * mean(d^2); where a variance is tiny its ratio is off by ~1e-15 * mean(d^2) / var
      (x = [1, 1, 0, 0, 0], z = [1e-5, 1, 0, 0, 0]: exact U-dCor^2 = 1, dcor 1.0000013, ours
      1 - 3e-16), so the tolerance is 1e-6 plus that bound.
    - Where an input's U-centred distance matrix vanishes (x = [0, 1, 1, 1]) U-dCor^2 is 0/0:
      we return 0 (test_degenerate_u_centred_matrix_gives_zero); dcor returns noise / noise
      unless its noise happens to be exactly 0. Those cases are only checked for bounds here.
    """
    x, z = pair
    v = distance_correlation(t(x), t(z)).item()
    u = u_distance_correlation_sqr(t(x), t(z)).item()
    assert 0.0 <= v <= 1.0
    assert -1.0 <= u <= 1.0
    if (x == x[:1]).all() or (z == z[:1]).all():
        assert v == 0.0 and u == 0.0
        return
    assert v == pytest.approx(ref_v(x, z, "naive"), abs=TOL64)
    stats = dcor.u_distance_stats_sqr(x, z, method="naive")
    rel_x = abs(float(stats.variance_x)) / _mean_sq_distance(x)
    rel_z = abs(float(stats.variance_y)) / _mean_sq_distance(z)
    if min(rel_x, rel_z) > 1e-12:  # else 0/0 up to dcor's rounding: bounds only
        tol = TOL64 + 1e-13 * (1 / rel_x + 1 / rel_z)
        assert u == pytest.approx(float(stats.correlation_xy), abs=tol)


def _mean_sq_distance(a: np.ndarray) -> float:
    d2 = ((a[:, None, :] - a[None, :, :]) ** 2).sum(-1)
    return float(d2.mean()) or 1.0


@settings(max_examples=30, deadline=None, database=None)
@given(n=st.integers(2, 40), d=st.integers(1, 30), seed=st.integers(0, 2**32 - 1), dup=st.booleans())
def test_hypothesis_dcor_bounded_and_finite_grad(n: int, d: int, seed: int, dup: bool) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen)
    if dup:
        x[-1] = x[0]
    x.requires_grad_()
    z = torch.sin(3 * x.detach()) + 0.1 * torch.randn(n, d, generator=gen)
    v = distance_correlation(x, z)
    assert 0.0 <= v.item() <= 1.0
    v.backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "z", "match"),
    [
        (torch.randn(5, 3), torch.randn(6, 3), "samples"),
        (torch.randn(1, 3), torch.randn(1, 3), "at least 2"),
        (torch.tensor([[0.0], [float("nan")], [1.0]]), torch.randn(3, 1), "NaN or infinite"),
        (torch.randn(3, 1), torch.tensor([[0.0], [float("inf")], [1.0]]), "NaN or infinite"),
        (torch.arange(6).view(3, 2), torch.randn(3, 2), "floating"),
        (torch.tensor(1.0), torch.tensor(2.0), "0-d"),
        (torch.randn(3, 0), torch.randn(3, 2), "no features"),
        ([[1.0], [2.0]], torch.randn(2, 1), "torch.Tensor"),
    ],
)
def test_validation(x: torch.Tensor, z: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        distance_correlation(x, z)


def test_u_statistic_needs_four_samples() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        u_distance_correlation_sqr(torch.randn(3, 2), torch.randn(3, 2))
    assert torch.isfinite(u_distance_correlation_sqr(torch.randn(4, 2), torch.randn(4, 2)))


def test_as_rows_flattens_in_memory_order_without_copying() -> None:
    z = torch.randn(6, 4, 5, 3).contiguous(memory_format=torch.channels_last)
    rows = as_rows(z)
    assert rows.shape == (6, 60) and rows.data_ptr() == z.data_ptr()
    torch.testing.assert_close(rows, z.permute(0, 2, 3, 1).reshape(6, -1))
    x = torch.randn(6, 7)
    torch.testing.assert_close(distance_correlation(x, z), distance_correlation(x, z.contiguous().reshape(6, -1)))
    assert as_rows(torch.randn(6, 2, 3)).is_contiguous()


@pytest.mark.parametrize("offset", [0.0, 1.0, 50.0])
def test_the_fast_and_the_centred_gram_path_agree(offset: float, monkeypatch) -> None:
    """Uncentred Gram matrix (small offset: no pass over the rows) and centred, rescaled rows
    (large offset, huge or tiny values) give the same dCor and gradient."""
    from splitleak.metrics import dependence

    gen = torch.Generator().manual_seed(11)
    x = torch.rand(64, 49, generator=gen, dtype=torch.float64)
    z = torch.relu(torch.randn(64, 300, generator=gen, dtype=torch.float64)) + offset
    fast_rows = dependence._gram_distances(z)[1]
    assert (fast_rows is z) == (offset < 2)  # R = 1.5 and 6.8 take the fast path, 50 does not
    results = []
    for limit in (1e12, 0.0):  # force each path
        monkeypatch.setattr(dependence, "_OFFSET_LIMIT", limit)
        zz = z.clone().requires_grad_()
        value = distance_correlation(x, zz)
        value.backward()
        results.append((value.item(), zz.grad))
    (v_fast, g_fast), (v_centred, g_centred) = results
    assert v_fast == pytest.approx(v_centred, abs=1e-12)
    assert float((g_fast - g_centred).norm() / g_centred.norm()) < 1e-9
    monkeypatch.undo()
    for scale in (1e30, 1e-30):  # squares overflow / underflow float32: the rescaled path, same dCor
        got = distance_correlation(x.float(), (z * scale).float()).item()
        assert got == pytest.approx(v_centred, abs=1e-5)
