"""Distance correlation at scale: blocked V- and U-statistics with a jackknife interval.

:func:`dcor_statistics` computes, for up to tens of thousands of samples, the same two numbers as
the small-n functions in :mod:`splitleak.metrics.dependence`:

* ``v``  -- the biased V-statistic dCor (NoPeek's estimator, ``dcor.distance_correlation``),
* ``u2`` -- the bias-corrected U-statistic dCor^2 (``dcor.u_distance_correlation_sqr``),

without ever holding an n x n matrix. Both follow in closed form from a handful of sums over the
distance matrices ``a_ij = |x_i - x_j|`` and ``b_ij = |z_i - z_j|``::

    S_ab = sum_ij a_ij b_ij,   r_i = sum_j a_ij,   s_i = sum_j b_ij,
    P_ab = sum_i r_i s_i,      T_a = sum_i r_i,    T_b = sum_i s_i,
    n^4 dCov_V^2      = n^2 S_ab - 2 n P_ab + T_a T_b
    n(n-3) dCov_U^2   = S_ab - 2 P_ab / (n - 2) + T_a T_b / ((n - 1)(n - 2))   (Szekely & Rizzo 2014)

(and the same with a, a and b, b for the distance variances). The distance matrices are visited
in square blocks of the upper triangle, the block side chosen so the block's working set fits
``memory_budget``; every sum is accumulated in float64.

The confidence interval is a delete-a-group jackknife: the samples are split at random into G
groups (default 100) and the statistic is recomputed with each group left out. Leaving a group
out is again a closed form of per-group sums gathered in the same pass (the row sums of ``a`` and
``b`` restricted to each group, an n x G matrix, and the within-group sums of ``a b``, ``a^2``,
``b^2``), so the interval costs no second pass over the data. Every leave-group-out value is the
exact statistic of a subsample of distinct points (no ties, unlike a bootstrap resample, which
biases U-statistics), and with G = n it is the classical delete-one jackknife. The interval is
``estimate +- t_{G-1} * se_jackknife``. Definitions, accuracy and the coverage study:
``docs/metrics.md``; timings: ``benchmarks/README.md``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from splitleak.metrics.dependence import _flatten_pair

__all__ = ["DEFAULT_MEMORY_BUDGET", "DEFAULT_N_GROUPS", "DcorEstimate", "block_size_for", "dcor_statistics"]

DEFAULT_MEMORY_BUDGET = 512 * 2**20
"""Bytes the n x n blocks may use at once (512 MiB)."""

DEFAULT_N_GROUPS = 100
"""Jackknife groups: G - 1 = 99 degrees of freedom for the standard error."""

# Working set of one block of side m: the Gram product, two float64 distance blocks, one
# float64 product or threshold temporary and a boolean mask (~25 bytes per entry in float64,
# ~29 in float32 where the float32 Gram is upcast). 32 leaves headroom.
_BYTES_PER_BLOCK_ENTRY = 32

# Blocks of side 1,024 to 2,048 were fastest at n = 10,000 (2 cores); 4,096 was ~10% and 5,792
# ~2x slower (cache, and the diagonal blocks are computed in full).
_MAX_BLOCK = 2048

# Squared distances within this many machine eps (of the Gram dtype) of |x_i|^2 + |x_j|^2 are
# rounding noise and set to exact zeros, as in ``dependence._distance_matrix``.
_NOISE_EPS = 8.0

# A centred distance matrix whose squared norm is at most this fraction of sum(a_ij^2) counts as
# zero (a constant input, or distances of the form u_i + u_j): the ratio is then 0, as in
# ``dependence.py`` and dcor. The closed forms cancel to ~1e-16 relative in float64; distances from
# a float32 Gram carry ~1e-7 relative noise, whose square is ~1e-14.
_DEGENERATE_REL = {torch.float64: 1e3 * torch.finfo(torch.float64).eps, torch.float32: 1e-8}

Precision = Literal["float64", "float32"]
_DTYPES: dict[str, torch.dtype] = {"float64": torch.float64, "float32": torch.float32}


@dataclass(frozen=True)
class DcorEstimate:
    """Distance-correlation estimates for one set of n paired samples, with confidence intervals.

    ``v`` is the biased V-statistic dCor in [0, 1] (NoPeek's; its bias grows as n shrinks, so only
    compare values at equal n). ``u2`` is the unbiased U-statistic of dCor^2 (~0 under
    independence, may be negative). ``v_ci`` / ``u2_ci`` are ``(low, high)`` at level ``ci_level``
    from ``ci_method``; ``None`` when no interval was asked for. ``u2_ci`` covers the population
    dCor^2; ``v_ci`` covers the mean V-statistic at this n (the V-statistic's bias is not
    removed). ``sqrt(max(0, bound))`` of the ``u2_ci`` bounds is an interval for the population dCor.
    """

    n: int
    v: float
    u2: float
    v_ci: tuple[float, float] | None
    u2_ci: tuple[float, float] | None
    v_se: float | None
    u2_se: float | None
    ci_level: float | None
    ci_method: str
    n_groups: int
    precision: str
    block_size: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (intervals as 2-element lists)."""
        d = asdict(self)
        for key in ("v_ci", "u2_ci"):
            if d[key] is not None:
                d[key] = [float(b) for b in d[key]]
        return d


