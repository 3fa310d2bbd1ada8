"""The report's tables: per-attack summaries, the one-row-per-checkpoint summary, the verdict.

Worst case over attacks = the per-image worst case (rows `attack = "worst"`: each image's best
reconstruction by the metric; results without them: the attack with the highest mean SSIM / PSNR /
semantic accuracy or the lowest mean LPIPS), beside the leakiest single attack (means over the
scored test images, 95% bootstrap CIs from `splitleak.uncertainty`). The verdict is the default policy's leakage rule
(`splitleak.policy.VERDICT_RULE`: the per-image worst case's mean SSIM <= 0.3, He et al. 2019's
"unrecognisable" line), the same rule `splitleak gate` checks with its starter policy.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from splitleak.policy import SSIM_UNRECOGNISABLE, VERDICT_RULE, WORST, Measure, ThresholdRule, threshold_failures, worst_measure
from splitleak.reports.runs import Run
from splitleak.uncertainty import summarize


Z95 = 1.959963984540054

# metric -> (which attack is the worst case, column prefix in the summary)
WORST_CASE: dict[str, str] = {"ssim": "max", "lpips": "min", "psnr": "max", "semantic_accuracy": "max"}


@dataclass(frozen=True)
class RunVerdict:
    """The plain-language verdict of one checkpoint and its category (for colour)."""

    category: str  # reconstructable | borderline | unrecognisable | unknown
    text: str


def wilson_interval(rate: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (95% by default); NaNs when n is 0 or rate is NaN."""
    if n <= 0 or not math.isfinite(rate):
        return math.nan, math.nan
    denominator = 1 + z * z / n
    centre = (rate + z * z / (2 * n)) / denominator
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def attack_summary(run: Run) -> pd.DataFrame:
    """One row per (attack, metric) of the run's per-sample metrics: mean, CI, median, count."""
    rows = run.table[(run.table["attack"] != "") & run.table["sample"].notna()]
    if rows.empty:
        return pd.DataFrame(columns=["attack", "metric", "mean", "ci_low", "ci_high", "median", "count", "infinite"])
    out = summarize(rows)
    return out[["attack", "metric", "mean", "ci_low", "ci_high", "median", "count", "infinite"]].reset_index(drop=True)


def _set_value(run: Run, metric: str) -> pd.Series | None:
    rows = run.table[(run.table["attack"] == "") & (run.table["metric"] == metric)]
    return None if rows.empty else rows.iloc[0]


def worst_case(summary: pd.DataFrame, metric: str) -> pd.Series | None:
    """The row of the single attack that leaks most by `metric` (first attack on ties; the per-image
    worst case is not an attack); None if absent."""
    rows = summary[(summary["metric"] == metric) & summary["mean"].notna() & (summary["attack"] != WORST)]
    if rows.empty:
        return None
    position = rows["mean"].to_numpy().argmax() if WORST_CASE[metric] == "max" else rows["mean"].to_numpy().argmin()
    return rows.iloc[int(position)]


def verdict(summary: pd.DataFrame, rule: ThresholdRule = VERDICT_RULE) -> RunVerdict:
    """The checkpoint's verdict: ``rule`` (the default policy's, "the worst case's mean SSIM <= 0.3,
    read through its 95% CI") evaluated on the per-attack summary, as the gate evaluates it.

    The worst case is the per-image worst case over the attacks (rows ``attack = "worst"``) when
    the results hold it, else (results of an earlier release) the attack that leaks most.
    reconstructable when the rule's point reading fails (the mean SSIM is above 0.3);
    borderline when only its CI reading fails (the mean is not, but its 95% CI reaches above
    0.3); unrecognisable when the rule holds; unknown without SSIM rows. ``rule`` must compare
    the mean of a per-attack metric.
    """
    rows = summary[(summary["metric"] == rule.metric) & summary["mean"].notna()]
    if rule.attack == WORST and (rows["attack"] == WORST).any():
        rows = rows[rows["attack"] == WORST]
    if rows.empty:
        return RunVerdict("unknown", "unknown (no SSIM rows)")
    measures = [
        Measure(str(r["attack"]), float(r["mean"]), float(r["ci_low"]), float(r["ci_high"]), int(r.get("count", 0)))
        for _, r in rows.iterrows()
    ]
    point = dataclasses.replace(rule, use="point")
    worst = worst_measure(point, measures)
    if threshold_failures(point, worst):
        return RunVerdict("reconstructable", f"reconstructable (SSIM {worst.value:.2f} by {_by(worst.attack)})")
    reached = worst_measure(rule, measures)
    if threshold_failures(rule, reached):
        return RunVerdict(
            "borderline",
            f"borderline (SSIM {reached.value:.2f} by {_by(reached.attack)}, 95% CI up to {reached.ci_high:.2f})",
        )
    return RunVerdict("unrecognisable", f"unrecognisable (worst SSIM {worst.value:.2f})")


