"""Privacy-utility trade-off: task accuracy against worst-case SSIM, Pareto front marked."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from splitleak.cuts import Cut, cut_sort_key
from splitleak.policy import SSIM_UNRECOGNISABLE
from splitleak.reports.canvas import CONTENT_BOTTOM, CONTENT_TOP, axes_at, page, text_at
from splitleak.reports.decision import pareto_front  # noqa: F401  (re-exported: the front is the decision's)
from splitleak.reports.labels import place_labels
from splitleak.reports.style import MARGIN, MUTED, cut_marker, defense_color


def axis_limits(
    values: np.ndarray, lows: np.ndarray, highs: np.ndarray, floor: float, ceil: float, min_span: float, pad: tuple[float, float] = (0.12, 0.03)
) -> tuple[float, float]:
    """An axis range holding every finite value and CI bound, padded by pad[0] of the span (at
    least pad[1]), within [floor, ceil], at least `min_span` wide."""
    finite = np.concatenate([v[np.isfinite(v)] for v in (values, lows, highs)])
    if not len(finite):
        return floor, ceil
    low, high = float(finite.min()), float(finite.max())
    pad = max((high - low) * pad[0], pad[1])
    low, high = max(floor, low - pad), min(ceil, high + pad)
    if high - low < min_span:
        centre = (low + high) / 2
        low, high = max(floor, centre - min_span / 2), min(ceil, centre + min_span / 2)
    return low, high


def _point_label(row: pd.Series, multiple_cuts: bool) -> str:
    label = row["defense_label"]
    return f"{label}, cut {row['cut']}" if multiple_cuts else label


def tradeoff_page(summary: pd.DataFrame, subtitle: str) -> Figure:
    """Accuracy (Wilson CI) against worst-case SSIM (bootstrap CI) for every checkpoint."""
    fig = page("Privacy-utility trade-off", subtitle)
    ax = axes_at(fig, MARGIN + 0.7, CONTENT_BOTTOM + 1.05, 7.3, CONTENT_TOP - CONTENT_BOTTOM - 1.25)
    x = summary["ssim_worst"].to_numpy(dtype=float)
    y = summary["accuracy"].to_numpy(dtype=float)
    x_lo, x_hi = summary["ssim_worst_ci_low"].to_numpy(dtype=float), summary["ssim_worst_ci_high"].to_numpy(dtype=float)
    y_lo, y_hi = summary["accuracy_ci_low"].to_numpy(dtype=float), summary["accuracy_ci_high"].to_numpy(dtype=float)
    low, high = axis_limits(x, x_lo, x_hi, -1.0, 1.0, 0.4)
    ax.set_xlim(min(low, -0.02), max(high, 1.03))  # always the whole 0..1 scale, so 0.3 is in view
    ax.set_ylim(*axis_limits(y, y_lo, y_hi, 0.0, 1.0, 0.15))
    xmin, xmax = ax.get_xlim()
    if xmin < SSIM_UNRECOGNISABLE:
        ax.axvspan(xmin, min(SSIM_UNRECOGNISABLE, xmax), color="#e3f2e3", zorder=0, linewidth=0)
        ax.text(xmin + 0.01 * (xmax - xmin), ax.get_ylim()[1] - 0.01 * np.diff(ax.get_ylim())[0], f"SSIM < {SSIM_UNRECOGNISABLE:g}:\nunrecognisable\n(He et al. 2019)", fontsize=7.5, color="#2e7d32", va="top", ha="left")
    if xmin < SSIM_UNRECOGNISABLE < xmax:
        ax.axvline(SSIM_UNRECOGNISABLE, color="#2e7d32", linestyle="--", linewidth=0.8)

    cuts = sorted(summary["cut"].unique().tolist(), key=cut_sort_key)
    others = tuple(sorted(d for d in summary["defense"].unique() if d not in ("none", "nopeek", "noise", "dropout")))
    front = pareto_front(x, y)
    ok = np.isfinite(x) & np.isfinite(y)
    for i in np.flatnonzero(ok):
        row = summary.iloc[i]
        color = defense_color(row["defense"], others)
        xerr = [[max(x[i] - x_lo[i], 0)], [max(x_hi[i] - x[i], 0)]] if np.isfinite(x_lo[i]) else None
        yerr = [[max(y[i] - y_lo[i], 0)], [max(y_hi[i] - y[i], 0)]] if np.isfinite(y_lo[i]) else None
        ax.errorbar([x[i]], [y[i]], xerr=xerr, yerr=yerr, fmt="none", ecolor=color, elinewidth=0.9, alpha=0.55, capsize=2, zorder=2)
        ax.plot([x[i]], [y[i]], linestyle="none", marker=cut_marker(cuts.index(row["cut"])), markersize=7, color=color, markeredgecolor="white", markeredgewidth=0.6, zorder=4)
        if front[i]:
            ax.plot([x[i]], [y[i]], linestyle="none", marker="o", markersize=13, markerfacecolor="none", markeredgecolor="#111111", markeredgewidth=1.0, zorder=3)
    if front.sum() > 1:
        order = np.flatnonzero(front)[np.argsort(x[front], kind="stable")]
        ax.plot(x[order], y[order], drawstyle="steps-post", color="#111111", linewidth=0.9, linestyle=":", zorder=1)
    ax.set_xlabel("Worst-case SSIM over attacks (mean over test images, 95% CI) — higher = more leakage")
    ax.set_ylabel("Task accuracy (95% Wilson interval) — higher = more utility")
    multiple_cuts = len(cuts) > 1
    labels = [_point_label(summary.iloc[i], multiple_cuts) for i in np.flatnonzero(ok)]
    bars = [(x[i], y_lo[i], x[i], y_hi[i]) for i in np.flatnonzero(ok) if np.isfinite(y_lo[i])]
    bars += [(x_lo[i], y[i], x_hi[i], y[i]) for i in np.flatnonzero(ok) if np.isfinite(x_lo[i])]
    annotations, clash = ([], 0.0) if len(labels) > MAX_NAMED else place_labels(ax, x[ok], y[ok], labels, obstacles=bars)
    if len(labels) > MAX_NAMED or clash > MAX_CLASH:  # too crowded for names: number the points, list the names aside
        for annotation in annotations:
            annotation.remove()
        place_labels(ax, x[ok], y[ok], [str(k + 1) for k in range(len(labels))], obstacles=bars, fontsize=7.5)
        _key(fig, labels)
    _legend(fig, ax, summary, cuts, others)
    _caption(fig, summary, ok)
    return fig


MAX_NAMED = 10  # more points than this are numbered, with their names listed beside the plot
MAX_CLASH = 15.0  # square points of label overlap tolerated before points are numbered instead


def _key(fig: Figure, labels: list[str]) -> None:
    lines = [f"{k + 1:>2}  {label}" for k, label in enumerate(labels)]
    text_at(fig, 8.85, 5.75, "Points\n" + "\n".join(lines), fontsize=7, family="monospace", va="top", ha="left", linespacing=1.35)


def _legend(fig: Figure, ax, summary: pd.DataFrame, cuts: list[Cut], others: tuple[str, ...]) -> None:
    handles = []
    for defense in dict.fromkeys(summary["defense"]):
        handles.append(Line2D([], [], linestyle="none", marker="o", color=defense_color(defense, others), label=defense if defense != "none" else "no defense"))
    if len(cuts) > 1:
        for k, cut in enumerate(cuts):
            handles.append(Line2D([], [], linestyle="none", marker=cut_marker(k), color="#777777", label=f"cut {cut}"))
    handles.append(Line2D([], [], linestyle=":", marker="o", markerfacecolor="none", markeredgecolor="#111111", color="#111111", markersize=10, label="Pareto front"))
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(ax.get_position().x1 + 0.02, ax.get_position().y1), frameon=False, fontsize=8)


def _caption(fig: Figure, summary: pd.DataFrame, ok: np.ndarray) -> None:
    lines = [
        "Each point is one checkpoint.",
        "Left = less leakage, up = more utility.",
        "Pareto front: no other checkpoint leaks less",
        "and is at least as accurate (ringed, dotted).",
        "Worst case = the per-image worst case over",
        "the attacks (each image's best reconstruction;",
        "the verdict's measure); error bars: bootstrap",
        "CI of its mean (x) and Wilson interval of the",
        "accuracy (y).",
    ]
    missing = [str(r) for r, good in zip(summary["label"], ok) if not good]
    if missing:
        lines.append("Not shown (no SSIM or accuracy): " + "; ".join(missing))
    text_at(fig, 8.85, CONTENT_BOTTOM + 1.05, "\n".join(lines), fontsize=7.5, color=MUTED, va="bottom", ha="left", linespacing=1.4)
