"""A blank report page (A4 landscape Figure with a title) and inch-based placement helpers."""

from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from splitleak.reports.style import MARGIN, MUTED, PAGE_SIZE

HEADER = 1.0  # inches from the top of the page to the top of the content
FOOTER = 0.45  # inches kept free at the bottom (page number)
WIDTH, HEIGHT = PAGE_SIZE
CONTENT_WIDTH = WIDTH - 2 * MARGIN
CONTENT_TOP = HEIGHT - HEADER  # inches from the bottom
CONTENT_BOTTOM = FOOTER + 0.1


def page(title: str, subtitle: str = "") -> Figure:
    """A new page with its title (and a grey subtitle line) at the top left."""
    fig = Figure(figsize=PAGE_SIZE)
    FigureCanvasAgg(fig)  # a renderer for measuring text (label placement)
    fig.text(MARGIN / WIDTH, 1 - MARGIN / HEIGHT, title, fontsize=15, weight="bold", va="top", ha="left")
    if subtitle:
        fig.text(MARGIN / WIDTH, 1 - (MARGIN + 0.3) / HEIGHT, subtitle, fontsize=9, color=MUTED, va="top", ha="left")
    return fig


def axes_at(fig: Figure, left: float, bottom: float, width: float, height: float, **kwargs) -> Axes:
    """Axes placed in inches from the page's bottom-left corner."""
    return fig.add_axes((left / WIDTH, bottom / HEIGHT, width / WIDTH, height / HEIGHT), **kwargs)


def overlay(fig: Figure) -> Axes:
    """An invisible axes over the whole page whose data coordinates are inches from the
    bottom-left corner: one axes for many images is much cheaper than one axes each."""
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, WIDTH)
    ax.set_ylim(0, HEIGHT)
    ax.set_axis_off()
    return ax


def text_at(fig: Figure, x: float, y: float, text: str, **kwargs):
    """Text placed in inches from the page's bottom-left corner."""
    return fig.text(x / WIDTH, y / HEIGHT, text, **kwargs)
