"""Distance correlation between raw inputs and cut-layer activations (set-level metrics).

``distance_correlation`` is the estimator NoPeek (Vepakomma et al. 2020) uses as its training
penalty: Euclidean (not squared) distances, double centring, the biased V-statistic
``dCor = sqrt(dCov^2(X, Z) / sqrt(dVar^2(X) dVar^2(Z)))``. It is differentiable, keeps the
input dtype and device, and equals ``dcor.distance_correlation`` (exponent 1).

The V-statistic is biased upwards for small n (independent 100-d Gaussians give ~0.96 at
n = 32 and ~0.66 at n = 512), so values are only comparable at equal n.
``u_distance_correlation_sqr`` is the bias-corrected (U-centred) squared dCor, equal to
``dcor.u_distance_correlation_sqr``; it is ~0 under independence at any n and may be negative.
See ``docs/metrics.md``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["distance_correlation", "u_distance_correlation_sqr"]

# A squared distance computed as |a|^2 - 2 a.b + |b|^2 carries rounding error of a few machine
# eps times |a|^2 + |b|^2. Pairs at or below this many eps of that are exact zeros (as is the
# diagonal), with zero gradient, so duplicate rows never give NaN gradients. In float64
# this only zeroes distances below ~4e-8 of the points' norms (after centring), in float32
# below ~1e-3 of them (the expansion cannot resolve smaller ones there anyway).
_NOISE_EPS = 8.0


def _flatten_pair(x: Tensor, z: Tensor, *, name: str, min_n: int) -> tuple[Tensor, Tensor]:
    """Validate and flatten both inputs to ``[n, -1]``."""
    for label, t in (("x", x), ("z", z)):
        if not isinstance(t, Tensor):
            raise ValueError(f"{name}: {label} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise ValueError(f"{name}: {label} must be a floating-point tensor, got {t.dtype}")
        if t.ndim == 0:
            raise ValueError(f"{name}: {label} must have a sample dimension, got a 0-d tensor")
    if x.shape[0] != z.shape[0]:
        raise ValueError(f"{name}: x has {x.shape[0]} samples but z has {z.shape[0]}")
    n = x.shape[0]
    if n < min_n:
        raise ValueError(f"{name}: needs at least {min_n} samples, got {n}")
    if x.device != z.device:
        raise ValueError(f"{name}: x on {x.device} but z on {z.device}")
    xf, zf = x.reshape(n, -1), z.reshape(n, -1)
    if xf.shape[1] == 0 or zf.shape[1] == 0:
        raise ValueError(f"{name}: inputs have no features: {tuple(x.shape)}, {tuple(z.shape)}")
    if not (bool(torch.isfinite(xf).all()) and bool(torch.isfinite(zf).all())):
        raise ValueError(f"{name}: inputs contain NaN or infinite values")
    return xf, zf


def _distance_matrix(a: Tensor) -> Tensor:
    """Pairwise Euclidean (not squared) distances ``[n, n]`` of the rows of ``a`` ``[n, d]``.

    dCor is invariant to translating and scaling its inputs, so the rows are first centred and
    scaled to max |entry| = 1 (the scale is detached: by that invariance the gradient is
    unchanged). That keeps the ``|a|^2 - 2 a.b + |b|^2`` expansion accurate and far from
    under/overflow.
    The diagonal and pairs within rounding noise of each other are exact zeros with zero
    gradient; every other entry is ``sqrt`` of a positive number, so gradients stay finite.
    """
    a = a - a.mean(dim=0, keepdim=True)
    scale = a.detach().abs().amax()
    a = a / torch.where(scale > 0, scale, torch.ones_like(scale))
    sq_norms = a.pow(2).sum(dim=1)
    norm_sum = sq_norms[:, None] + sq_norms[None, :]
    sq = norm_sum - 2 * (a @ a.T)
    noise = (_NOISE_EPS * torch.finfo(a.dtype).eps) * norm_sum.detach()
    keep = (sq > noise) & ~torch.eye(a.shape[0], dtype=torch.bool, device=a.device)
    return torch.where(keep, torch.where(keep, sq, torch.ones_like(sq)).sqrt(), torch.zeros_like(sq))


def _double_centred(d: Tensor) -> Tensor:
    return d - d.mean(dim=0, keepdim=True) - d.mean(dim=1, keepdim=True) + d.mean()


def _u_centred(d: Tensor) -> Tensor:
    """U-centring (Szekely and Rizzo 2014); the diagonal is set to zero."""
    n = d.shape[0]
    rows = d.sum(dim=1, keepdim=True) / (n - 2)
    cols = d.sum(dim=0, keepdim=True) / (n - 2)
    total = d.sum() / ((n - 1) * (n - 2))
    off = ~torch.eye(n, dtype=torch.bool, device=d.device)
    return torch.where(off, d - rows - cols + total, torch.zeros_like(d))


def _is_constant(a: Tensor) -> Tensor:
    """0-d bool: all rows identical (distance variance exactly zero)."""
    return (a == a[:1]).all()


def _ratio(cov: Tensor, var_x: Tensor, var_z: Tensor, degenerate: Tensor) -> Tensor:
    """``cov / sqrt(var_x var_z)``, 0 where degenerate or the denominator is 0; finite gradients."""
    denom = (var_x * var_z).abs().sqrt()
    ok = (denom > 0) & ~degenerate
    return torch.where(ok, cov / torch.where(ok, denom, torch.ones_like(denom)), torch.zeros_like(cov))


def _gram_distances(a: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Pairwise distances of the rows of ``a`` [n, d] from one Gram matrix, as `_distance_matrix`.

    Returns (distances [n, n], the rescaled rows, the rescaling factor): rows are centred and
    multiplied by the power of two that brings their largest entry into [1, 2) (exact, and dCor
    is scale-invariant). One pass to centre, one to find the scale, one to rescale, one matmul.
    """
    centred = a - a.mean(dim=0, keepdim=True)
    low, high = torch.aminmax(centred)
    scale = torch.maximum(high, -low)
    inv = torch.where(scale > 0, torch.exp2(-torch.floor(torch.log2(scale))), torch.ones_like(scale))
    scaled = centred * inv
    gram = scaled @ scaled.T
    sq_norms = gram.diagonal()
    norm_sum = sq_norms[:, None] + sq_norms[None, :]
    sq = norm_sum - 2 * gram
    keep = (sq > (_NOISE_EPS * torch.finfo(a.dtype).eps) * norm_sum)
    keep.fill_diagonal_(False)
    return torch.where(keep, sq.clamp_min(0).sqrt(), torch.zeros_like(sq)), scaled, inv