def block_size_for(n: int, memory_budget: int) -> int:
    """Largest side (>= 1) of the square distance blocks for ``n`` samples and ``memory_budget`` bytes.

    Capped at ``_MAX_BLOCK``: larger blocks are no faster (measured) and waste more work on the
    diagonal blocks, which are computed in full.
    """
    side = math.isqrt(max(int(memory_budget), 0) // _BYTES_PER_BLOCK_ENTRY)
    return max(1, min(n, side, _MAX_BLOCK))


# --------------------------------------------------------------------------------------------
# Validation and preparation
# --------------------------------------------------------------------------------------------


def _check_options(memory_budget: object, ci: object, n_groups: object, precision: object) -> None:
    name = "dcor_statistics"
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, int) or memory_budget <= 0:
        raise ValueError(f"{name}: memory_budget must be a positive number of bytes, got {memory_budget!r}")
    if ci is not None and (
        isinstance(ci, bool) or not isinstance(ci, (int, float)) or not 0.0 < float(ci) < 1.0
    ):
        raise ValueError(f"{name}: ci must be a level in (0, 1) or None, got {ci!r}")
    if isinstance(n_groups, bool) or not isinstance(n_groups, int) or n_groups < 2:
        raise ValueError(f"{name}: n_groups must be an integer >= 2, got {n_groups!r}")
    if precision not in _DTYPES:
        raise ValueError(f"{name}: precision must be one of {sorted(_DTYPES)}, got {precision!r}")


def _check_inputs(x: object, z: object) -> tuple[Tensor, Tensor]:
    """The same validation as the small-n functions (n >= 4), flattened and detached."""
    xf, zf = _flatten_pair(x, z, name="dcor_statistics", min_n=4)  # type: ignore[arg-type]
    return xf.detach(), zf.detach()


def _prepare(f: Tensor, perm: Tensor, dtype: torch.dtype, chunk: int) -> tuple[Tensor, Tensor, bool]:
    """Rows permuted, centred and scaled to max |entry| 1 in float64, cast to ``dtype``.

    Returns (features [n, d] in ``dtype``, squared row norms of exactly those values in float64,
    whether all rows are identical). dCor is invariant to translation and scaling, and centring
    keeps |x|^2 - 2 x.y + |y|^2 from cancelling catastrophically. Works in row chunks so no more
    than one float64 copy of the input exists at a time.
    """
    n, d = f.shape
    out = torch.empty((n, d), dtype=torch.float64, device=f.device)
    for i in range(0, n, chunk):
        out[i : i + chunk] = f[perm[i : i + chunk]]
    out -= out.mean(dim=0, keepdim=True)
    scale = max(float(out[i : i + chunk].abs().amax()) for i in range(0, n, chunk))
    if scale > 0:
        out /= scale
    constant = all(bool((f[i : i + chunk] == f[:1]).all()) for i in range(0, n, chunk))
    if dtype != torch.float64:
        out = out.to(dtype)
    sq = torch.empty(n, dtype=torch.float64, device=f.device)
    for i in range(0, n, chunk):
        rows = out[i : i + chunk].to(torch.float64)
        sq[i : i + chunk] = (rows * rows).sum(dim=1)
    return out, sq, constant


