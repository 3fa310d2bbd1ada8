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

from splitleak._validate import all_finite

__all__ = ["as_rows", "distance_correlation", "u_distance_correlation_sqr"]

# A squared distance computed as |a|^2 - 2 a.b + |b|^2 carries rounding error of a few machine
# eps times |a|^2 + |b|^2. Pairs at or below this many eps of that are exact zeros (as is the
# diagonal), with zero gradient, so duplicate rows never give NaN gradients. In float64
# this only zeroes distances below ~4e-8 of the points' norms (after centring), in float32
# below ~1e-3 of them (the expansion cannot resolve smaller ones there anyway).
_NOISE_EPS = 8.0


def as_rows(t: Tensor) -> Tensor:
    """``t`` [n, ...] as rows [n, d], features in memory order: a view, not a copy, for any dense layout.

    Distances between rows do not depend on the order of their features, so a channels-last
    activation (what mkldnn convolutions return on CPU) is flattened as (H, W, C) without the copy
    that ``reshape`` would make, and its gradient comes back in the same layout.
    """
    order = sorted(range(1, t.ndim), key=lambda dim: -t.stride(dim))
    return t.permute(0, *order).reshape(t.shape[0], -1)


def _flatten_pair(x: Tensor, z: Tensor, *, name: str, min_n: int, check_finite: bool = True) -> tuple[Tensor, Tensor]:
    """Validate and flatten both inputs to ``[n, -1]`` (``check_finite=False``: the caller checks
    finiteness itself, as `distance_correlation` does from its Gram matrices' diagonals)."""
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
    xf, zf = as_rows(x), as_rows(z)
    if xf.shape[1] == 0 or zf.shape[1] == 0:
        raise ValueError(f"{name}: inputs have no features: {tuple(x.shape)}, {tuple(z.shape)}")
    if check_finite and not all_finite(xf, zf):
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


def _u_centred(d: Tensor) -> Tensor:
    """U-centring (Szekely and Rizzo 2014); the diagonal is set to zero."""
    n = d.shape[0]
    rows = d.sum(dim=1, keepdim=True) / (n - 2)
    cols = d.sum(dim=0, keepdim=True) / (n - 2)
    total = d.sum() / ((n - 1) * (n - 2))
    off = ~torch.eye(n, dtype=torch.bool, device=d.device)
    return torch.where(off, d - rows - cols + total, torch.zeros_like(d))


def _ratio(cov: Tensor, var_x: Tensor, var_z: Tensor, degenerate: Tensor) -> Tensor:
    """``cov / sqrt(var_x var_z)``, 0 where degenerate or the denominator is 0; finite gradients."""
    denom = (var_x * var_z).abs().sqrt()
    ok = (denom > 0) & ~degenerate
    return torch.where(ok, cov / torch.where(ok, denom, torch.ones_like(denom)), torch.zeros_like(cov))


# The plain Gram matrix a a^T of uncentred rows gives squared distances |a_i|^2 + |a_j|^2 - 2 a_i.a_j
# with an absolute error of a few eps times |a_i|^2 + |a_j|^2, so the error grows with the ratio
# R = mean |a_i|^2 / mean |a_i - mean|^2 (the rows' offset against their spread). Measured in
# float32 against float64 (128 x 2048 offset ReLU activations): gradient error 0.8e-6 at R = 1.5,
# 1.9e-6 at R = 6.8, 4.7e-6 at R = 18. Trained small-cnn activations have R = 3.2-3.4, Fashion-MNIST
# images 2.4. Above _OFFSET_LIMIT, or where squares could overflow or underflow, the rows are
# centred and rescaled first (one more matmul and three passes over them).
_OFFSET_LIMIT = 16.0


def _gram_distances(a: Tensor, *, name: str = "distance_correlation") -> tuple[Tensor, Tensor, Tensor]:
    """Pairwise distances of the rows of ``a`` [n, d] from one Gram matrix, as `_distance_matrix`.

    Returns (distances [n, n], the rows the distances were computed from, their rescaling factor).
    Fast path: the Gram matrix of ``a`` itself, one matmul and no pass over [n, d] (the rows are
    returned as given, factor 1). When the rows' offset is large against their spread (see
    `_OFFSET_LIMIT`) or their squares leave float range, they are centred and multiplied by the
    power of two that brings their largest entry into [1, 2) (exact; dCor is translation and
    scale invariant) and the Gram matrix is computed again. Raises ValueError for NaN or inf.
    The [n, n] steps work in place.
    """
    gram = a @ a.T
    sq_norms = gram.diagonal()
    tiny = torch.finfo(a.dtype).tiny / torch.finfo(a.dtype).eps
    usable = bool(torch.isfinite(sq_norms * 8).all())  # and |a_i|^2 + |a_j|^2 - 2 a_i.a_j stays in range
    if usable:
        mean_sq = sq_norms.mean()
        spread = mean_sq - gram.mean()  # mean |a_i - mean|^2
        usable = bool((spread * _OFFSET_LIMIT >= mean_sq) & (spread > tiny))
    if usable:
        rows, inv = a, torch.ones((), dtype=a.dtype, device=a.device)
    else:
        if not all_finite(a):
            raise ValueError(f"{name}: inputs contain NaN or infinite values")
        centred = a - a.mean(dim=0, keepdim=True)
        low, high = torch.aminmax(centred)
        scale = torch.maximum(high, -low)
        inv = torch.where(scale > 0, torch.exp2(-torch.floor(torch.log2(scale))), 1.0)
        rows = centred.mul_(inv)
        gram = rows @ rows.T
        sq_norms = gram.diagonal()
    sq_norms = sq_norms.clone()
    norm_sum = sq_norms[:, None] + sq_norms[None, :]
    sq = gram.mul_(-2).add_(norm_sum)
    keep = sq > norm_sum.mul_(_NOISE_EPS * torch.finfo(a.dtype).eps)
    keep.fill_diagonal_(False)
    return sq.mul_(keep).sqrt_(), rows, inv  # kept entries exceed a threshold >= 0; the rest become 0