def verdict_lines(runs: Sequence[Run]) -> list[str]:
    """One line per checkpoint, '<label>: <verdict>', as `evaluate` and the demo end."""
    return [f"{run.label}: {verdict(attack_summary(run)).text}" for run in runs]


def _by(attack: str) -> str:
    return "the per-image worst case" if attack == WORST else attack


def lpips_note(run: Run) -> str:
    """Why LPIPS is missing for this run ('' when it was computed)."""
    if (run.table["metric"] == "lpips").any():
        return ""
    status = run.provenance.lpips
    return str(status.get("reason") or "no LPIPS rows (provenance does not say why)")


def semantic_note(run: Run) -> str:
    """Why semantic accuracy is missing for this run ('' when it was computed)."""
    if (run.table["metric"] == "semantic_accuracy").any():
        return ""
    status = run.provenance.semantic_classifier
    return str(status.get("reason") or "no semantic_accuracy rows (provenance does not say why)")


SUMMARY_COLUMNS = (
    "run", "label", "dataset", "arch", "cut", "defense", "defense_params", "defense_label", "strength",
    "accuracy", "accuracy_ci_low", "accuracy_ci_high", "accuracy_n",
    "ssim_worst", "ssim_worst_ci_low", "ssim_worst_ci_high",
    "ssim_max", "ssim_max_ci_low", "ssim_max_ci_high", "ssim_max_attack",
    "lpips_worst", "lpips_worst_ci_low", "lpips_worst_ci_high",
    "lpips_min", "lpips_min_ci_low", "lpips_min_ci_high", "lpips_min_attack", "lpips_note",
    "psnr_worst", "psnr_worst_ci_low", "psnr_worst_ci_high",
    "psnr_max", "psnr_max_ci_low", "psnr_max_ci_high", "psnr_max_attack",
    "semantic_accuracy_worst", "semantic_accuracy_worst_ci_low", "semantic_accuracy_worst_ci_high",
    "semantic_accuracy_max", "semantic_accuracy_max_ci_low", "semantic_accuracy_max_ci_high",
    "semantic_accuracy_max_attack", "semantic_accuracy_max_at_chance", "semantic_reference", "semantic_chance", "semantic_note",
    "dcor", "dcor_ci_low", "dcor_ci_high", "dcor_u2", "dcor_u2_ci_low", "dcor_u2_ci_high", "dcor_n",
    "n_scored", "attacks", "verdict_category", "verdict", "checkpoint_sha256", "source",
)


def _worst_columns(summary: pd.DataFrame, metric: str) -> dict[str, object]:
    """`{metric}_worst`: the per-image worst case over the attacks (what the verdict judges; the
    leakiest attack for results without it); `{metric}_max` / `_min`: the leakiest single attack."""
    key = f"{metric}_{WORST_CASE[metric]}"
    row = worst_case(summary, metric)
    if row is None:
        return {f"{metric}_worst": np.nan, f"{metric}_worst_ci_low": np.nan, f"{metric}_worst_ci_high": np.nan,
                key: np.nan, f"{key}_ci_low": np.nan, f"{key}_ci_high": np.nan, f"{key}_attack": ""}
    per_image = summary[(summary["metric"] == metric) & (summary["attack"] == WORST) & summary["mean"].notna()]
    worst = per_image.iloc[0] if len(per_image) else row
    return {
        f"{metric}_worst": worst["mean"], f"{metric}_worst_ci_low": worst["ci_low"], f"{metric}_worst_ci_high": worst["ci_high"],
        key: row["mean"], f"{key}_ci_low": row["ci_low"], f"{key}_ci_high": row["ci_high"], f"{key}_attack": row["attack"],
    }