class _DistanceCorrelation(torch.autograd.Function):
    """V-statistic dCor with a hand-written backward: one [n, n] @ [n, d] product per input.

    Autograd through `_distance_matrix` would keep every [n, d] temporary and differentiate the
    Gram matrix a @ a.T with two matmuls. Here, with W = dL/d(squared distances) (symmetric,
    zero where a distance is clamped to 0), dL/da = 4 (diag(W 1) - W) a_c / s^2: a single
    matmul, and the graph Laplacian's zero row sums make the centring's backward a no-op.
    dL/dD is double-centred again before dividing by D: in float32 its rows otherwise sum to
    rounding noise that the Laplacian's diagonal amplifies (gradient error 1e-4 instead of 3e-6).
    """

    @staticmethod
    def forward(ctx, xf: Tensor, zf: Tensor) -> Tensor:  # type: ignore[override]
        dx, sx, inv_x = _gram_distances(xf)
        dz, sz, inv_z = _gram_distances(zf)
        a, b = _double_centred(dx), _double_centred(dz)
        n2 = float(a.shape[0]) ** 2
        cov, var_x, var_z = (a * b).sum() / n2, (a * a).sum() / n2, (b * b).sum() / n2
        denom = (var_x * var_z).sqrt()
        ok = denom > 0
        r2 = torch.where(ok, cov / torch.where(ok, denom, torch.ones_like(denom)), torch.zeros_like(cov)).clamp(0.0, 1.0)
        dcor = r2.sqrt()
        ctx.save_for_backward(dx, dz, a, b, sx, sz, inv_x, inv_z, cov, var_x, var_z, dcor)
        return dcor

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:  # type: ignore[override]
        dx, dz, a, b, sx, sz, inv_x, inv_z, cov, var_x, var_z, dcor = ctx.saved_tensors
        if not bool(dcor > 0):  # dCor = sqrt(r2) is not differentiable at 0: take the zero subgradient
            return (torch.zeros_like(sx) if ctx.needs_input_grad[0] else None, torch.zeros_like(sz) if ctx.needs_input_grad[1] else None)
        n2 = float(a.shape[0]) ** 2
        # d dcor / d D = (other - (cov / var_self) * self) / (2 dcor n^2 sqrt(var_x var_z))
        coeff = grad / (2 * dcor * n2 * (var_x * var_z).sqrt())
        grads = []
        for needed, dist, mine, other, var, scaled, inv in (
            (ctx.needs_input_grad[0], dx, a, b, var_x, sx, inv_x),
            (ctx.needs_input_grad[1], dz, b, a, var_z, sz, inv_z),
        ):
            if not needed:
                grads.append(None)
                continue
            g_dist = _double_centred(coeff * (other - (cov / var) * mine))  # dL/dD, D: distances of the rescaled rows
            w = torch.where(dist > 0, g_dist / (2 * torch.where(dist > 0, dist, torch.ones_like(dist))), torch.zeros_like(dist))
            laplacian = torch.diag_embed(w.sum(dim=1)) - w
            grads.append((laplacian @ scaled) * (4 * inv))
        return grads[0], grads[1]


