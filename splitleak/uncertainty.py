"""Uncertainty of per-sample metrics: percentile-bootstrap confidence intervals of the mean.

Every per-sample metric in a results table is summarised as mean, median, std, count and a
bootstrap CI of the mean (percentile method, seeded, so the same table gives the same CI).
Infinite values (PSNR of identical images) are left out of mean/median/std/CI and counted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CONFIDENCE = 0.95
N_BOOT = 2000


def bootstrap_mean_ci(
    values: np.ndarray, *, confidence: float = CONFIDENCE, n_boot: int = N_BOOT, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap CI of the mean of `values` (NaN, NaN for fewer than 2 values)."""
    values = np.asarray(values, dtype=np.float64)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if len(values) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 2**22 // len(values))  # bound memory: at most ~4M indices at a time
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, len(values), size=(stop - start, len(values)))
        means[start:stop] = values[idx].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def summarize_values(values: np.ndarray, *, confidence: float = CONFIDENCE, seed: int = 0) -> dict[str, float]:
    """mean, median, std, count, ci_low, ci_high and the number of infinite values."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    low, high = bootstrap_mean_ci(finite, confidence=confidence, seed=seed)
    return {
        "mean": float(finite.mean()) if len(finite) else float("nan"),
        "median": float(np.median(finite)) if len(finite) else float("nan"),
        "std": float(finite.std(ddof=1)) if len(finite) > 1 else float("nan"),
        "count": int(len(values)),
        "infinite": int(np.isinf(values).sum()),
        "ci_low": low,
        "ci_high": high,
    }


SUMMARY_KEYS = ["run", "checkpoint", "dataset", "arch", "cut", "defense", "defense_params", "attack", "metric", "seed"]


def summarize(table: pd.DataFrame, *, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """One row per (run, attack, metric): per-sample metrics get bootstrap CIs of the mean;
    set-level rows keep the CI their estimator reported (columns ci_low, ci_high)."""
    rows = []
    for key, group in table.groupby(SUMMARY_KEYS, sort=False, dropna=False):
        record = dict(zip(SUMMARY_KEYS, key))
        if group["sample"].notna().any():
            record.update(summarize_values(group["value"].to_numpy(), confidence=confidence))
            record["level"] = "sample"
        else:
            value = float(group["value"].iloc[0])
            record.update(
                mean=value, median=value, std=float("nan"), count=int(group["n"].iloc[0]),
                infinite=int(np.isinf(value)), ci_low=float(group["ci_low"].iloc[0]), ci_high=float(group["ci_high"].iloc[0]),
            )
            record["level"] = "set"
        rows.append(record)
    return pd.DataFrame(rows, columns=[*SUMMARY_KEYS, "level", "mean", "median", "std", "count", "infinite", "ci_low", "ci_high"])
