"""dCor(x, z) against NoPeek's alpha, per cut: V statistic, U statistic, and worst-case SSIM.

Undefended checkpoints enter as alpha = 0 (NoPeek with no penalty). The page is left out when
there is no NoPeek checkpoint.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from splitleak.cuts import cut_depth, parse_cut
from splitleak.reports.canvas import CONTENT_BOTTOM, CONTENT_TOP, MARGIN, axes_at, page, text_at
from splitleak.reports.style import MUTED, cut_marker, ssim_line

LINE_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#ff7f0e")


def _depth_of_cuts(column: pd.Series) -> pd.Series:
    """Sort key for `sort_values`: the cut column by depth (docs: splitleak.cuts), others as they are."""
    return column.map(lambda c: cut_depth(parse_cut(c))) if column.name == "cut" else column


def nopeek_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """NoPeek checkpoints with a finite alpha, plus undefended ones (alpha 0) of the same groups."""
    nopeek = summary[(summary["defense"] == "nopeek") & np.isfinite(summary["strength"].astype(float))]
    if nopeek.empty:
        return nopeek
    groups = set(map(tuple, nopeek[["dataset", "arch", "cut"]].astype(str).to_numpy()))
    baseline = summary[(summary["defense"] == "none") & summary[["dataset", "arch", "cut"]].astype(str).apply(tuple, axis=1).isin(groups)]
    return pd.concat([baseline, nopeek]).sort_values(["dataset", "arch", "cut", "strength"], kind="stable", key=_depth_of_cuts)


def _group_label(key: tuple, multiple: dict[str, bool]) -> str:
    dataset, arch, cut = key
    parts = [f"cut {cut}"]
    if multiple["arch"]:
        parts.append(str(arch))
    if multiple["dataset"]:
        parts.append(str(dataset))
    return ", ".join(parts)


def _panel(ax: Axes, rows: pd.DataFrame, value: str, low: str, high: str, multiple: dict[str, bool]) -> None:
    for k, (key, group) in enumerate(rows.groupby(["dataset", "arch", "cut"], sort=True)):
        alpha = group["strength"].to_numpy(dtype=float)
        y = group[value].to_numpy(dtype=float)
        lo, hi = group[low].to_numpy(dtype=float), group[high].to_numpy(dtype=float)
        has_ci = np.isfinite(lo) & np.isfinite(hi)
        color = LINE_COLORS[k % len(LINE_COLORS)]
        err = np.vstack([np.where(has_ci, y - lo, 0), np.where(has_ci, hi - y, 0)]).clip(min=0)
        ax.errorbar(alpha, y, yerr=err, color=color, marker=cut_marker(k), markersize=5, linewidth=1.1, capsize=3, label=_group_label(key, multiple))


def _alpha_axis(ax: Axes, alphas: np.ndarray) -> None:
    positive = alphas[alphas > 0]
    if len(positive) and positive.max() / positive.min() >= 10:
        ax.set_xscale("symlog", linthresh=float(positive.min()), linscale=0.6)
    ax.set_xticks(sorted(set(alphas.tolist())))
    ax.set_xticklabels([f"{a:g}" for a in sorted(set(alphas.tolist()))])
    ax.minorticks_off()
    ax.set_xlabel("NoPeek α (0 = no defense)")


def dependence_page(summary: pd.DataFrame, subtitle: str) -> Figure | None:
    """Three panels against alpha: dCor (V), dCor² (U) with jackknife CIs, worst-case SSIM; None without NoPeek."""
    rows = nopeek_rows(summary)
    if rows.empty:
        return None
    multiple = {c: rows[c].nunique() > 1 for c in ("dataset", "arch")}
    fig = page("Distance correlation against NoPeek α", subtitle)
    width, gap = 3.05, 0.62
    height = CONTENT_TOP - CONTENT_BOTTOM - 1.55
    alphas = rows["strength"].to_numpy(dtype=float)
    panels = (
        ("dcor", "dcor_ci_low", "dcor_ci_high", "dCor(x, z), V statistic", "NoPeek's estimator (biased up at small n)"),
        ("dcor_u2", "dcor_u2_ci_low", "dcor_u2_ci_high", "dCor²(x, z), U statistic", "bias-corrected, ≈ 0 if independent"),
        ("ssim_worst", "ssim_worst_ci_low", "ssim_worst_ci_high", "Worst-case SSIM over attacks", "does lower dCor stop the attacks?"),
    )
    for k, (value, low, high, title, note) in enumerate(panels):
        ax = axes_at(fig, MARGIN + 0.55 + k * (width + gap), CONTENT_BOTTOM + 1.05, width, height)
        _panel(ax, rows, value, low, high, multiple)
        _alpha_axis(ax, alphas)
        ax.set_title(f"{title}\n{note}", fontsize=9, loc="left")
        if value == "ssim_worst":
            ssim_line(ax)
        if k == 0:
            ax.legend(loc="best", frameon=False)
    n_values = sorted({int(n) for n in rows["dcor_n"] if n})
    text_at(
        fig, MARGIN, CONTENT_BOTTOM + 0.45,
        "dCor between the flattened test images x and the activations z the server receives (after the defense's transform), "
        f"on n = {', '.join(map(str, n_values)) or 'n/a'} test images; error bars: delete-a-group jackknife 95% CI of the estimator.\n"
        "The V statistic is what NoPeek penalises during training; it is biased upward at small n, so compare values only at equal n. "
        "SSIM error bars: bootstrap 95% CI of the mean.",
        fontsize=7.5, color=MUTED, va="top", ha="left", linespacing=1.4,
    )
    return fig