def _distance_block(
    f: Tensor, sq: Tensor, rows: slice, cols: slice, diagonal: bool, work: "_Workspace", out: Tensor
) -> Tensor:
    """Euclidean distances between ``f[rows]`` and ``f[cols]``, written into ``out`` (float64)."""
    shape = (rows.stop - rows.start, cols.stop - cols.start)
    d = work.view(out, shape)
    if f.dtype == torch.float64:
        torch.mm(f[rows], f[cols].T, out=d)
    else:
        d.copy_(torch.mm(f[rows], f[cols].T, out=work.view(work.gram, shape)))
    sq_r, sq_c = sq[rows, None], sq[None, cols]
    d.mul_(-2.0).add_(sq_r).add_(sq_c)  # squared distances
    noise = torch.add(sq_r, sq_c, out=work.view(work.tmp, shape)).mul_(_NOISE_EPS * torch.finfo(f.dtype).eps)
    mask = torch.le(d, noise, out=work.view(work.mask, shape))
    d.masked_fill_(mask, 0.0)  # rounding noise, duplicates and (in float32) the diagonal
    if diagonal:
        d.fill_diagonal_(0.0)
    return d.sqrt_()


class _Workspace:
    """Block buffers allocated once (fresh large allocations cost page faults every time)."""

    def __init__(self, m: int, gram_dtype: torch.dtype, device: torch.device) -> None:
        size = m * m
        self.a = torch.empty(size, dtype=torch.float64, device=device)
        self.b = torch.empty(size, dtype=torch.float64, device=device)
        self.tmp = torch.empty(size, dtype=torch.float64, device=device)
        self.mask = torch.empty(size, dtype=torch.bool, device=device)
        self.gram = torch.empty(size if gram_dtype != torch.float64 else 0, dtype=gram_dtype, device=device)

    @staticmethod
    def view(buf: Tensor, shape: tuple[int, int]) -> Tensor:
        return buf[: shape[0] * shape[1]].view(shape)


# --------------------------------------------------------------------------------------------
# Closed forms
# --------------------------------------------------------------------------------------------


@dataclass
class _Sums:
    """Sufficient statistics (float64) of one (sub)sample of size n; fields may be vectors."""

    n: Tensor
    s_ab: Tensor
    s_aa: Tensor
    s_bb: Tensor
    p_ab: Tensor
    p_aa: Tensor
    p_bb: Tensor
    t_a: Tensor
    t_b: Tensor


def _ratio(cov: Tensor, var_a: Tensor, var_b: Tensor, norm_a: Tensor, norm_b: Tensor, rel: float) -> Tensor:
    """``cov / sqrt(var_a var_b)``, 0 where a centred matrix vanishes (relative to its raw norm)."""
    ok = (var_a > rel * norm_a) & (var_b > rel * norm_b)
    denom = torch.where(ok, var_a * var_b, torch.ones_like(var_a)).sqrt()
    return torch.where(ok, cov / denom, torch.zeros_like(cov))


def _v_dcor(s: _Sums, rel: float) -> Tensor:
    """V-statistic dCor: n^4 dCov^2 = n^2 S - 2 n P + T_a T_b; the n^4 cancels in the ratio."""
    n = s.n
    cov = n * n * s.s_ab - 2 * n * s.p_ab + s.t_a * s.t_b
    var_a = n * n * s.s_aa - 2 * n * s.p_aa + s.t_a * s.t_a
    var_b = n * n * s.s_bb - 2 * n * s.p_bb + s.t_b * s.t_b
    r2 = _ratio(cov, var_a, var_b, n * n * s.s_aa, n * n * s.s_bb, rel)
    return r2.clamp(0.0, 1.0).sqrt()


