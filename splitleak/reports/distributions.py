"""Per-sample metric distributions per checkpoint and attack: box plots of SSIM, LPIPS and PSNR,
and semantic accuracy as a rate (bar with its bootstrap CI)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from splitleak.policy import SSIM_UNRECOGNISABLE
from splitleak.reports.canvas import CONTENT_BOTTOM, CONTENT_TOP, HEIGHT, MARGIN, WIDTH, axes_at, page, text_at
from splitleak.reports.runs import Run
from splitleak.reports.style import MUTED, attack_color, ssim_line
from splitleak.reports.tables import attack_summary, chance_attacks

RUNS_PER_PAGE = 6
PANELS = (
    ("ssim", "SSIM (higher = more leakage)"),
    ("lpips", "LPIPS (lower = more leakage)"),
    ("psnr", "PSNR in dB (higher = more leakage)"),
    ("semantic_accuracy", "Semantic accuracy: share of labels that leak"),
)


def _values(run: Run, attack: str, metric: str) -> np.ndarray:
    rows = run.table[(run.table["attack"] == attack) & (run.table["metric"] == metric) & run.table["sample"].notna()]
    return rows["value"].to_numpy(dtype=float)


def _positions(runs: Sequence[Run], attacks: Sequence[str]) -> tuple[dict[tuple[int, str], float], float]:
    width = 0.8 / max(len(attacks), 1)
    return {(i, a): i + (k - (len(attacks) - 1) / 2) * width for i in range(len(runs)) for k, a in enumerate(attacks)}, width


def _box_panel(ax: Axes, runs: Sequence[Run], attacks: Sequence[str], metric: str) -> int:
    """Box plots (whiskers 1.5 IQR, white diamond = mean); returns how many +inf values were left out."""
    positions, width = _positions(runs, attacks)
    dropped = 0
    for i, run in enumerate(runs):
        for k, attack in enumerate(attacks):
            values = _values(run, attack, metric)
            dropped += int(np.isinf(values).sum())
            values = values[np.isfinite(values)]
            if not len(values):
                continue
            box = ax.boxplot(
                [values], positions=[positions[(i, attack)]], widths=width * 0.85, patch_artist=True, showmeans=True,
                flierprops={"marker": ".", "markersize": 2.5, "markeredgecolor": attack_color(k), "alpha": 0.6},
                meanprops={"marker": "D", "markersize": 3.5, "markerfacecolor": "white", "markeredgecolor": "#222222"},
                medianprops={"color": "#222222", "linewidth": 1.0}, whiskerprops={"color": attack_color(k)},
                capprops={"color": attack_color(k)}, manage_ticks=False,
            )
            for patch in box["boxes"]:
                patch.set_facecolor(attack_color(k))
                patch.set_alpha(0.45)
                patch.set_edgecolor(attack_color(k))
    return dropped


def _rate_panel(ax: Axes, runs: Sequence[Run], attacks: Sequence[str]) -> None:
    positions, width = _positions(runs, attacks)
    for i, run in enumerate(runs):
        summary = attack_summary(run)
        at_chance = set(chance_attacks(run))
        for k, attack in enumerate(attacks):
            row = summary[(summary["attack"] == attack) & (summary["metric"] == "semantic_accuracy")]
            if row.empty:
                continue
            mean, low, high = (float(row[c].iloc[0]) for c in ("mean", "ci_low", "ci_high"))
            err = [[max(mean - low, 0)], [max(high - mean, 0)]] if np.isfinite(low) else None
            hatch = "////" if attack in at_chance else None  # its CI reaches the chance level
            ax.bar([positions[(i, attack)]], [mean], width=width * 0.85, color=attack_color(k), alpha=0.55, yerr=err, capsize=2, error_kw={"elinewidth": 0.8}, hatch=hatch)
        for metric, style in (("semantic_reference", "--"), ("semantic_chance", ":")):
            level = run.table[(run.table["attack"] == "") & (run.table["metric"] == metric)]
            if not level.empty:
                value = float(level["value"].iloc[0])
                ax.plot([i - 0.45, i + 0.45], [value, value], color="#222222", linestyle=style, linewidth=0.9)
    ax.set_ylim(0, 1.05)


def _empty(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, "\n".join(textwrap.wrap(message, 70)), transform=ax.transAxes, ha="center", va="center", fontsize=8, color=MUTED)


def _missing_reason(runs: Sequence[Run], metric: str) -> str:
    if metric == "lpips":
        reasons = sorted({str(r.provenance.lpips.get("reason", "")) for r in runs} - {""})
        return "LPIPS n/a: " + ("; ".join(reasons) if reasons else "no LPIPS rows")
    if metric == "semantic_accuracy":
        reasons = sorted({str(r.provenance.semantic_classifier.get("reason", "")) for r in runs} - {""})
        return "Semantic accuracy n/a: " + ("; ".join(reasons) if reasons else "no semantic_accuracy rows")
    return f"no {metric} rows"


def distribution_pages(runs: Sequence[Run], subtitle: str) -> list[Figure]:
    """2 x 2 panels per page, up to RUNS_PER_PAGE checkpoints each."""
    attacks = list(dict.fromkeys(a for r in runs for a in r.attacks))
    pages = []
    chunks = [runs[i : i + RUNS_PER_PAGE] for i in range(0, len(runs), RUNS_PER_PAGE)]
    for number, chunk in enumerate(chunks):
        title = "Per-sample leakage distributions" + (f" ({number + 1}/{len(chunks)})" if len(chunks) > 1 else "")
        fig = page(title, subtitle)
        width, gap = 4.75, 0.85
        bottom = CONTENT_BOTTOM + 0.95
        height = (CONTENT_TOP - 0.35 - bottom - gap) / 2
        for p, (metric, label) in enumerate(PANELS):
            col, row = p % 2, p // 2
            ax = axes_at(fig, MARGIN + 0.55 + col * (width + 0.75), bottom + (1 - row) * (height + gap), width, height)
            ax.set_title(label, fontsize=9, loc="left")
            present = any(metric in set(r.table["metric"]) for r in chunk)
            if not present:
                _empty(ax, _missing_reason(chunk, metric))
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
                continue
            if metric == "semantic_accuracy":
                _rate_panel(ax, chunk, attacks)
            else:
                dropped = _box_panel(ax, chunk, attacks, metric)
                if dropped:
                    ax.text(1.0, 1.01, f"{dropped} identical reconstructions (PSNR +inf) left out", transform=ax.transAxes, ha="right", va="bottom", fontsize=6.5, color=MUTED)
            if metric == "ssim":
                ssim_line(ax)
            ax.set_xlim(-0.6, len(chunk) - 0.4)
            ax.set_xticks(range(len(chunk)))
            chars = max(8, min(22, int(width / len(chunk) * 12)))  # ~12 characters of 7-pt text per inch
            ax.set_xticklabels([textwrap.fill(r.label, chars) for r in chunk], fontsize=7)
            ax.grid(axis="x", visible=False)
        handles = [Patch(facecolor=attack_color(k), alpha=0.55, label=a) for k, a in enumerate(attacks)]
        fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(MARGIN / WIDTH, (CONTENT_BOTTOM + 0.42) / HEIGHT), ncol=len(handles), frameon=False, title="attack:", alignment="left")
        left = MARGIN + 0.1 + 1.1 * len(handles) + 0.5
        notes = (
            f"Boxes: quartiles, whiskers 1.5 IQR, dots beyond; white diamond = mean. SSIM: dashed line at {SSIM_UNRECOGNISABLE:g} (He et al. 2019: unrecognisable below).",
            "Semantic accuracy: mean with bootstrap 95% CI; dashed line = the same classifier on the originals (a reference, not a bound: "
            "reconstructions can be recognised where their originals are not); dotted line = chance (the most frequent label's share); "
            "hatched = at chance (its CI reaches the dotted line).",
        )
        chars = int((WIDTH - MARGIN - left) * 14)  # ~14 characters of 7-pt text per inch
        text_at(
            fig, left, CONTENT_BOTTOM + 0.3, "\n".join(textwrap.fill(n, chars) for n in notes),
            fontsize=7, color=MUTED, ha="left", va="center", linespacing=1.5,
        )
        pages.append(fig)
    return pages
