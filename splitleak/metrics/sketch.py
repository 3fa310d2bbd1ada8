"""Random sign sketches: wide rows folded to k columns, pairwise distances kept on average.

``sign_sketch(a, k)`` maps each row of ``a`` [n, d] to k columns: column j is the sum of the
coordinates i with ``i % k == j``, each multiplied by a random sign s_i = +-1 drawn afresh on
every call (a count sketch with fixed, strided buckets). For any two rows u, v,

    E ||S u - S v||^2 = ||u - v||^2,   Var = 2 sum_j [(sum_{i in j} w_i^2)^2 - sum_{i in j} w_i^4]

with w = u - v: squared distances are unbiased, with a relative spread of about sqrt(2 / k)
when the difference's energy is spread over the buckets. Because the signs are new on every
call, no direction of the input is invisible to the sketch on average (a fixed projection to
k < d columns would have a (d - k)-dimensional null space an encoder could learn to use).

It costs one pass over ``a`` forward and one backward, against the O(n^2 d) Gram matrix of an
exact distance computation: NoPeek uses it to make its per-step penalty cheap (docs/metrics.md).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["sign_sketch"]


class _SignSketch(torch.autograd.Function):
    """out[:, j] = sum over i = j (mod k) of signs[i] * a[:, i]; backward spreads the gradient back."""

    @staticmethod
    def forward(ctx, a: Tensor, signs: Tensor, k: int) -> Tensor:  # type: ignore[override]
        n, d = a.shape
        m = d // k
        whole = m * k
        out = (a[:, :whole].view(n, m, k) * signs[:whole].view(m, k)).sum(dim=1)
        if whole < d:
            out[:, : d - whole] += a[:, whole:] * signs[whole:]
        ctx.save_for_backward(signs)
        ctx.k = k
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (signs,) = ctx.saved_tensors
        k, n, d = ctx.k, grad.shape[0], signs.shape[0]
        m = d // k
        whole = m * k
        out = grad.new_empty(n, d)
        torch.mul(grad.unsqueeze(1), signs[:whole].view(m, k), out=out[:, :whole].view(n, m, k))
        if whole < d:
            torch.mul(grad[:, : d - whole], signs[whole:], out=out[:, whole:])
        return out, None, None


def sign_sketch(a: Tensor, k: int, *, generator: torch.Generator | None = None) -> Tensor:
    """Fold the rows of ``a`` [n, d] to ``k`` columns with fresh random signs (see module docstring).

    Rows no wider than ``k`` are returned as they are (the sketch would only add noise).
    Differentiable in ``a``; the signs come from ``generator`` (default: torch's global one,
    so a seeded training run stays reproducible).
    """
    if a.ndim != 2:
        raise ValueError(f"sign_sketch: expected rows [n, d], got shape {tuple(a.shape)}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"sign_sketch: k must be a positive integer, got {k!r}")
    d = a.shape[1]
    if d <= k:
        return a
    signs = torch.randint(0, 2, (d,), generator=generator, device=a.device, dtype=a.dtype).mul_(2).sub_(1)
    return _SignSketch.apply(a, signs, k)