def _double_centred_symmetric(d: Tensor) -> Tensor:
    """Double centring of symmetric [..., n, n] matrices (row means are column means): two passes."""
    rows = d.mean(dim=-1, keepdim=True)
    return (d - rows).sub_(rows.mT - rows.mean(dim=-2, keepdim=True))


def _gradient_of_rows(g_dist: Tensor, dist: Tensor, rows: Tensor, factor: Tensor) -> Tensor:
    """``factor`` L a with the graph Laplacian L = diag(W 1) - W, W = g / D (0 where D = 0).

    With ``g_dist`` = dL/dD, dL/da = 2 L a / s^2. L's zero row sums make the centring's backward a
    no-op (L a = L a_c, so the rows may be centred or not); L is formed as an [n, n] matrix with
    the factor folded in, so the gradient is one matmul and no pass over [n, d]. ``g_dist`` is
    overwritten.
    """
    w = g_dist.div_(dist).nan_to_num_(0.0, 0.0, 0.0)  # D = 0 (diagonal, clamped pairs): x / 0 is +-inf or nan
    laplacian = w.mul_(-factor)
    laplacian.diagonal().sub_(laplacian.sum(dim=1))  # W's diagonal is 0 (D_ii = 0)
    return laplacian @ rows


class _DistanceCorrelation(torch.autograd.Function):
    """V-statistic dCor with a hand-written backward: one [n, n] @ [n, d] product per input.

    Autograd through `_distance_matrix` would keep every [n, d] temporary and differentiate the
    Gram matrix a @ a.T with two matmuls. Here, with W = dL/d(squared distances) (symmetric,
    zero where a distance is clamped to 0), dL/da = 4 (diag(W 1) - W) a_c / s^2: a single
    matmul, and the graph Laplacian's zero row sums make the centring's backward a no-op.
    dL/dD is double-centred again before dividing by D: in float32 its rows otherwise sum to
    rounding noise that the Laplacian's diagonal amplifies (gradient error 1e-4 instead of 3e-6).
    The two [n, n] distance matrices are centred and compared as one stacked [2, n, n] tensor.
    """

    @staticmethod
    def forward(ctx, xf: Tensor, zf: Tensor) -> Tensor:  # type: ignore[override]
        (dx, sx, inv_x), (dz, sz, inv_z) = _gram_distances(xf), _gram_distances(zf)
        dist = torch.stack((dx, dz))
        centred = _double_centred_symmetric(dist)
        flat = centred.view(2, -1)
        (var_x, cov), (_, var_z) = (flat @ flat.T).div_(float(dist.shape[1]) ** 2)
        denom = (var_x * var_z).sqrt()
        ok = denom > 0
        r2 = torch.where(ok, cov / torch.where(ok, denom, torch.ones_like(denom)), torch.zeros_like(cov)).clamp(0.0, 1.0)
        dcor = r2.sqrt()
        ctx.save_for_backward(dist, centred, sx, sz, inv_x, inv_z, cov, var_x, var_z, dcor)
        return dcor

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:  # type: ignore[override]
        dist, centred, sx, sz, inv_x, inv_z, cov, var_x, var_z, dcor = ctx.saved_tensors
        if not bool(dcor > 0):  # dCor = sqrt(r2) is not differentiable at 0: take the zero subgradient
            return (torch.zeros_like(sx) if ctx.needs_input_grad[0] else None, torch.zeros_like(sz) if ctx.needs_input_grad[1] else None)
        n2 = float(dist.shape[1]) ** 2
        # d dcor / d D = coeff (other - (cov / var_self) self), coeff = 1 / (2 dcor n^2 sqrt(var_x var_z))
        coeff = grad / (2 * dcor * n2 * (var_x * var_z).sqrt())
        grads: list[Tensor | None] = []
        for side, (var, scaled, inv) in enumerate(((var_x, sx, inv_x), (var_z, sz, inv_z))):
            if not ctx.needs_input_grad[side]:
                grads.append(None)
                continue
            g_dist = _double_centred_symmetric(torch.add(centred[1 - side], centred[side], alpha=-float(cov / var)))  # dL/dD / coeff
            grads.append(_gradient_of_rows(g_dist, dist[side], scaled, 2 * coeff * inv))
        return grads[0], grads[1]


def distance_correlation(x: Tensor, z: Tensor) -> Tensor:
    """Biased (V-statistic) distance correlation of ``x`` and ``z`` as a 0-d tensor in [0, 1].

    Rows are samples: both inputs are flattened to ``[n, -1]`` (n >= 2). Differentiable with
    finite gradients, also for duplicate rows; a constant input gives 0. Equals
    ``dcor.distance_correlation(x, z)``; its value depends on n (see module docstring).
    The forward and backward passes are hand-written (one matmul each per input, no pass over
    the activations in the common case): NoPeek calls this every step.
    """
    xf, zf = _flatten_pair(x, z, name="distance_correlation", min_n=2, check_finite=False)  # checked from the Gram matrices
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
