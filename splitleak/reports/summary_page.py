"""Page 1 (and following, for many checkpoints): one row per checkpoint with its verdict."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.textpath import TextToPath

from splitleak.policy import SSIM_UNRECOGNISABLE
from splitleak.reports.canvas import CONTENT_BOTTOM, CONTENT_TOP, CONTENT_WIDTH, HEIGHT, WIDTH, axes_at, page, text_at
from splitleak.reports.style import MARGIN, MUTED, RC, VERDICT_COLORS, VERDICT_EDGE, ssim_line
from splitleak.reports.tables import DISPLAY_HEADERS, TableCell, display_rows

ROW_HEIGHT = 0.46  # inches
HEADER_HEIGHT = 0.5
ROWS_PER_PAGE = 9
MAIN_SIZE = 8.5
SUB_SIZE = 6.8
PAD = 0.16  # inches of space per column
HEADER_MAX = 1.35  # inches: headers wider than this wrap


def text_width(text: str, size: float, bold: bool = False) -> float:
    """Width in inches of `text` in the report's sans-serif font (measured, not estimated)."""
    if not text:
        return 0.0
    prop = FontProperties(family=RC["font.sans-serif"], size=size, weight="bold" if bold else "normal")
    width, _, _ = TextToPath().get_text_width_height_descent(text, prop, ismath=False)
    return width / 72.0


def _wrap_header(header: str, width: float) -> str:
    """Greedy word wrap of a header to `width` inches."""
    lines: list[str] = []
    for word in header.split():
        if lines and text_width(f"{lines[-1]} {word}", MAIN_SIZE, bold=True) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return "\n".join(lines)


def _column_widths(headers: Sequence[str], rows: Sequence[Sequence[TableCell]]) -> tuple[list[float], float]:
    """Measured widths in inches (widest cell or header word), spare room shared out evenly, and
    the font scale (< 1 when the measured columns are wider than the page and shrink to fit)."""
    widths = []
    for j, header in enumerate(headers):
        bold = j in (0, len(headers) - 1)
        need = min(text_width(header, MAIN_SIZE, bold=True), max(HEADER_MAX, *(text_width(w, MAIN_SIZE, True) for w in header.split())))
        for row in rows:
            need = max(need, text_width(row[j].text, MAIN_SIZE, bold=bold), text_width(row[j].sub, SUB_SIZE))
        widths.append(need + PAD)
    spare = CONTENT_WIDTH - sum(widths)
    if spare >= 0:
        return [w + spare / len(widths) for w in widths], 1.0
    scale = CONTENT_WIDTH / sum(widths)
    return [w * scale for w in widths], scale


def _draw_header(fig: Figure, headers: Sequence[str], widths: Sequence[float], top: float, scale: float = 1.0) -> None:
    x = MARGIN
    for header, width in zip(headers, widths):
        text_at(fig, x + 0.05, top - HEADER_HEIGHT / 2, _wrap_header(header, (width - 0.1) / scale), fontsize=MAIN_SIZE * scale, weight="bold", va="center", ha="left")
        x += width
    fig.add_artist(_hline(top - HEADER_HEIGHT, 1.0))


def _hline(y: float, linewidth: float) -> Line2D:
    return Line2D([MARGIN / WIDTH, 1 - MARGIN / WIDTH], [y / HEIGHT, y / HEIGHT], color="#999999", linewidth=linewidth)


def _draw_row(fig: Figure, cells: Sequence[TableCell], widths: Sequence[float], top: float, category: str, shaded: bool, scale: float = 1.0) -> None:
    bottom = top - ROW_HEIGHT
    if shaded:
        fig.add_artist(Rectangle((MARGIN / WIDTH, bottom / HEIGHT), CONTENT_WIDTH / WIDTH, ROW_HEIGHT / HEIGHT, color="#f5f5f5", zorder=0))
    x = MARGIN
    for j, (cell, width) in enumerate(zip(cells, widths)):
        if j == len(cells) - 1:
            color = VERDICT_COLORS.get(category, VERDICT_COLORS["unknown"])
            fig.add_artist(Rectangle(((x + 0.02) / WIDTH, (bottom + 0.04) / HEIGHT), (width - 0.04) / WIDTH, (ROW_HEIGHT - 0.08) / HEIGHT, color=color, zorder=0))
        weight = "bold" if j in (0, len(cells) - 1) else "normal"
        if cell.sub:
            text_at(fig, x + 0.05, top - 0.15, cell.text, fontsize=MAIN_SIZE * scale, weight=weight, va="center", ha="left")
            text_at(fig, x + 0.05, top - 0.33, cell.sub, fontsize=SUB_SIZE * scale, color=MUTED, va="center", ha="left")
        else:
            text_at(fig, x + 0.05, top - ROW_HEIGHT / 2, cell.text, fontsize=MAIN_SIZE * scale, weight=weight, va="center", ha="left")
        x += width
    fig.add_artist(_hline(bottom, 0.4))


