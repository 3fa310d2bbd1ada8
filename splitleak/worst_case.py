"""The worst case per image: for each attacked test image, the best reconstruction over every
attack that ran, by each metric's own leakage direction.

A defense is only as good as the strongest attack on each image: the decoder may rebuild one
image and rMLE another. `evaluate` adds these rows to every run as the row group
`attack = "worst"` (`WORST_CASE`), one row per (per-sample metric, image), and a merged sweep
recomputes them over all its cells' attacks. Definitions:

* per-sample leakage metrics only (SSIM, PSNR, MSE, LPIPS, semantic accuracy, ...); set-level
  values (dCor of x and x̂) have no per-image reading and get no worst-case row;
* an image enters when every attack scored it (the attacks of one evaluation score the same
  images); its value is the maximum over attacks where higher leaks more (SSIM, PSNR, semantic
  accuracy), the minimum where lower does (MSE, LPIPS);
* `n` is the number of such images; the CI comes from the summary's bootstrap, as for an attack.

No torch: readers of results (the gate, the reports, a sweep's merge) use it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from splitleak.metrics.specs import METRICS
from splitleak.results import MODEL_LEVEL, WORST_CASE


def worst_case_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The worst-case rows of every run of a tidy results table (empty when no attack ran)."""
    attacked = table[(table["attack"] != MODEL_LEVEL) & (table["attack"] != WORST_CASE) & table["sample"].notna()]
    frames = []
    for (run, metric), rows in attacked.groupby(["run", "metric"], sort=False):
        spec = METRICS.get(str(metric))
        if spec is None or spec.level != "sample" or spec.kind != "leakage":
            continue
        wide = rows.pivot_table(index="sample", columns="attack", values="value", aggfunc="first").dropna()
        if wide.empty:
            continue
        values = wide.max(axis=1) if spec.leakage_direction == "higher" else wide.min(axis=1)
        first = rows.iloc[0]
        frames.append(
            pd.DataFrame(
                {
                    **{column: first[column] for column in table.columns if column not in ("attack", "value", "sample", "n", "ci_low", "ci_high")},
                    "attack": WORST_CASE,
                    "metric": metric,
                    "value": values.to_numpy(dtype="float64"),
                    "sample": pd.array(values.index.to_numpy(), dtype="Int64"),
                    "n": len(values),
                    "ci_low": float("nan"),
                    "ci_high": float("nan"),
                }
            )
        )
    if not frames:
        return table.iloc[0:0]
    return pd.concat(frames, ignore_index=True)[list(table.columns)]


def with_worst_case(table: pd.DataFrame) -> pd.DataFrame:
    """`table` without any worst-case rows it held, then with those of its attacks now."""
    kept = table[table["attack"] != WORST_CASE].reset_index(drop=True)
    added = worst_case_rows(kept)
    return kept if added.empty else pd.concat([kept, added], ignore_index=True)


@dataclass(frozen=True)
class WorstCaseGain:
    """What attacks beyond a baseline set add to one run's per-image worst case: each metric's
    mean over the baseline attacks alone (`before`) and over every attack that ran (`after`, the
    run's recorded worst-case rows)."""

    run: str
    extra: tuple[str, ...]  # the attacks that ran beyond the baseline, sorted
    before: dict[str, float]
    after: dict[str, float]


def worst_case_gain(table: pd.DataFrame, baseline: Sequence[str], metrics: Sequence[str]) -> list[WorstCaseGain]:
    """Per run of `table` (in order) that ran every attack of `baseline`: `WorstCaseGain` for
    `metrics` (a run without extra attacks has `extra` empty and `before` == `after`)."""
    out = []
    for run, rows in table.groupby("run", sort=False):
        ran = set(rows["attack"])
        if not set(baseline) <= ran:
            continue
        before = worst_case_rows(rows[rows["attack"].isin(baseline)])
        after = rows[rows["attack"] == WORST_CASE]
        means = [frame[frame["metric"].isin(list(metrics))].groupby("metric")["value"].mean().to_dict() for frame in (before, after)]
        out.append(WorstCaseGain(str(run), tuple(sorted(ran - {*baseline, MODEL_LEVEL, WORST_CASE})), *means))
    return out


__all__ = ["WORST_CASE", "WorstCaseGain", "with_worst_case", "worst_case_gain", "worst_case_rows"]
