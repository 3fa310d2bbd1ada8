"""The decision page: the recommendation in words, the settings (seeds, CIs, feasible, the choice)
and accuracy against worst-case SSIM with the budget line, the privacy line and the Pareto front."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from splitleak.cuts import cut_sort_key
from splitleak.policy import SSIM_UNRECOGNISABLE
from splitleak.reports.canvas import CONTENT_BOTTOM, CONTENT_TOP, HEIGHT, WIDTH, axes_at, page, text_at
from splitleak.reports.decision import Decision, Setting, privacy
from splitleak.reports.labels import place_labels
from splitleak.reports.style import MARGIN, MUTED, VERDICT_COLORS, cut_marker, defense_color
from splitleak.reports.tradeoff import axis_limits

TITLE = "Decision"
PARAGRAPH_CHARS = 165  # characters per line of 8.5 pt text across the page
CAVEAT_CHARS = 88  # characters per line of 7 pt text in the left column
TABLE_WIDTH = 5.6  # inches: the left column (table, caveats)
ROW = 0.24  # inches per table row
MAX_ROWS = 14
COLUMNS = (("Setting", 0.0), ("seeds", 1.95), ("accuracy (95% CI)", 2.45), ("worst SSIM (CI)", 3.6), ("verdict", 4.75))
CHOICE_FILL = "#fff3c4"
LABEL_CHARS = 34  # characters of 7.2 pt text the Setting column holds (1.95 in) with room for the mark


def _wrap(text: str, chars: int) -> str:
    return textwrap.fill(text, chars)


def _paragraphs(decisions: Sequence[Decision]) -> str:
    several = len(decisions) > 1
    parts = []
    for d in decisions:
        head = f"Cut {d.group[2]} ({d.group[1]}, {d.group[0]}): " if several else ""
        parts.append(_wrap(head + d.paragraph, PARAGRAPH_CHARS))
    return "\n\n".join(parts)


def _rows(decisions: Sequence[Decision]) -> list[tuple[Decision, Setting, bool]]:
    """(decision, setting, feasible), the choice and the baseline first, then feasible, the front, the rest."""
    rows = []
    for d in decisions:
        for s, ok, on in zip(d.settings, d.feasible, d.front):
            rank = 0 if s is d.choice else 1 if s is d.baseline else 2 if ok else 3 if on else 4
            rows.append((rank, len(rows), d, s, ok))
    rows.sort(key=lambda r: (r[0], r[1]))
    return [(d, s, ok) for _, _, d, s, ok in rows]


def _table(fig: Figure, decisions: Sequence[Decision], top: float) -> float:
    """The settings table from `top` down (inches); returns where it ends."""
    rows = _rows(decisions)
    shown, hidden = rows[:MAX_ROWS], len(rows) - MAX_ROWS
    for name, x in COLUMNS:
        text_at(fig, MARGIN + x, top, name, fontsize=7.5, weight="bold", va="top", ha="left")
    y = top - 0.22
    fig.add_artist(Line2D([MARGIN / WIDTH, (MARGIN + TABLE_WIDTH) / WIDTH], [y / HEIGHT] * 2, color="#999999", linewidth=0.8))
    for d, s, ok in shown:
        verdict = privacy(s)
        if s is d.choice:
            fig.add_artist(Rectangle((MARGIN / WIDTH, (y - ROW) / HEIGHT), TABLE_WIDTH / WIDTH, ROW / HEIGHT, color=CHOICE_FILL, zorder=0))
        color = "#222222" if ok else MUTED
        mark = "★ " if s is d.choice else "✓ " if ok else "   "
        cells = (
            mark + s.label + (" (baseline)" if s is d.baseline else ""), s.seeds_text(), s.accuracy.text(), s.ssim.text(), verdict,
        )
        for (_, x), cell in zip(COLUMNS, cells):
            size = 7.2
            if x == 0.0 and len(cell) > LABEL_CHARS:  # a long setting label: two smaller lines within its column and row
                cell, size = textwrap.fill(cell, LABEL_CHARS + 4, max_lines=2, placeholder="…"), 6.0
            text_at(fig, MARGIN + x, y - ROW / 2, cell, fontsize=size, color=color, va="center", ha="left", weight="bold" if s is d.choice else "normal", linespacing=1.0)
        swatch = VERDICT_COLORS.get(verdict, VERDICT_COLORS["unknown"])
        fig.add_artist(Rectangle(((MARGIN + COLUMNS[-1][1] - 0.1) / WIDTH, (y - ROW + 0.06) / HEIGHT), 0.06 / WIDTH, (ROW - 0.12) / HEIGHT, color=swatch, zorder=1))
        y -= ROW
    notes = [
        f"★ the choice: the lowest worst-case SSIM within the budget (ties: the more accurate); ✓ within the budget "
        f"(mean accuracy at most {decisions[0].budget:g} points below the undefended setting's); grey: beyond it."
    ]
    if hidden > 0:
        notes.append(f"{hidden} more setting{'s' if hidden != 1 else ''} not listed (all are in the plot).")
    notes.append("CIs: 95% t-interval over the seeds' means; with 1 seed, that run's interval over test images (Wilson / bootstrap).")
    text_at(fig, MARGIN, y - 0.08, "\n".join(_wrap(n, CAVEAT_CHARS + 10) for n in notes), fontsize=6.8, color=MUTED, va="top", ha="left", linespacing=1.3)
    return y - 0.08 - 0.14 * sum(_wrap(n, CAVEAT_CHARS + 10).count("\n") + 1 for n in notes)


def _caveats(fig: Figure, decisions: Sequence[Decision], top: float) -> None:
    items = list(dict.fromkeys(c for d in decisions for c in d.caveats))
    text = "\n".join(_wrap("• " + c, CAVEAT_CHARS) for c in items)
    text_at(fig, MARGIN, top, "Caveats", fontsize=8, weight="bold", va="top", ha="left")
    text_at(fig, MARGIN, top - 0.2, text, fontsize=7, color="#333333", va="top", ha="left", linespacing=1.3)


def _limits(values: np.ndarray, lows: np.ndarray, highs: np.ndarray, floor: float, ceil: float, span: float) -> tuple[float, float]:
    return axis_limits(values, lows, highs, floor, ceil, span, pad=(0.1, 0.02))


def _plot(fig: Figure, decisions: Sequence[Decision], left: float, bottom: float, width: float, height: float) -> None:
    settings = [s for d in decisions for s in d.settings]
    x = np.array([s.ssim.value for s in settings], dtype=float)
    y = np.array([s.accuracy.value for s in settings], dtype=float)
    x_lo, x_hi = np.array([s.ssim.low for s in settings]), np.array([s.ssim.high for s in settings])
    y_lo, y_hi = np.array([s.accuracy.low for s in settings]), np.array([s.accuracy.high for s in settings])
    floors = np.array([d.floor for d in decisions], dtype=float)
    ax = axes_at(fig, left, bottom, width, height)
    low, high = _limits(x, x_lo, x_hi, -1.0, 1.0, 0.4)
    lowest = float(np.nanmin(x)) if np.isfinite(x).any() else 0.0
    ax.set_xlim(min(max(low, lowest - 0.1), -0.02), max(high, 1.03))  # a wide seed CI may run off the left edge
    ax.set_ylim(*_limits(y, np.append(y_lo, floors), y_hi, 0.0, 1.0, 0.08))
    xmin, xmax = ax.get_xlim()
    ax.axvspan(xmin, SSIM_UNRECOGNISABLE, color="#e3f2e3", zorder=0, linewidth=0)
    ax.axvline(SSIM_UNRECOGNISABLE, color="#2e7d32", linestyle="--", linewidth=0.9)
    ax.text(xmin + 0.01 * (xmax - xmin), ax.get_ylim()[0] + 0.01 * np.diff(ax.get_ylim())[0], f"privacy line:\nSSIM < {SSIM_UNRECOGNISABLE:g}", fontsize=7, color="#2e7d32", va="bottom", ha="left")
    cuts = sorted({s.cut for s in settings}, key=cut_sort_key)
    others = tuple(sorted({s.defense for s in settings} - {"none", "nopeek", "noise", "dropout"}))
    for d in decisions:
        if math.isfinite(d.floor):
            ax.axhline(d.floor, color="#b71c1c", linestyle="-.", linewidth=0.9)
            name = f"accuracy budget: {d.budget:g} points below undefended" + (f" (cut {d.group[2]})" if len(decisions) > 1 else "")
            ax.text(xmin + 0.01 * (xmax - xmin), d.floor, name, fontsize=7, color="#b71c1c", va="bottom", ha="left")
        _front(ax, d)
    k = 0
    for d in decisions:
        for s in d.settings:
            if np.isfinite(x[k]) and np.isfinite(y[k]):
                _point(ax, s, x[k], y[k], (x_lo[k], x_hi[k]), (y_lo[k], y_hi[k]), defense_color(s.defense, others), cut_marker(cuts.index(s.cut)), s is d.choice)
            k += 1
    ok = np.isfinite(x) & np.isfinite(y)
    labels = [s.defense_label + (f", cut {s.cut}" if len(cuts) > 1 else "") + (f" {s.tag}" if s.tag else "") for s, good in zip(settings, ok) if good]
    place_labels(ax, x[ok], y[ok], labels, fontsize=7)
    ax.set_xlabel("Worst-case SSIM (per-image worst over attacks; mean over seeds, 95% CI)", fontsize=7.5)
    ax.set_ylabel("Task accuracy (mean over seeds, 95% CI)", fontsize=7.5)
    handles = [Line2D([], [], linestyle="none", marker="*", markersize=11, color="#111111", label="the choice"),
               Line2D([], [], linestyle=":", marker="o", markerfacecolor="none", markeredgecolor="#111111", color="#111111", markersize=9, label="Pareto front")]
    ax.legend(handles=handles, loc="lower right", fontsize=7, frameon=False, bbox_to_anchor=(1.0, 0.04))


def _front(ax, d: Decision) -> None:
    on = [s for s, f in zip(d.settings, d.front) if f]
    xs = np.array([s.ssim.value for s in on])
    ys = np.array([s.accuracy.value for s in on])
    for xi, yi in zip(xs, ys):
        ax.plot([xi], [yi], linestyle="none", marker="o", markersize=13, markerfacecolor="none", markeredgecolor="#111111", markeredgewidth=0.9, zorder=3)
    if len(on) > 1:
        order = np.argsort(xs, kind="stable")
        ax.plot(xs[order], ys[order], drawstyle="steps-post", color="#111111", linewidth=0.9, linestyle=":", zorder=1)


def _point(ax, s: Setting, x: float, y: float, xci: tuple[float, float], yci: tuple[float, float], color: str, marker: str, chosen: bool) -> None:
    xerr = [[max(x - xci[0], 0)], [max(xci[1] - x, 0)]] if np.isfinite(xci[0]) else None
    yerr = [[max(y - yci[0], 0)], [max(yci[1] - y, 0)]] if np.isfinite(yci[0]) else None
    ax.errorbar([x], [y], xerr=xerr, yerr=yerr, fmt="none", ecolor=color, elinewidth=0.9, alpha=0.55, capsize=2, zorder=2)
    ax.plot([x], [y], linestyle="none", marker="*" if chosen else marker, markersize=14 if chosen else 7, color=color, markeredgecolor="#111111" if chosen else "white", markeredgewidth=0.6, zorder=5)


def decision_page(decisions: Sequence[Decision], subtitle: str) -> Figure:
    """The page: paragraph(s) on top, the table and caveats on the left, the plot on the right."""
    fig = page(TITLE, subtitle)
    paragraphs = _paragraphs(decisions)
    text_at(fig, MARGIN, CONTENT_TOP, paragraphs, fontsize=8.5, va="top", ha="left", linespacing=1.35)
    below = CONTENT_TOP - 0.17 * (paragraphs.count("\n") + 1) - 0.25
    if not any(d.settings for d in decisions):
        return fig
    end = _table(fig, decisions, below)
    _caveats(fig, decisions, end - 0.15)
    left = MARGIN + TABLE_WIDTH + 0.75
    _plot(fig, decisions, left, CONTENT_BOTTOM + 0.45, WIDTH - MARGIN - left, below - CONTENT_BOTTOM - 0.55)
    return fig
