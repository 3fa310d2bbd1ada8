"""Property-based fuzzing of the metrics: any shape, dtype and value; bad input is a ValueError."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from splitleak.metrics import distance_correlation, mse, psnr, ssim, u_distance_correlation_sqr

FUZZ = settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = st.sampled_from([torch.float32, torch.float64])


@st.composite
def image_pairs(draw: st.DrawFn, min_side: int = 11) -> tuple[torch.Tensor, torch.Tensor]:
    b, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h, w = draw(st.integers(min_side, 20)), draw(st.integers(min_side, 20))
    dtype = draw(DTYPES)
    elements = st.floats(0.0, 1.0, allow_nan=False, width=32)
    x = draw(hnp.arrays(np.float32, (b, c, h, w), elements=elements))
    y = draw(hnp.arrays(np.float32, (b, c, h, w), elements=elements))
    return torch.from_numpy(x).to(dtype), torch.from_numpy(y).to(dtype)


@FUZZ
@given(image_pairs())
def test_ssim_properties(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = pair
    tol = 1e-4 if x.dtype == torch.float32 else 1e-10
    same = ssim(x, x)
    assert same.shape == (x.shape[0],) and same.dtype == x.dtype
    torch.testing.assert_close(same, torch.ones_like(same), rtol=0, atol=tol)
    xy, yx = ssim(x, y), ssim(y, x)
    torch.testing.assert_close(xy, yx, rtol=0, atol=tol)  # symmetric
    assert bool(torch.isfinite(xy).all()) and bool(((xy >= -1 - tol) & (xy <= 1 + tol)).all())


@FUZZ
@given(image_pairs(min_side=1))
def test_mse_and_psnr_properties(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = pair
    m, p = mse(x, y), psnr(x, y)
    assert m.shape == p.shape == (x.shape[0],) and m.dtype == p.dtype == x.dtype
    torch.testing.assert_close(m, mse(y, x))
    torch.testing.assert_close(p, psnr(y, x))
    assert bool((m >= 0).all()) and bool((mse(x, x) == 0).all())
    assert bool(torch.isposinf(psnr(x, x)).all())
    finite = m > 0
    assert bool((p[finite] >= 0).all())  # images in [0, 1]: MSE <= 1, so PSNR >= 0 dB
    torch.testing.assert_close(psnr(2 * x, 2 * y, data_range=2.0), p, rtol=1e-4, atol=1e-4)


@st.composite
def sample_sets(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    n = draw(st.integers(4, 30))
    dx, dz = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    dtype = draw(DTYPES)
    elements = st.floats(-100, 100, allow_nan=False, allow_subnormal=False, width=32).map(lambda v: v if abs(v) > 1e-6 else 0.0)
    x = draw(hnp.arrays(np.float64, (n, dx), elements=elements))
    z = draw(hnp.arrays(np.float64, (n, dz), elements=elements))
    return torch.from_numpy(x).to(dtype), torch.from_numpy(z).to(dtype)


@FUZZ
@given(sample_sets())
def test_dcor_properties(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, z = pair
    v = distance_correlation(x, z)
    assert v.ndim == 0 and v.dtype == x.dtype and math.isfinite(v.item())
    assert 0.0 <= v.item() <= 1.0
    tol = 1e-3 if x.dtype == torch.float32 else 1e-9
    assert abs(v.item() - distance_correlation(z, x).item()) <= tol  # symmetric
    u = u_distance_correlation_sqr(x, z).item()
    assert math.isfinite(u) and u <= 1.0 + tol
    # dCor(x, x) = 1 for any x that is not constant (up to the estimator's rounding)
    assume(bool((x != x[:1]).any()))
    spread = (x - x.mean(0)).abs().max().item()
    assume(spread > 1e-3)
    assert distance_correlation(x, x).item() == pytest.approx(1.0, abs=max(tol, 1e-6))


BAD_PAIRS = st.sampled_from(
    [
        (torch.rand(2, 1, 12, 12), torch.rand(2, 1, 12, 13)),  # shape mismatch
        (torch.rand(1, 12, 12), torch.rand(1, 12, 12)),  # 3-D for ssim
        (torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)),  # smaller than the SSIM window
        (torch.zeros(0, 1, 12, 12), torch.zeros(0, 1, 12, 12)),  # empty batch
        (torch.ones(1, 1, 12, 12, dtype=torch.uint8), torch.ones(1, 1, 12, 12, dtype=torch.uint8)),  # integers
        (torch.full((1, 1, 12, 12), float("nan")), torch.rand(1, 1, 12, 12)),
        (torch.rand(1, 1, 12, 12), torch.full((1, 1, 12, 12), float("-inf"))),
        (torch.rand(3), torch.rand(3)),  # no batch axis for the image metrics
        ("not a tensor", torch.rand(1, 1, 12, 12)),
    ]
)


@settings(max_examples=30, deadline=None, database=None)
@given(BAD_PAIRS, st.sampled_from(["ssim", "psnr", "mse", "dcor", "dcor_u2"]))
def test_bad_inputs_are_value_errors(pair, name: str) -> None:
    x, y = pair
    fn = {"ssim": ssim, "psnr": psnr, "mse": mse, "dcor": distance_correlation, "dcor_u2": u_distance_correlation_sqr}[name]
    try:
        out = fn(x, y)
    except ValueError:
        return
    # the pair was fine for this metric (e.g. an 8x8 image for mse, 12x13 rows for dcor): a clean number
    assert isinstance(out, torch.Tensor) and bool(torch.isfinite(out).all() | torch.isposinf(out).all())


@FUZZ
@given(n=st.integers(0, 3), d=st.integers(1, 4))
def test_dcor_needs_enough_samples(n: int, d: int) -> None:
    x = torch.rand(n, d, dtype=torch.float64)
    if n < 2:
        with pytest.raises(ValueError, match="at least 2 samples"):
            distance_correlation(x, x)
    with pytest.raises(ValueError, match="at least 4 samples"):
        u_distance_correlation_sqr(x, x)
