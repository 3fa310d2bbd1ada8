"""Scorers: the protocol evaluate loops over, the generic reconstruction scorer, the primary metric."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from splitleak.evaluation import EvalConfig, scorers_for
from splitleak.metrics import METRICS, PRIMARY_METRIC, MetricSpec
from splitleak.scoring import (
    BaseScorer,
    ReconstructionScorer,
    Reconstructions,
    Score,
    Scorer,
    check_scores,
    extremes,
)


def _batch(n: int = 6) -> Reconstructions:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 16, 16, generator=gen)
    x_hat = (x + 0.2 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    return Reconstructions(attack="a", x=x, x_hat=x_hat, y=torch.zeros(n, dtype=torch.long), samples=np.arange(n), value_range=(0.0, 1.0))


def test_primary_metric_is_a_declared_per_sample_reconstruction_metric() -> None:
    spec = METRICS[PRIMARY_METRIC]
    assert PRIMARY_METRIC == "ssim" and spec.primary and spec.level == "sample" and spec.reconstruction
    assert [name for name, s in METRICS.items() if s.primary] == [PRIMARY_METRIC]


def test_every_scorer_follows_the_protocol_and_writes_registered_metrics() -> None:
    scorers = scorers_for(EvalConfig())
    assert all(isinstance(s, Scorer) for s in scorers)
    written = [spec.name for s in scorers for spec in s.specs]
    assert len(written) == len(set(written))  # each metric has exactly one scorer
    own = {name for name, s in METRICS.items() if isinstance(s.fn, str) and s.fn.startswith("splitleak.")}
    unselected = {name for name, s in METRICS.items() if s.reconstruction and name not in EvalConfig().metrics}
    assert set(written) == own - unselected  # every metric of splitleak's has a scorer


def test_a_plain_reconstruction_spec_is_scored_by_the_generic_scorer() -> None:
    spec = MetricSpec(name="l1", level="sample", leakage_direction="lower", description="mean |x - x_hat|",
                      fn=lambda x, y: (x - y).abs().flatten(1).mean(1), reconstruction=True)
    batch = _batch()
    scorer = ReconstructionScorer(spec)
    (score,) = scorer.score(batch)
    np.testing.assert_allclose(score.values, (batch.x - batch.x_hat).abs().flatten(1).mean(1).numpy(), rtol=1e-6)
    assert score.metric == "l1" and score.n == 6 and list(score.samples) == list(range(6)) and score.ci is None
    check_scores(scorer, [score])
    with pytest.raises(ValueError, match="not a reconstruction metric"):
        ReconstructionScorer(METRICS["lpips"])


def test_scores_outside_a_scorers_specs_or_level_are_refused() -> None:
    class Sloppy(BaseScorer):
        metrics = ("dcor_recon",)

    with pytest.raises(RuntimeError, match="not among its specs"):
        check_scores(Sloppy(), [Score.per_set("ssim", 0.5, 3)])
    with pytest.raises(RuntimeError, match="level is 'set'"):
        check_scores(Sloppy(), [Score.per_sample("dcor_recon", [0.1, 0.2], np.arange(2))])


def test_extremes_follow_the_metrics_leakage_direction() -> None:
    from splitleak.data import ArraySplit

    x = torch.arange(4, dtype=torch.float32).reshape(4, 1, 1, 1)
    test = ArraySplit(x=x, y=torch.zeros(4, dtype=torch.long), indices=torch.tensor([10, 11, 12, 13]))
    values = np.array([0.2, 0.9, 0.5, 0.1])
    best, _, worst = extremes("a", values, test, x, metric="ssim")["extremes/a/indices"].tolist()
    assert (best, worst) == (11, 13)  # higher ssim leaks more
    best, _, worst = extremes("a", values, test, x, metric="mse")["extremes/a/indices"].tolist()
    assert (best, worst) == (13, 11)  # lower mse leaks more
