"""The metric registry: names, levels, directions, functions, lookup errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import splitleak.metrics as metrics
import splitleak.metrics.dependence
import splitleak.metrics.dependence_scale
import splitleak.metrics.image
import splitleak.metrics.perceptual
import splitleak.metrics.semantic
import splitleak.metrics.task
from splitleak.metrics import IMAGE_METRICS, METRICS, MetricSpec, get_metric

EXPECTED = {
    # name: (level, leakage_direction, function)
    "ssim": ("sample", "higher", metrics.image.ssim),
    "psnr": ("sample", "higher", metrics.image.psnr),
    "mse": ("sample", "lower", metrics.image.mse),
    "dcor": ("set", "higher", metrics.dependence.distance_correlation),
    "dcor_u2": ("set", "higher", metrics.dependence.u_distance_correlation_sqr),
    "lpips": ("sample", "lower", metrics.perceptual.lpips_distance),
    "dcor_recon": ("set", "higher", metrics.dependence_scale.dcor_statistics),
    "dcor_recon_u2": ("set", "higher", metrics.dependence_scale.dcor_statistics),
    "semantic_accuracy": ("sample", "higher", metrics.semantic.semantic_correct),
    "semantic_reference": ("set", "higher", metrics.semantic.semantic_reference),
    "semantic_chance": ("set", "higher", metrics.semantic.majority_rate),
    "accuracy": ("set", "higher", metrics.task.accuracy),
}


def test_registry_contents() -> None:
    assert set(METRICS) == set(EXPECTED)
    for name, (level, direction, fn) in EXPECTED.items():
        spec = get_metric(name)
        assert spec is METRICS[name]
        assert (spec.name, spec.level, spec.leakage_direction, spec.function) == (name, level, direction, fn)
        assert spec.description
    assert "utility" in METRICS["accuracy"].description and METRICS["accuracy"].kind == "utility"
    assert {n for n, s in METRICS.items() if s.kind == "utility"} == {"accuracy"}
    assert "V-statistic" in METRICS["dcor"].description and "U-statistic" in METRICS["dcor_u2"].description


def test_image_metrics_are_per_sample() -> None:
    assert list(IMAGE_METRICS) == ["ssim", "psnr", "mse"]
    x = torch.rand(3, 1, 28, 28)
    x_hat = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    for name, spec in IMAGE_METRICS.items():
        assert spec is METRICS[name] and spec.level == "sample"
        out = spec.function(x, x_hat)
        assert out.shape == (3,)
        # a better reconstruction moves the value in the leakage direction
        better = spec.function(x, (x + 0.01 * (x_hat - x)))
        more = better > out if spec.leakage_direction == "higher" else better < out
        assert bool(more.all()), name


def test_set_metrics_return_scalars() -> None:
    x, z = torch.randn(16, 1, 4, 4), torch.randn(16, 8)
    for name in ("dcor", "dcor_u2"):
        assert METRICS[name].function(x, z).shape == ()
    assert isinstance(METRICS["accuracy"].function(torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1])), float)


def test_get_metric_unknown_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown metric 'lpipz'") as err:
        get_metric("lpipz")
    for name in EXPECTED:
        assert name in str(err.value)


def test_spec_is_frozen_and_validated() -> None:
    spec = get_metric("ssim")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"  # type: ignore[misc]
    with pytest.raises(ValueError, match="level"):
        MetricSpec("x", "pixel", "higher", "d", len)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="leakage_direction"):
        MetricSpec("x", "set", "up", "d", len)  # type: ignore[arg-type]


def test_reexports() -> None:
    for name in ("ssim", "psnr", "mse", "distance_correlation", "u_distance_correlation_sqr", "accuracy"):
        assert name in metrics.__all__ and callable(getattr(metrics, name))
    assert metrics.ssim is metrics.image.ssim and metrics.accuracy is metrics.task.accuracy
