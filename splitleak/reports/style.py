"""Page size, fonts, colours and markers shared by every report page."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import matplotlib

PAGE_SIZE = (11.69, 8.27)  # A4 landscape, inches
MARGIN = 0.5  # inches on every side

# Only fonts that ship with matplotlib, so every machine draws (and embeds) the same glyphs.
RC: dict[str, Any] = {
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "font.monospace": ["DejaVu Sans Mono"],
    "mathtext.fontset": "dejavusans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "pdf.fonttype": 42,
    "pdf.compression": 6,
    "image.interpolation": "none",
    "svg.hashsalt": "splitleak",
    "savefig.dpi": 100,
}

DEFENSE_COLORS: dict[str, str] = {
    "none": "#444444",
    "nopeek": "#1f77b4",
    "noise": "#ff7f0e",
    "dropout": "#2ca02c",
}
OTHER_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
ATTACK_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
CUT_MARKERS = ("o", "s", "^", "D", "v", "P", "X")

VERDICT_COLORS: dict[str, str] = {
    "reconstructable": "#f6c9c4",
    "borderline": "#fbe3a6",
    "unrecognisable": "#cde8cd",
    "unknown": "#e6e6e6",
}
VERDICT_EDGE: dict[str, str] = {  # stronger versions, for bars
    "reconstructable": "#d9534f",
    "borderline": "#e0a800",
    "unrecognisable": "#4caf50",
    "unknown": "#999999",
}
MUTED = "#666666"


@contextlib.contextmanager
def report_style() -> Iterator[None]:
    """Apply the report's fonts and defaults for the duration of the block (restored after)."""
    with matplotlib.rc_context(RC):
        yield


def defense_color(defense: str, known_others: tuple[str, ...] = ()) -> str:
    """Colour of a defense: fixed for the built-in ones, then by position among the others."""
    if defense in DEFENSE_COLORS:
        return DEFENSE_COLORS[defense]
    index = known_others.index(defense) if defense in known_others else 0
    return OTHER_COLORS[index % len(OTHER_COLORS)]


def attack_color(index: int) -> str:
    return ATTACK_COLORS[index % len(ATTACK_COLORS)]


def cut_marker(index: int) -> str:
    return CUT_MARKERS[index % len(CUT_MARKERS)]


PRIVACY_GREEN = "#2e7d32"


def ssim_line(ax: Any, *, vertical: bool = False) -> None:
    """The labelled SSIM privacy line on `ax` (horizontal unless `vertical`): He et al. 2019 call
    reconstructions with SSIM below it unrecognisable."""
    from splitleak.policy import SSIM_UNRECOGNISABLE

    label = f"SSIM {SSIM_UNRECOGNISABLE:g}: unrecognisable below (He et al. 2019)"
    if vertical:
        ax.axvline(SSIM_UNRECOGNISABLE, color=PRIVACY_GREEN, linestyle="--", linewidth=0.9, zorder=3)
        ax.text(1.0, 1.03, f"dashed line: SSIM {SSIM_UNRECOGNISABLE:g}, unrecognisable below", transform=ax.transAxes,
                fontsize=6.5, color=PRIVACY_GREEN, ha="right", va="bottom")
    else:
        ax.axhline(SSIM_UNRECOGNISABLE, color=PRIVACY_GREEN, linestyle="--", linewidth=0.8)
        ax.text(0.995, SSIM_UNRECOGNISABLE, label, transform=ax.get_yaxis_transform(), fontsize=6.5, color=PRIVACY_GREEN, ha="right", va="bottom",
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1.0}, zorder=5)