def footnotes(summary: pd.DataFrame) -> list[str]:
    notes = [
        f"Verdict: reconstructable if the per-image worst case over the attacks (each image's best reconstruction; the leakiest "
        f"attack for results of earlier releases) has a mean SSIM above {SSIM_UNRECOGNISABLE:g}; borderline if it has not but "
        f"its 95% CI reaches above {SSIM_UNRECOGNISABLE:g}; unrecognisable otherwise (He, Zhang, Lee 2019 call SSIM < {SSIM_UNRECOGNISABLE:g} unrecognisable).",
        "Worst case: the per-image worst case over the attacks (each image's best reconstruction by that metric; what the verdict "
        "judges), mean over the scored test images with its 95% bootstrap CI; in brackets the single attack with the most leaking "
        "mean (its own mean: report.summary.csv, ssim_max etc.). Semantic acc.: share of reconstructions an attacker's "
        "own classifier labels correctly; orig. = that classifier on the original images (a reference, not a bound: "
        "a reconstruction can be recognised where its original is not, so the two may cross within their CIs); chance = the most "
        "frequent label's share among the scored images (a constant guess); \"at chance\": the 95% CI reaches down to it, no label leaks.",
        "Accuracy: task accuracy on the scored test images, 95% Wilson interval. dCor(x, z): distance correlation between "
        "inputs and the activations the server sees (V-statistic, NoPeek's estimator; jackknife 95% CI); compare only at equal n.",
    ]
    reasons = sorted({str(r) for r in summary["lpips_note"] if r})
    for reason in reasons:
        notes.append(f"* LPIPS n/a: {reason}")
    semantic = sorted({str(r) for r in summary["semantic_note"] if r})
    for reason in semantic:
        notes.append(f"Semantic accuracy n/a: {reason}")
    return notes


FOOTNOTE_LINE = 0.15  # inches per footnote line
FOOTNOTE_CHARS = int(CONTENT_WIDTH / 0.052)
CHART_MIN_HEIGHT = 1.5  # inches: below this the at-a-glance bars are left out


def _wrapped_footnotes(notes: Sequence[str]) -> list[str]:
    return [textwrap.fill(note, FOOTNOTE_CHARS) for note in notes]


def _footnote_height(wrapped: Sequence[str]) -> float:
    return sum((w.count("\n") + 1) * FOOTNOTE_LINE + 0.07 for w in wrapped)


def summary_pages(summary: pd.DataFrame, subtitle: str) -> list[Figure]:
    """The summary table, ROWS_PER_PAGE checkpoints a page, at-a-glance bars of worst-case SSIM
    and accuracy where there is room, and the verdict rule as footnotes at the bottom."""
    rows = display_rows(summary)
    widths, scale = _column_widths(DISPLAY_HEADERS, rows)
    notes = _wrapped_footnotes(footnotes(summary))
    notes_top = CONTENT_BOTTOM + _footnote_height(notes)
    pages = []
    chunks = [list(range(i, min(i + ROWS_PER_PAGE, len(rows)))) for i in range(0, max(len(rows), 1), ROWS_PER_PAGE)]
    for number, chunk in enumerate(chunks):
        title = "Leakage summary" + (f" (continued, {number + 1}/{len(chunks)})" if number else "")
        fig = page(title, subtitle)
        top = CONTENT_TOP
        _draw_header(fig, DISPLAY_HEADERS, widths, top, scale)
        top -= HEADER_HEIGHT
        for k, i in enumerate(chunk):
            _draw_row(fig, rows[i], widths, top, str(summary["verdict_category"].iloc[i]), shaded=k % 2 == 1, scale=scale)
            top -= ROW_HEIGHT
        if top - notes_top - 0.9 >= CHART_MIN_HEIGHT:
            glance_bars(fig, summary.iloc[chunk], top - 0.45, notes_top + 0.45)
        _draw_footnotes(fig, notes, notes_top)
        pages.append(fig)
    return pages


def _draw_footnotes(fig: Figure, wrapped: Sequence[str], top: float) -> None:
    y = top
    for text in wrapped:
        text_at(fig, MARGIN, y, text, fontsize=7.5, color="#333333", va="top", ha="left", linespacing=1.3)
        y -= (text.count("\n") + 1) * FOOTNOTE_LINE + 0.07


def glance_bars(fig: Figure, summary: pd.DataFrame, top: float, bottom: float) -> None:
    """Two bar charts side by side: worst-case SSIM (verdict colours, 0.3 line) and accuracy."""
    labels = summary["label"].tolist()[::-1]
    y = np.arange(len(labels))
    height = min(top - bottom, 0.32 * len(labels) + 0.5)
    left_label = 2.1
    width = (CONTENT_WIDTH - left_label - 0.6) / 2
    panels = (
        ("ssim_worst", "Worst-case SSIM over attacks (95% CI)", True),
        ("accuracy", "Task accuracy (95% Wilson interval)", False),
    )
    for k, (key, title, is_ssim) in enumerate(panels):
        ax = axes_at(fig, MARGIN + left_label + k * (width + 0.6), top - height, width, height)
        values = summary[key].to_numpy(dtype=float)[::-1]
        low = summary[f"{key}_ci_low"].to_numpy(dtype=float)[::-1]
        high = summary[f"{key}_ci_high"].to_numpy(dtype=float)[::-1]
        colors = [VERDICT_EDGE.get(c, "#888888") for c in summary["verdict_category"].tolist()[::-1]] if is_ssim else ["#8a8a8a"] * len(y)
        shown = np.nan_to_num(values)
        err = np.vstack([np.nan_to_num(values - low), np.nan_to_num(high - values)]).clip(min=0)
        ax.barh(y, shown, height=0.6, color=colors, xerr=err, error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "#333333"})
        ax.set_yticks(y)
        ax.set_yticklabels(labels if k == 0 else [""] * len(labels), fontsize=7.5)
        ax.set_xlim(min(0.0, float(np.nanmin(np.append(low, shown)))) if is_ssim else 0.0, 1.0)
        ax.set_title(title, fontsize=8.5, loc="left")
        ax.grid(axis="y", visible=False)
        ax.tick_params(axis="x", labelsize=7)
        if is_ssim:
            ssim_line(ax, vertical=True)
        for yi, value, upper in zip(y, values, high):
            end = np.nanmax([np.nan_to_num(value), upper]) if np.isfinite(upper) else np.nan_to_num(value)
            ax.text(min(end, 0.93) + 0.012, yi, "n/a" if np.isnan(value) else f"{value:.2f}", va="center", ha="left", fontsize=7)
