"""Metrics: pure functions plus a registry of specs saying what each returns and which way leaks.

Per-sample ("sample") metrics map two batches ``(x, x_hat)`` to one value per sample ``[B]``;
set-level ("set") metrics map a whole set to one number. ``leakage_direction`` says which
direction means MORE leakage (for ``accuracy``, more utility). Definitions: ``docs/metrics.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from splitleak.metrics.dependence import distance_correlation, u_distance_correlation_sqr
from splitleak.metrics.dependence_scale import dcor_statistics
from splitleak.metrics.image import mse, psnr, ssim
from splitleak.metrics.perceptual import lpips_distance
from splitleak.metrics.semantic import semantic_correct, semantic_reference, train_classifier
from splitleak.metrics.task import accuracy

__all__ = [
    "IMAGE_METRICS",
    "METRICS",
    "MetricSpec",
    "accuracy",
    "dcor_statistics",
    "distance_correlation",
    "get_metric",
    "lpips_distance",
    "mse",
    "psnr",
    "semantic_correct",
    "semantic_reference",
    "ssim",
    "train_classifier",
    "u_distance_correlation_sqr",
]


@dataclass(frozen=True)
class MetricSpec:
    """What a metric is: its name, level, which direction means more leakage, and the function."""

    name: str
    level: Literal["sample", "set"]
    leakage_direction: Literal["higher", "lower"]
    description: str
    fn: Callable[..., Any]
    takes_data_range: bool = False  # fn accepts data_range= (the span of the images' value range)

    def __post_init__(self) -> None:
        if self.level not in ("sample", "set"):
            raise ValueError(f"MetricSpec {self.name!r}: level must be 'sample' or 'set', got {self.level!r}")
        if self.leakage_direction not in ("higher", "lower"):
            raise ValueError(
                f"MetricSpec {self.name!r}: leakage_direction must be 'higher' or 'lower', "
                f"got {self.leakage_direction!r}"
            )


_SPECS = (
    MetricSpec(
        name="ssim",
        level="sample",
        leakage_direction="higher",
        description="SSIM (Wang et al. 2004), Gaussian window 11, sigma 1.5, data_range 1; "
        "per sample, mean over valid window positions and channels; in [-1, 1], 1 = identical.",
        fn=ssim,
        takes_data_range=True,
    ),
    MetricSpec(
        name="psnr",
        level="sample",
        leakage_direction="higher",
        description="PSNR in dB, 10 log10(data_range^2 / MSE), data_range 1; per sample; "
        "+inf for identical images.",
        fn=psnr,
        takes_data_range=True,
    ),
    MetricSpec(
        name="mse",
        level="sample",
        leakage_direction="lower",
        description="Mean squared error per sample, over all channels and pixels; 0 = identical.",
        fn=mse,
    ),
    MetricSpec(
        name="dcor",
        level="set",
        leakage_direction="higher",
        description="Distance correlation between flattened inputs and activations, biased "
        "V-statistic (NoPeek's estimator); in [0, 1]; biased upward for small n, so always "
        "report n and compare only at equal n.",
        fn=distance_correlation,
    ),
    MetricSpec(
        name="dcor_u2",
        level="set",
        leakage_direction="higher",
        description="Bias-corrected (U-statistic) squared distance correlation between flattened "
        "inputs and activations; ~0 under independence at any n, may be negative; needs n > 3.",
        fn=u_distance_correlation_sqr,
    ),
    MetricSpec(
        name="lpips",
        level="sample",
        leakage_direction="lower",
        description="LPIPS v0.1 (Zhang et al. 2018) with the real ImageNet backbone (AlexNet by "
        "default), images mapped to [-1, 1], grey repeated to 3 channels, upsampled bilinearly to "
        "at least 64x64; 0 = perceptually identical. Reported unavailable without real weights.",
        fn=lpips_distance,
    ),
    MetricSpec(
        name="dcor_recon",
        level="set",
        leakage_direction="higher",
        description="Distance correlation (V-statistic) between the original test images and an "
        "attack's reconstructions, blocked computation with a jackknife CI; report n.",
        fn=dcor_statistics,
    ),
    MetricSpec(
        name="dcor_recon_u2",
        level="set",
        leakage_direction="higher",
        description="Bias-corrected U-statistic dCor^2 between originals and reconstructions.",
        fn=dcor_statistics,
    ),
    MetricSpec(
        name="semantic_accuracy",
        level="sample",
        leakage_direction="higher",
        description="1 if an independent classifier, trained by the attacker on its auxiliary "
        "data, gives the reconstruction its true label, else 0; the mean is the fraction of "
        "reconstructions whose label leaks.",
        fn=semantic_correct,
    ),
    MetricSpec(
        name="semantic_reference",
        level="set",
        leakage_direction="higher",
        description="The same classifier's accuracy on the original test images: the ceiling "
        "for semantic_accuracy.",
        fn=semantic_reference,
    ),
    MetricSpec(
        name="accuracy",
        level="set",
        leakage_direction="higher",
        description="Task utility, not leakage: fraction of samples whose argmax logit equals "
        "the label; higher means more utility.",
        fn=accuracy,
    ),
)

METRICS: dict[str, MetricSpec] = {spec.name: spec for spec in _SPECS}
"""Every metric spec by name. Treat as read-only."""

IMAGE_METRICS: dict[str, MetricSpec] = {name: METRICS[name] for name in ("ssim", "psnr", "mse")}
"""Per-sample image metrics, each ``fn(x, x_hat) -> Tensor[B]``. Treat as read-only."""


def get_metric(name: str) -> MetricSpec:
    """Return the spec registered under ``name``; unknown names raise ValueError listing valid ones."""
    try:
        return METRICS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown metric {name!r}; valid names: {', '.join(sorted(METRICS))}") from None
