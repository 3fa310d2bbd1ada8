"""Reconstruction galleries: the stored test images next to each attack's reconstruction, and the
best, median and worst reconstructions by the primary metric (SSIM) per attack.

Images come from reconstructions.safetensors ("indices", "original", "attack/<name>"). The
best / median / worst images of all scored samples are shown when they are stored (keys
"extremes/<attack>/indices|original|reconstruction", or when they happen to be in the gallery);
otherwise the best / median / worst of the stored gallery images are shown, and the page says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from splitleak.metrics.specs import METRICS, PRIMARY_METRIC
from splitleak.reports.canvas import CONTENT_BOTTOM, CONTENT_TOP, CONTENT_WIDTH, MARGIN, overlay, page, text_at
from splitleak.reports.runs import Run
from splitleak.reports.style import MUTED

MAX_COLUMNS = 16
MIN_PIXELS = 112  # images are repeated (nearest) to at least this many pixels a side, so viewers
# that smooth embedded images still show the real pixels
LABEL_WIDTH = 0.95  # inches for the row labels on the left
CAPTION = 0.16  # inches below each image for its caption
RANKS = ("best", "median", "worst")


_PRIMARY = METRICS[PRIMARY_METRIC].display


@dataclass(frozen=True)
class Extremes:
    """Best, median and worst reconstructions of one attack and where they were chosen from."""

    attack: str
    samples: tuple[int, ...]
    scores: tuple[float, ...]  # of the primary metric
    originals: np.ndarray
    reconstructions: np.ndarray
    scope: str  # "all" (every scored image) or "gallery" (only the stored ones)


def to_image(x: np.ndarray, value_range: tuple[float, float]) -> tuple[np.ndarray, dict]:
    """[C, H, W] -> an array for imshow (row 0 at the top) and its colour-mapping keywords.

    Grey images keep their values with vmin/vmax fixed to the value range; RGB images are scaled
    to [0, 1] from the value range and clipped; other channel counts are averaged to grey."""
    low, high = value_range
    array = np.asarray(x, dtype=np.float64)
    if array.ndim == 2:
        array = array[None]
    if array.shape[0] == 3:
        return np.clip((array.transpose(1, 2, 0) - low) / (high - low), 0.0, 1.0), {}
    grey = array[0] if array.shape[0] == 1 else array.mean(axis=0)
    return grey, {"cmap": "gray", "vmin": low, "vmax": high}


def _show(ax: Axes, x: np.ndarray, value_range: tuple[float, float], left: float, bottom: float, size: float) -> None:
    """Draw one image on the page overlay (inches), row 0 at the top, with a thin frame."""
    image, kwargs = to_image(x, value_range)
    factor = max(1, -(-MIN_PIXELS // image.shape[0]))
    image = image.repeat(factor, axis=0).repeat(factor, axis=1)
    ax.imshow(image, interpolation="none", origin="upper", extent=(left, left + size, bottom, bottom + size), aspect="auto", **kwargs)
    ax.add_patch(Rectangle((left, bottom), size, size, fill=False, edgecolor="#9a9a9a", linewidth=0.4))


def per_sample_primary(run: Run, attack: str) -> pd.Series:
    """The primary metric (`PRIMARY_METRIC`: SSIM) of every scored sample under `attack`,
    indexed by test-image index."""
    rows = run.table[(run.table["attack"] == attack) & (run.table["metric"] == PRIMARY_METRIC) & run.table["sample"].notna()]
    return pd.Series(rows["value"].to_numpy(dtype=float), index=rows["sample"].astype("int64").to_numpy())


def _rank(values: pd.Series) -> tuple[int, int, int]:
    """Sample ids of the best (most leakage in the primary metric's direction), median (lower) and
    worst value; ties by sample id, as evaluate picks them (splitleak.scoring.extremes)."""
    most_first = METRICS[PRIMARY_METRIC].leakage_direction == "lower"
    ordered = values.rename_axis("sample").reset_index(name="v").sort_values(["v", "sample"], ascending=[most_first, True], kind="stable")
    ids = ordered["sample"].to_numpy()
    return int(ids[0]), int(ids[len(ids) // 2]), int(ids[-1])


def extremes(run: Run, attack: str) -> Extremes | None:
    """Best / median / worst reconstructions by the primary metric, of all scored images when
    stored, else of the gallery; None without its rows or stored images."""
    scores = per_sample_primary(run, attack)
    recon = run.reconstructions
    if scores.empty:
        return None
    stored = f"extremes/{attack}/indices"
    if stored in recon:
        ids = tuple(int(i) for i in recon[stored].tolist())
        return Extremes(attack, ids, tuple(float(scores.get(i, np.nan)) for i in ids), recon[f"extremes/{attack}/original"], recon[f"extremes/{attack}/reconstruction"], "all")
    if "indices" not in recon or f"attack/{attack}" not in recon:
        return None
    gallery = [int(i) for i in recon["indices"].tolist()]
    position = {sample: k for k, sample in enumerate(gallery)}
    overall = _rank(scores)
    if all(i in position for i in overall):
        ids, scope = overall, "all"
    else:
        in_gallery = scores[scores.index.isin(gallery)]
        if in_gallery.empty:
            return None
        ids, scope = _rank(in_gallery), "gallery"
    rows = [position[i] for i in ids]
    return Extremes(attack, ids, tuple(float(scores[i]) for i in ids), recon["original"][rows], recon[f"attack/{attack}"][rows], scope)


def has_gallery(run: Run) -> bool:
    return "original" in run.reconstructions and "indices" in run.reconstructions


def gallery_page(run: Run, subtitle: str) -> Figure:
    """One page per checkpoint: gallery grid on top, best / median / worst per attack below."""
    fig = page(f"Reconstructions: {run.label}", subtitle)
    recon = run.reconstructions
    attacks = [a for a in run.attacks if f"attack/{a}" in recon]
    originals, indices = recon["original"], [int(i) for i in recon["indices"].tolist()]
    columns = min(len(indices), MAX_COLUMNS)
    found = [e for e in (extremes(run, a) for a in attacks) if e is not None]
    rows_top, rows_bottom = 1 + len(attacks), len(found)
    heading = 0.32
    available = CONTENT_TOP - CONTENT_BOTTOM - 2 * heading - 0.2
    size = min((CONTENT_WIDTH - LABEL_WIDTH) / max(columns, 1) - 0.05, available / max(rows_top + rows_bottom, 1) - CAPTION - 0.04, 1.1)
    step = size + 0.05
    value_range = run.value_range
    canvas = overlay(fig)
    top = CONTENT_TOP
    shown = f"first {columns} of {len(indices)}" if columns < len(indices) else f"{columns}"
    text_at(fig, MARGIN, top, f"Stored test images ({shown}) and each attack's reconstruction; number under each: per-sample {_PRIMARY}", fontsize=9, weight="bold", va="top")
    top -= heading
    scores = {a: per_sample_primary(run, a) for a in attacks}
    for r, name in enumerate(["original", *attacks]):
        y = top - r * (size + CAPTION + 0.04) - size
        text_at(fig, MARGIN, y + size / 2, name, fontsize=8.5, va="center", ha="left", weight="bold" if r == 0 else "normal")
        images = originals if r == 0 else recon[f"attack/{name}"]
        for c in range(columns):
            _show(canvas, images[c], value_range, MARGIN + LABEL_WIDTH + c * step, y, size)
            caption = f"#{indices[c]}" if r == 0 else _fmt(scores[name].get(indices[c], np.nan))
            text_at(fig, MARGIN + LABEL_WIDTH + c * step + size / 2, y - 0.02, caption, fontsize=6.3, color=MUTED, ha="center", va="top")
    top -= rows_top * (size + CAPTION + 0.04) + 0.12
    if found:
        _draw_extremes(fig, canvas, found, top, size, value_range)
    return fig


def _fmt(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.2f}"


def _draw_extremes(fig: Figure, canvas: Axes, found: list[Extremes], top: float, size: float, value_range: tuple[float, float]) -> None:
    scopes = {e.scope for e in found}
    if scopes == {"all"}:
        title = f"Best, median and worst reconstruction by {_PRIMARY} among all scored test images (original | reconstruction)"
    elif scopes == {"gallery"}:
        title = (f"Best, median and worst of the stored test images by {_PRIMARY} (original | reconstruction); "
                 "the results do not store the extremes of all scored images")
    else:
        title = (f"Best, median and worst reconstruction by {_PRIMARY} (original | reconstruction); among all scored images, "
                 "or (*) among the stored test images where the others are not stored")
    text_at(fig, MARGIN, top, title, fontsize=9, weight="bold", va="top")
    top -= 0.32
    fit_height = (top - CONTENT_BOTTOM) / len(found) - CAPTION - 0.06
    size = max(size, min(1.3, fit_height, (CONTENT_WIDTH - LABEL_WIDTH - 3 * 0.55) / 6))
    group = (CONTENT_WIDTH - LABEL_WIDTH) / len(RANKS)  # spread the three pairs so captions have room
    for r, e in enumerate(found):
        y = top - r * (size + CAPTION + 0.06) - size
        text_at(fig, MARGIN, y + size / 2, e.attack + (" *" if e.scope == "gallery" and scopes != {"gallery"} else ""), fontsize=8.5, va="center", ha="left")
        for k, rank in enumerate(RANKS):
            x = MARGIN + LABEL_WIDTH + k * group
            _show(canvas, e.originals[k], value_range, x, y, size)
            _show(canvas, e.reconstructions[k], value_range, x + size + 0.05, y, size)
            text_at(fig, x + size + 0.025, y - 0.02, f"{rank}: {_PRIMARY} {_fmt(e.scores[k])}, test image #{e.samples[k]}", fontsize=6.8, color=MUTED, ha="center", va="top")