def summary_row(run: Run) -> dict[str, object]:
    """The checkpoint's summary: identity, accuracy (Wilson CI), worst-case leakage, dCor, verdict."""
    summary = attack_summary(run)
    accuracy = _set_value(run, "accuracy")
    acc = float(accuracy["value"]) if accuracy is not None else np.nan
    acc_n = int(accuracy["n"]) if accuracy is not None else 0
    acc_low, acc_high = wilson_interval(acc, acc_n)
    dcor, dcor_u2, reference = _set_value(run, "dcor"), _set_value(run, "dcor_u2"), _set_value(run, "semantic_reference")
    chance = _set_value(run, "semantic_chance")
    judged = verdict(summary)
    ssim_counts = summary.loc[summary["metric"] == "ssim", "count"]
    row: dict[str, object] = {
        "run": run.run,
        "label": run.label,
        "dataset": run.first("dataset"),
        "arch": run.first("arch"),
        "cut": run.cut,
        "defense": run.defense,
        "defense_params": run.first("defense_params"),
        "defense_label": run.defense_label,
        "strength": run.strength,
        "accuracy": acc,
        "accuracy_ci_low": acc_low,
        "accuracy_ci_high": acc_high,
        "accuracy_n": acc_n,
        "lpips_note": lpips_note(run),
        "semantic_note": semantic_note(run),
        "semantic_reference": float(reference["value"]) if reference is not None else np.nan,
        "semantic_chance": float(chance["value"]) if chance is not None else np.nan,
        "dcor": float(dcor["value"]) if dcor is not None else np.nan,
        "dcor_ci_low": float(dcor["ci_low"]) if dcor is not None else np.nan,
        "dcor_ci_high": float(dcor["ci_high"]) if dcor is not None else np.nan,
        "dcor_u2": float(dcor_u2["value"]) if dcor_u2 is not None else np.nan,
        "dcor_u2_ci_low": float(dcor_u2["ci_low"]) if dcor_u2 is not None else np.nan,
        "dcor_u2_ci_high": float(dcor_u2["ci_high"]) if dcor_u2 is not None else np.nan,
        "dcor_n": int(dcor["n"]) if dcor is not None else 0,
        "n_scored": int(ssim_counts.max()) if len(ssim_counts) else 0,
        "attacks": " ".join(run.attacks),
        "verdict_category": judged.category,
        "verdict": judged.text,
        "checkpoint_sha256": run.first("checkpoint_sha256"),
        "source": run.source,
    }
    for metric in WORST_CASE:
        row.update(_worst_columns(summary, metric))
    row["semantic_accuracy_max_at_chance"] = at_chance(row["semantic_accuracy_max_ci_low"], row["semantic_chance"])
    return row


def at_chance(ci_low: float, chance: float) -> bool:
    """A semantic accuracy is at chance when its 95% CI reaches down to the chance level (the
    majority-class rate): the classifier recognises no more than a constant guess would. False
    when either number is missing."""
    return bool(math.isfinite(ci_low) and math.isfinite(chance) and ci_low <= chance)


def chance_attacks(run: Run) -> list[str]:
    """The attacks (not the per-image worst case) whose semantic accuracy is at chance."""
    chance = _set_value(run, "semantic_chance")
    if chance is None:
        return []
    summary = attack_summary(run)
    rows = summary[(summary["metric"] == "semantic_accuracy") & (summary["attack"] != WORST)]
    return [str(r["attack"]) for _, r in rows.iterrows() if at_chance(float(r["ci_low"]), float(chance["value"]))]