def distance_correlation(x: Tensor, z: Tensor) -> Tensor:
    """Biased (V-statistic) distance correlation of ``x`` and ``z`` as a 0-d tensor in [0, 1].

    Rows are samples: both inputs are flattened to ``[n, -1]`` (n >= 2). Differentiable with
    finite gradients, also for duplicate rows; a constant input gives 0. Equals
    ``dcor.distance_correlation(x, z)``; its value depends on n (see module docstring).
    The backward pass is hand-written (one matmul per input): NoPeek calls this every step.
    """
    xf, zf = _flatten_pair(x, z, name="distance_correlation", min_n=2)
    return _DistanceCorrelation.apply(xf, zf)


def u_distance_correlation_sqr(x: Tensor, z: Tensor) -> Tensor:
    """Bias-corrected squared distance correlation (U-statistic) as a 0-d tensor.

    Rows are samples, flattened to ``[n, -1]``; needs n > 3. Unbiased for the population
    dCor^2, hence ~0 under independence at any n and possibly negative; at most 1. Equals
    ``dcor.u_distance_correlation_sqr(x, z)``. Differentiable. If an input's U-centred distance
    matrix vanishes (constant input, or e.g. x = [0, 1, 1, 1]), the result is 0, as in dcor; the
    test is relative: squared norm <= (1000 * machine eps)^2 * that of its distance matrix.
    """
    xf, zf = _flatten_pair(x, z, name="u_distance_correlation_sqr", min_n=4)
    n = xf.shape[0]
    dx, dz = _distance_matrix(xf), _distance_matrix(zf)
    a, b = _u_centred(dx), _u_centred(dz)
    aa, bb = (a * a).sum(), (b * b).sum()
    rel = (1e3 * torch.finfo(aa.dtype).eps) ** 2
    degenerate = (aa <= rel * (dx * dx).sum()) | (bb <= rel * (dz * dz).sum())
    scale = 1.0 / (n * (n - 3))
    r2 = _ratio((a * b).sum() * scale, aa * scale, bb * scale, degenerate)
    return r2.clamp(max=1.0)
