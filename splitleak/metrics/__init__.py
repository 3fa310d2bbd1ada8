"""Metrics: pure functions plus a registry of specs saying what each returns and which way leaks.

The specs (``splitleak.metrics.specs``) import no torch; the functions are imported on first
use of their name here, so ``from splitleak.metrics import METRICS`` stays light.
Definitions: ``docs/metrics.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

from splitleak.metrics.specs import IMAGE_METRICS, METRICS, PRIMARY_METRIC, MetricSpec, get_metric, reconstruction_metrics

_FUNCTIONS = {
    "accuracy": "splitleak.metrics.task",
    "dcor_statistics": "splitleak.metrics.dependence_scale",
    "distance_correlation": "splitleak.metrics.dependence",
    "lpips_distance": "splitleak.metrics.perceptual",
    "mse": "splitleak.metrics.image",
    "psnr": "splitleak.metrics.image",
    "ssim": "splitleak.metrics.image",
    "u_distance_correlation_sqr": "splitleak.metrics.dependence",
}

__all__ = ["IMAGE_METRICS", "METRICS", "PRIMARY_METRIC", "MetricSpec", "get_metric", "reconstruction_metrics", *sorted(_FUNCTIONS)]


def __getattr__(name: str) -> Any:
    if name in _FUNCTIONS:
        return getattr(importlib.import_module(_FUNCTIONS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
