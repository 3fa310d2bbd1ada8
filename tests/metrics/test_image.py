"""SSIM / PSNR / MSE: against scikit-image, properties, validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage import data
from skimage.metrics import mean_squared_error as sk_mse
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim

from splitleak.metrics.image import mse, psnr, ssim

SSIM_TOL = 1e-4  # the contract; float64 is checked far tighter


def ref_ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0, sigma: float = 1.5, **kw) -> np.ndarray:
    """skimage's Wang et al. configuration, one sample at a time."""
    return np.array(
        [
            sk_ssim(
                a[i], b[i], gaussian_weights=True, sigma=sigma, use_sample_covariance=False,
                data_range=data_range, channel_axis=0, **kw,
            )
            for i in range(a.shape[0])
        ]
    )


def noisy_pair(shape: tuple[int, ...], seed: int, noise: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.random(shape)
    return a, np.clip(a + rng.normal(0.0, noise, shape), 0.0, 1.0)


def camera_batch(size: int, noise_levels: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """A real image crop and noisy copies of it, [B, 1, size, size] in [0, 1]."""
    rng = np.random.default_rng(0)
    crop = data.camera()[120 : 120 + size, 220 : 220 + size].astype(np.float64) / 255.0
    a = np.repeat(crop[None, None], len(noise_levels), axis=0)
    sd = np.asarray(noise_levels)[:, None, None, None]
    return a, np.clip(a + rng.normal(0.0, 1.0, a.shape) * sd, 0.0, 1.0)


def t(a: np.ndarray, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.tensor(a, dtype=dtype)


# --- SSIM against scikit-image -------------------------------------------------------------


@pytest.mark.parametrize(
    "shape", [(4, 1, 28, 28), (4, 3, 32, 32), (3, 1, 11, 11), (2, 2, 15, 40), (2, 3, 64, 48)]
)
@pytest.mark.parametrize("seed", [0, 1])
def test_ssim_matches_skimage_random(shape: tuple[int, ...], seed: int) -> None:
    a, b = noisy_pair(shape, seed)
    expected = ref_ssim(a, b)
    np.testing.assert_allclose(ssim(t(a), t(b)).numpy(), expected, rtol=0, atol=1e-10)
    got32 = ssim(t(a, torch.float32), t(b, torch.float32)).double().numpy()
    np.testing.assert_allclose(got32, expected, rtol=0, atol=SSIM_TOL)


@pytest.mark.parametrize("size", [28, 32, 64])
def test_ssim_matches_skimage_on_noisy_real_image(size: int) -> None:
    a, b = camera_batch(size, [0.0, 0.01, 0.05, 0.1, 0.3, 1.0])
    expected = ref_ssim(a, b)
    assert expected[0] == pytest.approx(1.0) and expected[-1] < 0.3  # the pairs span the range
    np.testing.assert_allclose(ssim(t(a), t(b)).numpy(), expected, rtol=0, atol=1e-10)
    got32 = ssim(t(a, torch.float32), t(b, torch.float32)).double().numpy()
    np.testing.assert_allclose(got32, expected, rtol=0, atol=SSIM_TOL)


def test_ssim_matches_skimage_on_flat_and_bright_images() -> None:
    """Near-constant bright images are where float32 E[x^2] - E[x]^2 would cancel."""
    rng = np.random.default_rng(3)
    a = 0.95 + 1e-3 * rng.random((4, 3, 32, 32))
    b = 0.95 + 1e-3 * rng.random((4, 3, 32, 32))
    a[0], b[0] = 0.2, 0.7  # two constant images: only the luminance term differs
    expected = ref_ssim(a, b)
    np.testing.assert_allclose(ssim(t(a), t(b)).numpy(), expected, rtol=0, atol=1e-10)
    got32 = ssim(t(a, torch.float32), t(b, torch.float32)).double().numpy()
    np.testing.assert_allclose(got32, expected, rtol=0, atol=SSIM_TOL)


def test_ssim_matches_skimage_with_other_data_range_sigma_and_constants() -> None:
    a, b = noisy_pair((3, 3, 30, 30), 5)
    a, b = a * 255.0, b * 255.0
    expected = ref_ssim(a, b, data_range=255.0)
    np.testing.assert_allclose(ssim(t(a), t(b), data_range=255.0).numpy(), expected, atol=1e-10)
    # sigma 1.0 -> skimage's radius int(3.5 * 1.0 + 0.5) = 4, i.e. a 9-tap window
    a, b = noisy_pair((2, 1, 20, 20), 6)
    expected = ref_ssim(a, b, sigma=1.0, K1=0.02, K2=0.05)
    got = ssim(t(a), t(b), win_size=9, sigma=1.0, k1=0.02, k2=0.05).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-10)


def test_ssim_is_not_skimage_default_uniform_window() -> None:
    """Pins the definition: the Gaussian window, not skimage's default 7x7 uniform one."""
    a, b = camera_batch(32, [0.1])
    uniform = sk_ssim(a[0, 0], b[0, 0], data_range=1.0)
    assert abs(ssim(t(a), t(b)).item() - uniform) > 1e-3


def test_ssim_per_sample_independent_of_batch() -> None:
    a, b = noisy_pair((5, 3, 28, 28), 7)
    batched = ssim(t(a), t(b))
    single = torch.cat([ssim(t(a[i : i + 1]), t(b[i : i + 1])) for i in range(5)])
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-12)
    # multichannel SSIM is the mean of the per-channel SSIMs
    per_channel = torch.stack([ssim(t(a[:, c : c + 1]), t(b[:, c : c + 1])) for c in range(3)])
    torch.testing.assert_close(batched, per_channel.mean(dim=0), rtol=0, atol=1e-12)


# --- PSNR and MSE against scikit-image ------------------------------------------------------


@pytest.mark.parametrize("data_range", [1.0, 255.0])
def test_psnr_and_mse_match_skimage(data_range: float) -> None:
    a, b = noisy_pair((6, 3, 32, 32), 11, noise=0.05)
    a, b = a * data_range, b * data_range
    exp_psnr = [sk_psnr(a[i], b[i], data_range=data_range) for i in range(6)]
    exp_mse = [sk_mse(a[i], b[i]) for i in range(6)]
    np.testing.assert_allclose(psnr(t(a), t(b), data_range=data_range).numpy(), exp_psnr, rtol=1e-12)
    np.testing.assert_allclose(mse(t(a), t(b)).numpy(), exp_mse, rtol=1e-12)
    got32 = psnr(t(a, torch.float32), t(b, torch.float32), data_range=data_range).double().numpy()
    np.testing.assert_allclose(got32, exp_psnr, atol=1e-4)


def test_psnr_and_mse_on_real_image() -> None:
    a, b = camera_batch(28, [0.01, 0.1, 0.5])
    np.testing.assert_allclose(
        psnr(t(a), t(b)).numpy(), [sk_psnr(a[i], b[i], data_range=1.0) for i in range(3)], rtol=1e-12
    )


# --- properties ----------------------------------------------------------------------------


def test_identical_images() -> None:
    x = torch.rand(3, 3, 28, 28)
    torch.testing.assert_close(ssim(x, x), torch.ones(3), rtol=0, atol=1e-6)
    assert torch.equal(mse(x, x), torch.zeros(3))
    p = psnr(x, x)
    assert p.shape == (3,) and bool(torch.isposinf(p).all())
    # one identical pair in a batch only makes that sample infinite
    y = x.clone()
    y[1] += 0.01
    p = psnr(x, y)
    assert bool(torch.isposinf(p[[0, 2]]).all()) and bool(torch.isfinite(p[1]))


def test_output_shape_dtype_device_and_no_mutation() -> None:
    for dtype in (torch.float32, torch.float64):
        x, y = torch.rand(4, 1, 28, 28, dtype=dtype), torch.rand(4, 1, 28, 28, dtype=dtype)
        x0, y0 = x.clone(), y.clone()
        for fn in (ssim, psnr, mse):
            out = fn(x, y)
            assert out.shape == (4,) and out.dtype == dtype and out.device == x.device
        assert torch.equal(x, x0) and torch.equal(y, y0)


def test_psnr_and_mse_accept_any_trailing_shape() -> None:
    x, y = torch.rand(5, 784), torch.rand(5, 784)
    torch.testing.assert_close(mse(x, y), mse(x.view(5, 1, 28, 28), y.view(5, 1, 28, 28)))
    torch.testing.assert_close(psnr(x, y), -10 * torch.log10(mse(x, y)), rtol=1e-5, atol=1e-5)


def test_ssim_symmetric_and_ordered_by_noise() -> None:
    a, b = camera_batch(32, [0.02, 0.1, 0.4])
    x, y = t(a), t(b)
    torch.testing.assert_close(ssim(x, y), ssim(y, x), rtol=0, atol=1e-12)
    s = ssim(x, y)
    assert bool((s[:-1] > s[1:]).all())
    p = psnr(x, y)
    assert bool((p[:-1] > p[1:]).all())


def test_ssim_gradient_is_finite() -> None:
    x = torch.rand(2, 3, 16, 16)
    y = torch.rand(2, 3, 16, 16, requires_grad=True)
    ssim(x, y).sum().backward()
    assert y.grad is not None and bool(torch.isfinite(y.grad).all()) and y.grad.abs().sum() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu() -> None:
    a, b = noisy_pair((4, 3, 32, 32), 2)
    for fn in (ssim, psnr, mse):
        out = fn(t(a).cuda(), t(b).cuda())
        assert out.is_cuda
        torch.testing.assert_close(out.cpu(), fn(t(a), t(b)))


# --- hypothesis ----------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, database=None)
@given(
    b=st.integers(1, 3),
    c=st.integers(1, 3),
    h=st.integers(11, 24),
    w=st.integers(11, 24),
    noise=st.sampled_from([0.0, 1e-3, 0.05, 0.5]),
    seed=st.integers(0, 2**32 - 1),
)
def test_hypothesis_image_metrics(b: int, c: int, h: int, w: int, noise: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.random((b, c, h, w))
    if rng.random() < 0.3:
        a = np.round(a)  # binary images, MNIST-like extremes
    bb = np.clip(a + rng.normal(0.0, noise, a.shape), 0.0, 1.0)
    s = ssim(t(a), t(bb))
    np.testing.assert_allclose(s.numpy(), ref_ssim(a, bb), atol=1e-10)
    assert bool(((s >= -1) & (s <= 1 + 1e-12)).all())
    m = mse(t(a), t(bb))
    assert bool((m >= 0).all())
    p = psnr(t(a), t(bb))
    finite = m > 0
    torch.testing.assert_close(p[finite], -10 * torch.log10(m[finite]))
    assert bool(torch.isposinf(p[~finite]).all())
    s32 = ssim(t(a, torch.float32), t(bb, torch.float32)).double()
    torch.testing.assert_close(s32, s, rtol=0, atol=SSIM_TOL)


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "y", "match"),
    [
        (torch.rand(1, 28, 28), torch.rand(1, 28, 28), "4-D"),
        (torch.rand(2, 1, 28, 28), torch.rand(2, 1, 28, 27), "shape mismatch"),
        (torch.rand(2, 1, 10, 28), torch.rand(2, 1, 10, 28), "smaller than"),
        (torch.full((1, 1, 12, 12), float("nan")), torch.rand(1, 1, 12, 12), "NaN or infinite"),
        (torch.rand(1, 1, 12, 12), torch.full((1, 1, 12, 12), float("inf")), "NaN or infinite"),
        (torch.ones(1, 1, 12, 12, dtype=torch.uint8), torch.ones(1, 1, 12, 12, dtype=torch.uint8), "floating"),
        (np.zeros((1, 1, 12, 12)), torch.rand(1, 1, 12, 12), "torch.Tensor"),
        (torch.rand(0, 1, 12, 12), torch.rand(0, 1, 12, 12), "empty"),
    ],
)
def test_ssim_validation(x: torch.Tensor, y: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ssim(x, y)


def test_parameter_validation() -> None:
    x = torch.rand(1, 1, 12, 12)
    for kwargs in ({"win_size": 10}, {"win_size": 0}, {"sigma": 0.0}, {"data_range": 0.0}, {"k1": -0.1}):
        with pytest.raises(ValueError):
            ssim(x, x, **kwargs)
    with pytest.raises(ValueError, match="data_range"):
        psnr(x, x, data_range=-1.0)
    for fn in (psnr, mse):
        with pytest.raises(ValueError, match="shape mismatch"):
            fn(torch.rand(2, 3), torch.rand(2, 4))
        with pytest.raises(ValueError, match="NaN"):
            fn(torch.rand(2, 3), torch.tensor([[0.0, 1.0, float("nan")]] * 2))
        with pytest.raises(ValueError, match="batched"):
            fn(torch.rand(3), torch.rand(3))
