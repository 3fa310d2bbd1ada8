"""Point labels that do not overlap: greedy placement over candidate offsets, measured in pixels.

Each label tries offsets around its point, nearest first, and takes the one whose box overlaps
least with the labels already placed, every point marker and the axes' edges; labels moved
further than the nearest ring get a thin leader line. Deterministic: no randomness.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.text import Annotation

RINGS = (9.0, 18.0, 30.0, 44.0, 60.0, 80.0)  # offsets in points
DIRECTIONS = (
    (1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1),
    (2, 1), (2, -1), (-2, 1), (-2, -1), (1, 2), (1, -2), (-1, 2), (-1, -2),
)
MARKER_HALF = 5.0  # half-size of a point marker's keep-out box, in points


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Overlap area of two boxes (x0, y0, x1, y1)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(w, 0.0) * max(h, 0.0)


def _box(anchor: np.ndarray, size: np.ndarray, direction: tuple[int, int]) -> np.ndarray:
    """The label's box when its anchor corner sits at `anchor`, extending away from the point."""
    dx, dy = direction
    x0 = anchor[0] if dx > 0 else anchor[0] - size[0] if dx < 0 else anchor[0] - size[0] / 2
    y0 = anchor[1] if dy > 0 else anchor[1] - size[1] if dy < 0 else anchor[1] - size[1] / 2
    return np.array([x0, y0, x0 + size[0], y0 + size[1]])


def place_labels(
    ax: Axes, xs: Sequence[float], ys: Sequence[float], texts: Sequence[str], *,
    obstacles: Sequence[tuple[float, float, float, float]] = (), fontsize: float = 7.5, color: str = "#222222",
) -> tuple[list[Annotation], float]:
    """Annotate each (x, y) with its text where it overlaps least; axis limits must be final.

    `obstacles` are further boxes (x0, y0, x1, y1 in data units, e.g. error bars) to keep clear
    of, less strictly than labels and markers. Returns the annotations and the overlap left between labels (and with other points'
    markers), in square points: 0 means every label is clear."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    to_px = fig.dpi / 72.0
    points = ax.transData.transform(np.column_stack([xs, ys])) if len(xs) else np.empty((0, 2))
    frame = ax.get_window_extent(renderer)
    keep_out = [np.array([p[0] - MARKER_HALF * to_px, p[1] - MARKER_HALF * to_px, p[0] + MARKER_HALF * to_px, p[1] + MARKER_HALF * to_px]) for p in points]
    soft = [_data_box(ax, box, to_px) for box in obstacles]
    placed: list[np.ndarray] = []
    out = []
    clash = 0.0
    for point, text in zip(points, texts):
        probe = ax.text(0, 0, text, fontsize=fontsize)
        extent = probe.get_window_extent(renderer)
        probe.remove()
        size = np.array([extent.width + 2 * to_px, extent.height + 2 * to_px])
        best = None
        for ring in RINGS:
            for direction in DIRECTIONS:
                norm = np.hypot(*direction)
                offset = np.array(direction) / norm * ring * to_px
                box = _box(point + offset, size, direction)
                cost = sum(_overlap(box, other) for other in placed) * 4
                cost += sum(_overlap(box, other) for other in keep_out) * 2
                cost += sum(_overlap(box, other) for other in soft)
                outside = size[0] * size[1] - _overlap(box, np.array([frame.x0, frame.y0, frame.x1, frame.y1]))
                cost += outside * 8 + ring * 0.5 * to_px
                if best is None or cost < best[0] - 1e-9:
                    best = (cost, ring, direction, box)
        assert best is not None
        _, ring, direction, box = best
        clash += sum(_overlap(box, other) for other in placed)
        clash += sum(_overlap(box, other) for j, other in enumerate(keep_out) if not np.allclose(points[j], point))
        placed.append(box)
        out.append(_annotate(ax, point, ring, direction, text, fontsize, color))
    return out, clash / to_px**2


def _data_box(ax: Axes, box: tuple[float, float, float, float], to_px: float) -> np.ndarray:
    """A data-space box in pixels, at least 2 points thick (a line's keep-out zone)."""
    (x0, y0), (x1, y1) = ax.transData.transform([(box[0], box[1]), (box[2], box[3])])
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    grow_x, grow_y = max(0.0, to_px - (x1 - x0) / 2), max(0.0, to_px - (y1 - y0) / 2)
    return np.array([x0 - grow_x, y0 - grow_y, x1 + grow_x, y1 + grow_y])


def _annotate(ax: Axes, point: np.ndarray, ring: float, direction: tuple[int, int], text: str, fontsize: float, color: str) -> Annotation:
    dx, dy = direction
    norm = np.hypot(dx, dy)
    xy = ax.transData.inverted().transform(point)
    ha = "left" if dx > 0 else "right" if dx < 0 else "center"
    va = "bottom" if dy > 0 else "top" if dy < 0 else "center"
    arrow = {"arrowstyle": "-", "color": "#777777", "linewidth": 0.6, "shrinkA": 0, "shrinkB": 4} if ring > RINGS[0] else None
    return ax.annotate(
        text, xy=xy, xytext=(dx / norm * ring, dy / norm * ring), textcoords="offset points",
        ha=ha, va=va, fontsize=fontsize, color=color, arrowprops=arrow, zorder=5,
    )
