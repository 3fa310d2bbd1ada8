import numpy as np
import pytest

from splitleak.uncertainty import bootstrap_mean_ci, summarize_values


def test_ci_brackets_the_mean_and_shrinks_with_n() -> None:
    rng = np.random.default_rng(1)
    small, large = rng.normal(0.5, 0.1, 50), rng.normal(0.5, 0.1, 5000)
    lo_s, hi_s = bootstrap_mean_ci(small)
    lo_l, hi_l = bootstrap_mean_ci(large)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 5
    # close to the normal approximation: half-width 1.96 * sd / sqrt(n)
    assert (hi_l - lo_l) / 2 == pytest.approx(1.96 * large.std(ddof=1) / np.sqrt(len(large)), rel=0.1)


def test_ci_coverage_is_near_nominal() -> None:
    rng = np.random.default_rng(2)
    hits = 0
    for trial in range(200):
        sample = rng.exponential(1.0, 100)  # skewed, true mean 1
        lo, hi = bootstrap_mean_ci(sample, n_boot=500, seed=trial)
        hits += lo <= 1.0 <= hi
    assert 0.88 <= hits / 200 <= 0.99


def test_seeded_and_degenerate_cases() -> None:
    values = np.arange(10.0)
    assert bootstrap_mean_ci(values, seed=3) == bootstrap_mean_ci(values, seed=3)
    assert np.isnan(bootstrap_mean_ci(np.array([1.0]))).all()
    assert bootstrap_mean_ci(np.full(20, 0.7)) == pytest.approx((0.7, 0.7))
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_mean_ci(values, confidence=1.5)


def test_infinite_values_are_counted_not_averaged() -> None:
    summary = summarize_values(np.array([10.0, 20.0, np.inf]))
    assert summary["mean"] == 15.0 and summary["infinite"] == 1 and summary["count"] == 3
