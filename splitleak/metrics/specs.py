"""Metric specs: what each metric is, its level and which direction means more leakage.

Per-sample ("sample") metrics map two batches ``(x, x_hat)`` to one value per sample ``[B]``;
set-level ("set") metrics map a whole set to one number. ``leakage_direction`` says which
direction means MORE leakage (for ``accuracy``, a ``utility`` metric, more utility).
Definitions: ``docs/metrics.md``. This module imports neither torch nor the metric functions:
readers of results (the gate, the reports) use it without loading torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from splitleak.registry import Registry, RegistryError


@dataclass(frozen=True)
class MetricSpec:
    """What a metric is: its name, level, which direction means more leakage, and the function."""

    name: str
    level: Literal["sample", "set"]
    leakage_direction: Literal["higher", "lower"]
    description: str
    fn: Callable[..., Any] | str  # the function, or "module:name" of splitleak's own (imported on first use)
    takes_data_range: bool = False  # fn accepts data_range= (the span of the images' value range)
    kind: Literal["leakage", "utility"] = "leakage"  # utility: higher is better for the user (accuracy)
    reconstruction: bool = False  # fn(x, x_hat) -> [B] needs no preparation: selectable with --metrics
    label: str = ""  # how reports name it (default: the name)
    primary: bool = False  # the headline per-sample metric: galleries pick best / median / worst by it

    def __post_init__(self) -> None:
        if self.level not in ("sample", "set"):
            raise ValueError(f"MetricSpec {self.name!r}: level must be 'sample' or 'set', got {self.level!r}")
        if self.leakage_direction not in ("higher", "lower"):
            raise ValueError(
                f"MetricSpec {self.name!r}: leakage_direction must be 'higher' or 'lower', "
                f"got {self.leakage_direction!r}"
            )
        if self.kind not in ("leakage", "utility"):
            raise ValueError(f"MetricSpec {self.name!r}: kind must be 'leakage' or 'utility', got {self.kind!r}")

    @property
    def function(self) -> Callable[..., Any]:
        """The metric's function (splitleak's own are imported here, on first use: torch)."""
        if not isinstance(self.fn, str):
            return self.fn
        module, _, attr = self.fn.partition(":")
        return getattr(importlib.import_module(module), attr)

    @property
    def display(self) -> str:
        return self.label or self.name


_SPECS = (
    MetricSpec(
        name="ssim",
        level="sample",
        leakage_direction="higher",
        description="SSIM (Wang et al. 2004), Gaussian window 11, sigma 1.5, data_range 1; "
        "per sample, mean over valid window positions and channels; in [-1, 1], 1 = identical.",
        fn="splitleak.metrics.image:ssim",
        takes_data_range=True,
        reconstruction=True,
        label="SSIM",
        primary=True,
    ),
    MetricSpec(
        name="psnr",
        level="sample",
        leakage_direction="higher",
        description="PSNR in dB, 10 log10(data_range^2 / MSE), data_range 1; per sample; "
        "+inf for identical images.",
        fn="splitleak.metrics.image:psnr",
        takes_data_range=True,
        reconstruction=True,
        label="PSNR",
    ),
    MetricSpec(
        name="mse",
        level="sample",
        leakage_direction="lower",
        description="Mean squared error per sample, over all channels and pixels; 0 = identical.",
        fn="splitleak.metrics.image:mse",
        reconstruction=True,
        label="MSE",
    ),
    MetricSpec(
        name="dcor",
        level="set",
        leakage_direction="higher",
        description="Distance correlation between flattened inputs and activations, biased "
        "V-statistic (NoPeek's estimator); in [0, 1]; biased upward for small n, so always "
        "report n and compare only at equal n.",
        fn="splitleak.metrics.dependence:distance_correlation",
    ),
    MetricSpec(
        name="dcor_u2",
        level="set",
        leakage_direction="higher",
        description="Bias-corrected (U-statistic) squared distance correlation between flattened "
        "inputs and activations; ~0 under independence at any n, may be negative; needs n > 3.",
        fn="splitleak.metrics.dependence:u_distance_correlation_sqr",
    ),
    MetricSpec(
        name="lpips",
        level="sample",
        leakage_direction="lower",
        description="LPIPS v0.1 (Zhang et al. 2018) with the real ImageNet backbone (AlexNet by "
        "default), images mapped to [-1, 1], grey repeated to 3 channels, upsampled bilinearly to "
        "at least 64x64; 0 = perceptually identical. Reported unavailable without real weights.",
        fn="splitleak.metrics.perceptual:lpips_distance",
        label="LPIPS",
    ),
    MetricSpec(
        name="dcor_recon",
        level="set",
        leakage_direction="higher",
        description="Distance correlation (V-statistic) between the original test images and an "
        "attack's reconstructions, blocked computation with a jackknife CI; report n.",
        fn="splitleak.metrics.dependence_scale:dcor_statistics",
    ),
    MetricSpec(
        name="dcor_recon_u2",
        level="set",
        leakage_direction="higher",
        description="Bias-corrected U-statistic dCor^2 between originals and reconstructions.",
        fn="splitleak.metrics.dependence_scale:dcor_statistics",
    ),
    MetricSpec(
        name="semantic_accuracy",
        level="sample",
        leakage_direction="higher",
        description="1 if an independent classifier, trained by the attacker on its auxiliary "
        "data, gives the reconstruction its true label, else 0; the mean is the fraction of "
        "reconstructions whose label leaks.",
        fn="splitleak.metrics.semantic:semantic_correct",
    ),
    MetricSpec(
        name="semantic_reference",
        level="set",
        leakage_direction="higher",
        description="The same classifier's accuracy on the original test images: what it "
        "recognises of the originals (a reference, not a bound: reconstructions of the same images "
        "may score a little higher by chance).",
        fn="splitleak.metrics.semantic:semantic_reference",
    ),
    MetricSpec(
        name="semantic_chance",
        level="set",
        leakage_direction="higher",
        description="Chance level of semantic_accuracy: the share of the most frequent true label "
        "among the attacked images, what a constant prediction gets at best. A semantic accuracy "
        "whose 95% CI reaches down to it is at chance (no label leaks).",
        fn="splitleak.metrics.semantic:majority_rate",
    ),
    MetricSpec(
        name="accuracy",
        level="set",
        leakage_direction="higher",
        description="Task utility, not leakage: fraction of samples whose argmax logit equals "
        "the label; higher means more utility.",
        fn="splitleak.metrics.task:accuracy",
        kind="utility",
    ),
)

METRICS: Registry[MetricSpec] = Registry("metric", group="splitleak.metrics")
"""Every metric spec by name. Other packages add theirs with an entry point in `splitleak.metrics`
naming a MetricSpec (a per-sample `reconstruction` metric is then selectable with --metrics)."""
for _spec in _SPECS:
    METRICS.register(_spec)

(PRIMARY_METRIC,) = (spec.name for spec in _SPECS if spec.primary)
"""The primary metric (ssim): a per-sample reconstruction metric declared ``primary=True`` among
splitleak's own specs; evaluate stores the best / median / worst reconstructions by it and the
report's gallery shows them. Plugins cannot change it."""

IMAGE_METRICS: dict[str, MetricSpec] = {name: METRICS[name] for name in ("ssim", "psnr", "mse")}
"""splitleak's own per-sample image metrics, each ``fn(x, x_hat) -> Tensor[B]``. Treat as read-only."""


def reconstruction_metrics() -> dict[str, MetricSpec]:
    """Every registered metric selectable with --metrics (splitleak's and plugins')."""
    return {name: spec for name, spec in METRICS.items() if spec.reconstruction}




def get_metric(name: str) -> MetricSpec:
    """Return the spec registered under ``name``; unknown names raise ValueError listing valid ones."""
    try:
        return METRICS.get_entry(name)
    except RegistryError:
        raise RegistryError(f"unknown metric {name!r}; valid names: {', '.join(sorted(METRICS))}") from None


__all__ = ["IMAGE_METRICS", "METRICS", "PRIMARY_METRIC", "MetricSpec", "get_metric", "reconstruction_metrics"]