def summary_table(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per checkpoint (see `summary_row`), in the report's run order."""
    return pd.DataFrame([summary_row(r) for r in runs], columns=list(SUMMARY_COLUMNS))


def full_table(runs: Sequence[Run]) -> pd.DataFrame:
    """Every input row (the tidy schema) plus the report's label of its checkpoint."""
    frames = [r.table.assign(label=r.label) for r in runs]
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------------------
# Display: the summary as short strings for the page and the HTML version
# ---------------------------------------------------------------------------------------------


def fmt(value: float, digits: int = 2) -> str:
    """A number for display; 'n/a' for NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def fmt_ci(low: float, high: float, digits: int = 2) -> str:
    """'[low, high]' or '' when either bound is missing."""
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in (low, high)):
        return ""
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


@dataclass(frozen=True)
class TableCell:
    """A table cell: the main text and an optional smaller second line (CI, attack)."""

    text: str
    sub: str = ""


DISPLAY_HEADERS = (
    "Model (defense, cut)", "Accuracy (scored)", "SSIM worst case", "LPIPS worst case", "PSNR worst (dB)",
    "Semantic acc. worst", "dCor(x, z)", f"Verdict (SSIM < {SSIM_UNRECOGNISABLE:g}: unrecognisable)",
)


def _worst_cell(row: pd.Series, metric: str, digits: int = 2) -> TableCell:
    """'0.90  (rmle)' over its CI: the per-image worst case (what the verdict judges) and the
    leakiest single attack (its own mean is `{metric}_max` / `_min` in the summary CSV)."""
    key = f"{metric}_{WORST_CASE[metric]}"
    if isinstance(row[key], float) and math.isnan(row[key]):
        return TableCell("n/a")
    ci = fmt_ci(row[f"{metric}_worst_ci_low"], row[f"{metric}_worst_ci_high"], digits)
    return TableCell(f"{fmt(row[f'{metric}_worst'], digits)}  ({row[f'{key}_attack']})", ci)


def display_rows(summary: pd.DataFrame) -> list[list[TableCell]]:
    """The summary as cells, in DISPLAY_HEADERS order."""
    out = []
    for _, row in summary.iterrows():
        lpips = _worst_cell(row, "lpips", 3)
        if lpips.text == "n/a":
            lpips = TableCell("n/a*", "see note")
        semantic = _worst_cell(row, "semantic_accuracy")
        if at_chance(row["semantic_accuracy_worst_ci_low"], row["semantic_chance"]):  # then every attack is
            semantic = TableCell(f"{semantic.text}  at chance", semantic.sub)
        notes = [f"orig. {row['semantic_reference']:.2f}" if not math.isnan(row["semantic_reference"]) else "",
                 f"chance {row['semantic_chance']:.2f}" if not math.isnan(row["semantic_chance"]) else ""]
        if any(notes):
            semantic = TableCell(semantic.text, "  ".join([semantic.sub, *filter(None, notes)]).strip())
        out.append([
            TableCell(row["label"], row["dataset"] + ("" if row["arch"] == "small-cnn" else f", {row['arch']}")),  # the run id only in labels that need it
            TableCell(fmt(row["accuracy"]), f"{fmt_ci(row['accuracy_ci_low'], row['accuracy_ci_high'])}  n={row['accuracy_n']}"),
            _worst_cell(row, "ssim"),
            lpips,
            _worst_cell(row, "psnr", 1),
            semantic,
            TableCell(fmt(row["dcor"]), f"{fmt_ci(row['dcor_ci_low'], row['dcor_ci_high'])}  n={row['dcor_n']}" if row["dcor_n"] else ""),
            TableCell(*_split_verdict(str(row["verdict"]))),
        ])
    return out


def _split_verdict(text: str) -> tuple[str, str]:
    """'reconstructable (SSIM 0.88 by rmle)' -> ('reconstructable', 'SSIM 0.88 by rmle'); the
    per-image worst case goes unnamed (the table's worst-case columns say what they are)."""
    head, _, rest = text.partition(" (")
    return head, rest.rstrip(")").replace(f" by {_by(WORST)}", "")