def _u_dcor2(s: _Sums, rel: float) -> Tensor:
    """U-statistic dCor^2 (Szekely & Rizzo 2014): n(n-3) Omega = S - 2P/(n-2) + T_a T_b/((n-1)(n-2))."""
    n = s.n
    c1, c2 = 2.0 / (n - 2), 1.0 / ((n - 1) * (n - 2))
    cov = s.s_ab - c1 * s.p_ab + c2 * s.t_a * s.t_b
    var_a = s.s_aa - c1 * s.p_aa + c2 * s.t_a * s.t_a
    var_b = s.s_bb - c1 * s.p_bb + c2 * s.t_b * s.t_b
    return _ratio(cov, var_a, var_b, s.s_aa, s.s_bb, rel).clamp(-1.0, 1.0)


def _t_quantile(level: float, dof: int) -> float:
    from scipy.stats import t as student_t  # scipy comes with scikit-image / scikit-learn

    return float(student_t.ppf(0.5 + level / 2.0, dof))


def _jackknife(theta: float, loo: Tensor, sizes: Tensor, n: int) -> float:
    """Delete-a-group jackknife standard error for unequal group sizes.

    Busing, Meijer & van der Leeden (1999): h_g = n / m_g, pseudo-values
    h_g theta - (h_g - 1) theta_(g), var = (1/G) sum_g (pseudo_g - theta_J)^2 / (h_g - 1),
    theta_J = G theta - sum_g (1 - m_g / n) theta_(g). Equal sizes give the usual
    (G - 1)/G sum (theta_(g) - mean)^2.
    """
    big_g = loo.shape[0]
    h = n / sizes
    pseudo = h * theta - (h - 1) * loo
    theta_j = big_g * theta - ((1 - sizes / n) * loo).sum()
    var = (((pseudo - theta_j) ** 2) / (h - 1)).sum() / big_g
    return math.sqrt(max(float(var), 0.0))


# --------------------------------------------------------------------------------------------
# Public function
# --------------------------------------------------------------------------------------------


def dcor_statistics(
    x: Tensor,
    z: Tensor,
    *,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    ci: float | None = 0.95,
    n_groups: int = DEFAULT_N_GROUPS,
    seed: int = 0,
    precision: Precision = "float64",
) -> DcorEstimate:
    """V-statistic dCor and U-statistic dCor^2 of ``x`` and ``z`` with jackknife intervals.

    ``x`` and ``z`` are tensors ``[n, ...]`` of any rank (flattened to ``[n, -1]``; e.g. images vs
    activations, or images vs reconstructions), floating point, finite, n >= 4, on the same
    device. No autograd; the inputs are not modified.

    ``memory_budget`` bounds, in bytes, the distance blocks held at once (block side
    ``block_size_for(n, memory_budget)``); besides it the function holds one float64 copy of each
    input (plus a ``precision`` copy for float32) and O(n * n_groups) float64 accumulators.
    ``precision`` is the dtype of the Gram products (the dominant cost): "float64" agrees with
    dcor to ~1e-14 (tested to 1e-9); "float32" is 1.2-1.6x faster at n = 10,000 and agrees to
    ~1e-8 (tested to 1e-5); see docs/metrics.md. All sums are float64 either way.

    ``ci`` is the interval level (None: no interval, and then any n >= 4 works); the interval is a
    delete-a-group jackknife over ``min(n_groups, n)`` random groups (drawn with ``seed``; only the
    intervals depend on it), ``estimate +- t * se``, clipped to the statistic's range. It needs
    every leave-group-out subsample to keep >= 4 samples.
    """
    _check_options(memory_budget, ci, n_groups, precision)
    xf, zf = _check_inputs(x, z)
    n = xf.shape[0]
    device = xf.device
    dtype = _DTYPES[precision]
    rel = _DEGENERATE_REL[dtype]

    big_g = min(n_groups, n)
    base, extra = divmod(n, big_g)
    sizes = torch.full((big_g,), base, dtype=torch.long)
    sizes[:extra] += 1
    if ci is not None and n - int(sizes.max()) < 4:
        raise ValueError(
            f"dcor_statistics: a confidence interval with {big_g} jackknife groups needs every "
            f"leave-group-out subsample to keep >= 4 of the n = {n} samples; use more groups, "
            "more samples, or ci=None"
        )
    starts = torch.zeros(big_g + 1, dtype=torch.long)
    starts[1:] = torch.cumsum(sizes, 0)
    group = torch.repeat_interleave(torch.arange(big_g), sizes)  # group of each permuted row

    gen = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=gen).to(device)
    m = block_size_for(n, memory_budget)

    with torch.no_grad():
        fx, sqx, const_x = _prepare(xf, perm, dtype, m)
        fz, sqz, const_z = _prepare(zf, perm, dtype, m)
        sums = _accumulate(fx, sqx, fz, sqz, group.to(device), starts.tolist(), m)
        del fx, fz
        estimate = _finish(sums, group.to(device), sizes.to(device, torch.float64), n, rel, const_x or const_z, ci)

    v, u2, v_se, u2_se, v_ci, u2_ci = estimate
    return DcorEstimate(
        n=n,
        v=v,
        u2=u2,
        v_ci=v_ci,
        u2_ci=u2_ci,
        v_se=v_se,
        u2_se=u2_se,
        ci_level=None if ci is None else float(ci),
        ci_method="none" if ci is None else f"delete-a-group jackknife (G={big_g}), t interval",
        n_groups=big_g,
        precision=precision,
        block_size=m,
    )


