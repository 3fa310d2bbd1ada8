"""Per-sample image similarity metrics: SSIM, PSNR and MSE.

All functions take two batches ``x`` (reference) and ``y`` (reconstruction) of the same shape,
batch first, and return one value per sample as a 1-D tensor ``[B]`` on the input's device, in
the input's floating dtype. They never mutate their inputs and are differentiable.

SSIM follows Wang et al. (2004) with an 11-tap Gaussian window (sigma 1.5), K1 = 0.01,
K2 = 0.03 and population (co)variances; it equals
``skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=data_range, channel_axis=0)``.
See ``docs/metrics.md`` for the exact definitions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from splitleak._validate import all_finite

__all__ = ["mse", "psnr", "ssim"]


def _check_pair(x: Tensor, y: Tensor, *, name: str, ndim: int | None = None) -> None:
    """Raise ValueError unless x and y are finite floating tensors of one shape, batch first."""
    for label, t in (("x", x), ("y", y)):
        if not isinstance(t, Tensor):
            raise ValueError(f"{name}: {label} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise ValueError(f"{name}: {label} must be a floating-point tensor, got {t.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim}-D tensors [B, C, H, W], got shape {tuple(x.shape)}")
    if x.ndim < 2:
        raise ValueError(f"{name}: expected batched tensors [B, ...], got shape {tuple(x.shape)}")
    if x.shape != y.shape:
        raise ValueError(f"{name}: shape mismatch {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.shape[0] == 0 or x[0].numel() == 0:
        raise ValueError(f"{name}: empty input of shape {tuple(x.shape)}")
    if x.device != y.device:
        raise ValueError(f"{name}: x on {x.device} but y on {y.device}")
    if not all_finite(x, y):
        raise ValueError(f"{name}: inputs contain NaN or infinite values")


def _check_data_range(data_range: float, name: str) -> None:
    if not (math.isfinite(data_range) and data_range > 0):
        raise ValueError(f"{name}: data_range must be a positive finite number, got {data_range}")


def _gaussian_window(win_size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """1-D normalised Gaussian taps, built as scipy.ndimage.gaussian_filter builds them."""
    radius = (win_size - 1) // 2
    pos = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    taps = torch.exp(-0.5 * (pos / sigma) ** 2)
    return (taps / taps.sum()).to(dtype)


def _valid_filter_matrix(n: int, taps: Tensor) -> Tensor:
    """Banded ``[n - k + 1, n]`` matrix M so that ``M @ v`` is the 'valid' correlation of v with taps."""
    k = taps.numel()
    m = n - k + 1
    cols = torch.arange(m, device=taps.device)[:, None] + torch.arange(k, device=taps.device)[None, :]
    return torch.zeros(m, n, dtype=taps.dtype, device=taps.device).scatter(1, cols, taps.expand(m, k))


def _separable_valid_filter(stack: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """'Valid' separable filtering of ``[B, K, H, W]`` -> the TRANSPOSED maps ``[B, K, W', H']``.

    Two plain matmuls over all images at once (far faster than grouped conv or batched
    28x28 matmuls on CPU); the output is exactly the region skimage keeps after reflect-padding
    and cropping. Maps are left transposed: SSIM only averages them.
    """
    b, k, h, w = stack.shape
    along_w = stack.reshape(b * k * h, w) @ cols.T  # -> [B*K*H, W']
    w_out = along_w.shape[1]
    along_h = along_w.reshape(b * k, h, w_out).transpose(1, 2).reshape(b * k * w_out, h) @ rows.T  # -> [B*K*W', H']
    return along_h.reshape(b, k, w_out, -1)


def ssim(
    x: Tensor,
    y: Tensor,
    *,
    data_range: float = 1.0,
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """Per-sample mean SSIM of two batches ``[B, C, H, W]`` -> ``[B]`` (Wang et al. 2004).

    Local statistics use a separable Gaussian window of ``win_size`` taps (radius
    ``(win_size - 1) // 2``) and standard deviation ``sigma``; variances are population
    variances. The SSIM map is averaged over the positions where the window lies entirely
    inside the image (skimage's reflect-pad-then-crop gives the same positions), then over
    channels. Filtered in float64 for float64 input, else float32; returned in the input dtype.
    """
    _check_pair(x, y, name="ssim", ndim=4)
    _check_data_range(data_range, "ssim")
    if not (isinstance(win_size, int) and win_size >= 1 and win_size % 2 == 1):
        raise ValueError(f"ssim: win_size must be a positive odd integer, got {win_size!r}")
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"ssim: sigma must be positive, got {sigma}")
    if k1 < 0 or k2 < 0:
        raise ValueError(f"ssim: k1 and k2 must be non-negative, got {k1}, {k2}")
    b, c, h, w = x.shape
    if h < win_size or w < win_size:
        raise ValueError(f"ssim: images of {h}x{w} are smaller than the {win_size}x{win_size} window")

    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    taps = _gaussian_window(win_size, sigma, work, x.device)
    rows, cols = _valid_filter_matrix(h, taps), _valid_filter_matrix(w, taps)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    chunk = max(1, _CHUNK_VALUES // (c * h * w))  # cache-sized pieces: several times faster on CPU
    parts = [_ssim_chunk(x[i : i + chunk].to(work), y[i : i + chunk].to(work), rows, cols, c1, c2) for i in range(0, b, chunk)]
    return torch.cat(parts).to(x.dtype)


_CHUNK_VALUES = 2**17  # pixels per chunk (x 5 filtered maps, float32: ~2.6 MB; fastest here)


def _ssim_chunk(x: Tensor, y: Tensor, rows: Tensor, cols: Tensor, c1: float, c2: float) -> Tensor:
    """Mean SSIM per sample of a chunk [b, C, H, W] (see `ssim`)."""
    c = x.shape[1]
    # Subtracting each image's mean first keeps E[x^2] - E[x]^2 from cancelling catastrophically in float32.
    mean_x = x.mean(dim=(2, 3), keepdim=True)
    mean_y = y.mean(dim=(2, 3), keepdim=True)
    xc, yc = x - mean_x, y - mean_y
    stack = torch.cat([xc, yc, xc * xc, yc * yc, xc * yc], dim=1)  # -> [b, 5C, H, W]
    m_x, m_y, e_xx, e_yy, e_xy = _separable_valid_filter(stack, rows, cols).split(c, dim=1)  # [b, C, W', H'] each
    mu_x, mu_y = m_x + mean_x, m_y + mean_y
    var_x = e_xx - m_x * m_x
    var_y = e_yy - m_y * m_y
    cov_xy = e_xy - m_x * m_y
    num = (2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return (num / den).mean(dim=(1, 2, 3))


def mse(x: Tensor, y: Tensor) -> Tensor:
    """Per-sample mean squared error of two batches ``[B, ...]`` -> ``[B]``."""
    _check_pair(x, y, name="mse")
    return (x - y).pow(2).flatten(1).mean(dim=1)


def psnr(x: Tensor, y: Tensor, *, data_range: float = 1.0) -> Tensor:
    """Per-sample PSNR in dB, ``10 log10(data_range**2 / MSE)``, of ``[B, ...]`` -> ``[B]``.

    Identical images (MSE = 0) give ``+inf``; callers aggregating PSNR must decide how to treat
    it (``docs/metrics.md``). The MSE is accumulated in float64.
    """
    _check_pair(x, y, name="psnr")
    _check_data_range(data_range, "psnr")
    err = (x.to(torch.float64) - y.to(torch.float64)).pow(2).flatten(1).mean(dim=1)
    return (10 * torch.log10(data_range**2 / err)).to(x.dtype)