def _accumulate(
    fx: Tensor, sqx: Tensor, fz: Tensor, sqz: Tensor, group: Tensor, starts: list[int], m: int
) -> dict[str, Tensor]:
    """One pass over the upper-triangular blocks; returns float64 per-row and per-group sums.

    ``c_a[i, g] = sum_{j in g} a_ij`` (likewise ``c_b``), ``r_M[i] = sum_j M_ij`` and
    ``w_M[i] = sum_{j in group(i)} M_ij`` for M in a*b, a*a, b*b. Groups are contiguous runs of
    rows (the rows were permuted at random beforehand).
    """
    n = fx.shape[0]
    big_g = len(starts) - 1
    opts: dict[str, Any] = {"dtype": torch.float64, "device": fx.device}
    c_a = torch.zeros((n, big_g), **opts)
    c_b = torch.zeros((n, big_g), **opts)
    r = {k: torch.zeros(n, **opts) for k in ("ab", "aa", "bb")}
    w = {k: torch.zeros(n, **opts) for k in ("ab", "aa", "bb")}
    n_blocks = -(-n // m)
    bounds = [(n * k) // n_blocks for k in range(n_blocks + 1)]  # balanced blocks of side <= m
    spans = [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]
    work = _Workspace(max(sl.stop - sl.start for sl in spans), fx.dtype, fx.device)

    def onehot_t(sl: slice) -> tuple[Tensor, int, int]:
        """Transposed one-hot group matrix of the rows in ``sl``: [groups in sl, len(sl)]."""
        g0, g1 = int(group[sl.start]), int(group[sl.stop - 1]) + 1
        e = torch.nn.functional.one_hot(group[sl] - g0, g1 - g0).to(torch.float64)
        return e.T.contiguous(), g0, g1

    onehots = [onehot_t(sl) for sl in spans]
    for bi, rows in enumerate(spans):
        et_r, gr0, gr1 = onehots[bi]
        for bj in range(bi, len(spans)):
            cols = spans[bj]
            et_c, gc0, gc1 = onehots[bj]
            diag = bi == bj
            a = _distance_block(fx, sqx, rows, cols, diag, work, work.a)
            b = _distance_block(fz, sqz, rows, cols, diag, work, work.b)
            c_a[rows, gc0:gc1] += (et_c @ a.T).T
            c_b[rows, gc0:gc1] += (et_c @ b.T).T
            if not diag:
                c_a[cols, gr0:gr1] += (et_r @ a).T
                c_b[cols, gr0:gr1] += (et_r @ b).T
            # groups present in both the row and the column span
            shared = range(max(gr0, gc0), min(gr1, gc1))
            for key, (p, q) in (("ab", (a, b)), ("aa", (a, a)), ("bb", (b, b))):
                prod = torch.mul(p, q, out=work.view(work.tmp, tuple(a.shape)))
                r[key][rows] += prod.sum(dim=1)
                if not diag:
                    r[key][cols] += prod.sum(dim=0)
                for g in shared:
                    lo, hi = starts[g], starts[g + 1]
                    i0, i1 = max(lo, rows.start), min(hi, rows.stop)
                    j0, j1 = max(lo, cols.start), min(hi, cols.stop)
                    blk = prod[i0 - rows.start : i1 - rows.start, j0 - cols.start : j1 - cols.start]
                    w[key][i0:i1] += blk.sum(dim=1)
                    if not diag:
                        w[key][j0:j1] += blk.sum(dim=0)
    return {"c_a": c_a, "c_b": c_b, **{f"r_{k}": v for k, v in r.items()}, **{f"w_{k}": v for k, v in w.items()}}


def _finish(
    acc: dict[str, Tensor],
    group: Tensor,
    sizes: Tensor,
    n: int,
    rel: float,
    constant: bool,
    ci: float | None,
) -> tuple[float, float, float | None, float | None, tuple[float, float] | None, tuple[float, float] | None]:
    c_a, c_b = acc["c_a"], acc["c_b"]
    big_g = c_a.shape[1]
    ra, rb = c_a.sum(dim=1), c_b.sum(dim=1)  # row sums of a and b
    f64 = {"dtype": torch.float64, "device": c_a.device}
    full = _Sums(
        n=torch.tensor(float(n), **f64),
        s_ab=acc["r_ab"].sum(),
        s_aa=acc["r_aa"].sum(),
        s_bb=acc["r_bb"].sum(),
        p_ab=(ra * rb).sum(),
        p_aa=(ra * ra).sum(),
        p_bb=(rb * rb).sum(),
        t_a=ra.sum(),
        t_b=rb.sum(),
    )
    if constant:  # a constant input: dCor is 0 by convention (dcor, dependence.py)
        v = u2 = 0.0
    else:
        v, u2 = float(_v_dcor(full, rel)), float(_u_dcor2(full, rel))
    if ci is None:
        return v, u2, None, None, None, None

    # Leave group g out. Per-group sums of row quantities:
    def by_group(vec: Tensor) -> Tensor:
        return torch.zeros(big_g, **f64).index_add_(0, group, vec)

    keep = group[:, None] != torch.arange(big_g, device=group.device)[None, :]  # [n, G]
    ra_g = torch.where(keep, ra[:, None] - c_a, 0.0)  # row sums of a within the subsample
    rb_g = torch.where(keep, rb[:, None] - c_b, 0.0)

    def s_loo(key: str) -> Tensor:
        # sum over i, j not in g = S - 2 sum_{i in g} r_i + sum_{i, j in g}
        return acc[f"r_{key}"].sum() - 2 * by_group(acc[f"r_{key}"]) + by_group(acc[f"w_{key}"])

    loo = _Sums(
        n=n - sizes,
        s_ab=s_loo("ab"),
        s_aa=s_loo("aa"),
        s_bb=s_loo("bb"),
        p_ab=(ra_g * rb_g).sum(dim=0),
        p_aa=(ra_g * ra_g).sum(dim=0),
        p_bb=(rb_g * rb_g).sum(dim=0),
        t_a=ra_g.sum(dim=0),
        t_b=rb_g.sum(dim=0),
    )
    if constant:
        v_loo = u_loo = torch.zeros(big_g, **f64)
    else:
        v_loo, u_loo = _v_dcor(loo, rel), _u_dcor2(loo, rel)
    tq = _t_quantile(float(ci), big_g - 1)
    v_se = _jackknife(v, v_loo, sizes, n)
    u2_se = _jackknife(u2, u_loo, sizes, n)
    v_ci = (max(0.0, v - tq * v_se), min(1.0, v + tq * v_se))
    u2_ci = (max(-1.0, u2 - tq * u2_se), min(1.0, u2 + tq * u2_se))
    return v, u2, v_se, u2_se, v_ci, u2_ci
