"""Scorers: how `evaluate` computes each metric (evaluation layer; torchmetrics' modular side).

A metric (splitleak.metrics) is a pure function; a scorer is what evaluate runs to fill the
results table with it. Each scorer

- declares ``specs``: the MetricSpecs of the rows it writes (name, level, direction, kind);
- is built with its options (the LPIPS backbone, the classifier's epochs, dCor's memory budget);
- ``prepare(context)`` once per evaluation: the expensive, shared part (the LPIPS network's
  availability, the semantic classifier trained on the attacker's auxiliary data); a scorer
  that cannot run says why in its ``log`` and writes no rows;
- ``score_model(outputs)`` once per evaluation: model-level rows (accuracy, dCor of x vs z,
  the semantic reference), written under the attack "" (results.MODEL_LEVEL);
- ``score(batch)`` once per attack: that attack's rows from its reconstructions, per sample
  (one value per test image) or per set (one value, optionally with a CI).

``record``/``log`` name and hold what the scorer puts in the provenance (e.g. "lpips").
A ``reconstruction=True`` spec (``fn(x, x_hat) -> [B]``, splitleak's ssim/psnr/mse and plugin
metrics) needs no scorer of its own: `ReconstructionScorer` wraps any of them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn

from splitleak._validate import all_finite
from splitleak.classifier import shared_classifier
from splitleak.data import ArraySplit, InputSpec
from splitleak.errors import InputError, NumericalError
from splitleak.metrics import METRICS, MetricSpec, accuracy
from splitleak.metrics.dependence_scale import DcorEstimate, dcor_statistics
from splitleak.metrics.perceptual import lpips_available, lpips_description, lpips_distance
from splitleak.metrics.semantic import majority_rate, semantic_correct, semantic_reference
from splitleak.metrics.specs import PRIMARY_METRIC
from splitleak.models.architectures import classifier_architecture
from splitleak.progress import ProgressFactory, silent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoringContext:
    """What `prepare` may use: the evaluation's data, the evaluated model's facts, seed and device."""

    spec: InputSpec  # the model's input spec (shape, value range)
    test: ArraySplit  # the scored test images
    aux: ArraySplit  # the attacker's auxiliary data
    labelled: bool
    num_classes: int
    arch: str  # the evaluated model's architecture
    has_head: bool  # the checkpoint holds the server head (task logits exist)
    seed: int = 0
    device: str = "cpu"
    progress: ProgressFactory = silent


@dataclass(frozen=True)
class ModelOutputs:
    """What model-level scorers score, once: the test images, their labels and logits, and the
    images dCor(x, z) is computed on with their activations."""

    x: Tensor
    y: Tensor | None
    logits: Tensor
    dependence_x: Tensor
    dependence_z: Tensor


@dataclass(frozen=True)
class Reconstructions:
    """One attack's reconstructions of the test images (clipped to the value range)."""

    attack: str
    x: Tensor
    x_hat: Tensor
    y: Tensor | None
    samples: np.ndarray  # the test images' indices
    value_range: tuple[float, float]


@dataclass(frozen=True)
class Score:
    """One metric's rows: per-sample values (``samples`` given) or one set-level value (``n``, CI)."""

    metric: str
    values: np.ndarray
    n: int
    samples: np.ndarray | None = None
    ci: tuple[float, float] | None = None

    @classmethod
    def per_sample(cls, metric: str, values: Any, samples: np.ndarray) -> Score:
        values = np.asarray(values, dtype="float64")
        return cls(metric, values, len(values), samples=samples)

    @classmethod
    def per_set(cls, metric: str, value: float, n: int, ci: tuple[float, float] | None = None) -> Score:
        return cls(metric, np.array([value], dtype="float64"), n, ci=ci)

    @classmethod
    def dcor(cls, prefix: str, estimate: DcorEstimate) -> list[Score]:
        """The V-statistic `prefix` and the U-statistic `prefix`_u2, each with its CI."""
        return [cls.per_set(prefix, estimate.v, estimate.n, estimate.v_ci), cls.per_set(f"{prefix}_u2", estimate.u2, estimate.n, estimate.u2_ci)]


@runtime_checkable
class Scorer(Protocol):
    specs: tuple[MetricSpec, ...]
    record: str | None
    log: dict[str, Any]

    def prepare(self, context: ScoringContext) -> None: ...

    def score_model(self, outputs: ModelOutputs) -> Sequence[Score]: ...

    def score(self, batch: Reconstructions) -> Sequence[Score]: ...


class BaseScorer:
    """Defaults: nothing to prepare, no model-level rows, no per-attack rows, no provenance."""

    metrics: ClassVar[tuple[str, ...]] = ()
    record: str | None = None

    def __init__(self) -> None:
        self.log: dict[str, Any] = {}

    @property
    def specs(self) -> tuple[MetricSpec, ...]:
        return tuple(METRICS[name] for name in self.metrics)

    def prepare(self, context: ScoringContext) -> None:
        pass

    def score_model(self, outputs: ModelOutputs) -> Sequence[Score]:
        return []

    def score(self, batch: Reconstructions) -> Sequence[Score]:
        return []


def reconstruction_values(spec: MetricSpec, x: Tensor, x_hat: Tensor, value_range: tuple[float, float]) -> np.ndarray:
    """Per-sample values of a reconstruction metric, with reconstructions clipped to the value range."""
    low, high = value_range
    extra = {"data_range": high - low} if spec.takes_data_range else {}
    return np.asarray(spec.function(x, x_hat.clamp(low, high), **extra), dtype=np.float64).reshape(len(x))


class ReconstructionScorer(BaseScorer):
    """Any ``reconstruction=True`` spec (splitleak's or a plugin's): ``fn(x, x_hat) -> [B]``."""

    def __init__(self, spec: MetricSpec) -> None:
        super().__init__()
        if not spec.reconstruction:
            raise ValueError(f"metric {spec.name!r} is not a reconstruction metric (fn(x, x_hat) -> [B])")
        self.spec = spec

    @property
    def specs(self) -> tuple[MetricSpec, ...]:
        return (self.spec,)

    def score(self, batch: Reconstructions) -> Sequence[Score]:
        return [Score.per_sample(self.spec.name, reconstruction_values(self.spec, batch.x, batch.x_hat, batch.value_range), batch.samples)]


class AccuracyScorer(BaseScorer):
    """Task accuracy of the server head's logits on the test images (utility, model level)."""

    metrics = ("accuracy",)
    record = "task_accuracy"

    def prepare(self, context: ScoringContext) -> None:
        if not context.has_head:
            self.log = {"reported": False, "reason": "no server head was given, so there are no logits to score"}
        elif not context.labelled:
            self.log = {"reported": False, "reason": "the images have no labels"}
        else:
            self.log = {"reported": True}

    def score_model(self, outputs: ModelOutputs) -> Sequence[Score]:
        if not self.log.get("reported"):
            return []
        if not all_finite(outputs.logits):
            raise NumericalError("the server head produced NaN or infinite logits on the test set")
        return [Score.per_set("accuracy", accuracy(outputs.logits, outputs.y), len(outputs.x))]


class DependenceScorer(BaseScorer):
    """dCor between the input images and the client's activations (model level, with CIs)."""

    metrics = ("dcor", "dcor_u2")
    record = "dcor"

    def __init__(self, *, memory_budget: int, seed: int) -> None:
        super().__init__()
        self.options = {"memory_budget": memory_budget, "seed": seed}

    def score_model(self, outputs: ModelOutputs) -> Sequence[Score]:
        estimate = dcor_statistics(outputs.dependence_x, outputs.dependence_z, **self.options)
        self.log = {"x_vs_z": estimate.to_dict()}
        return Score.dcor("dcor", estimate)


class ReconstructionDependenceScorer(BaseScorer):
    """dCor between the test images and an attack's reconstructions (per attack, with CIs)."""

    metrics = ("dcor_recon", "dcor_recon_u2")

    def __init__(self, *, memory_budget: int, seed: int) -> None:
        super().__init__()
        self.options = {"memory_budget": memory_budget, "seed": seed}

    def score(self, batch: Reconstructions) -> Sequence[Score]:
        return Score.dcor("dcor_recon", dcor_statistics(batch.x, batch.x_hat, **self.options))


class LpipsScorer(BaseScorer):
    """LPIPS with a real ImageNet backbone, per sample; unavailable (no rows) without real weights,
    or an error with ``require`` or an explicit ``weights`` file. ``net=None``: not asked for."""

    metrics = ("lpips",)
    record = "lpips"

    def __init__(self, net: str | None, *, weights: str | None = None, require: bool = False) -> None:
        super().__init__()
        self.net, self.weights, self.require = net, weights, require

    def prepare(self, context: ScoringContext) -> None:
        if self.net is None:
            self.log = {"available": False, "reason": "LPIPS was not asked for"}
            return
        ok, reason = lpips_available(self.net, weights=self.weights)
        if not ok:
            if self.require or self.weights is not None:  # a file named explicitly must be usable weights
                raise InputError(reason)
            log.warning("%s", reason)
            self.log = {"available": False, "reason": reason}
            return
        height, width = context.spec.shape[1], context.spec.shape[2]
        self.log = {"available": True, "net": self.net, "definition": lpips_description(height, width, net=self.net, weights=self.weights)}

    def score(self, batch: Reconstructions) -> Sequence[Score]:
        if not self.log.get("available"):
            return []
        values = lpips_distance(batch.x, batch.x_hat, net=self.net, value_range=batch.value_range, weights=self.weights)
        return [Score.per_sample("lpips", values.numpy(), batch.samples)]


class SemanticScorer(BaseScorer):
    """The attacker's own classifier, trained on its auxiliary data in `prepare`: its accuracy on
    the originals (semantic_reference, model level), the chance level of the attacked images'
    labels (semantic_chance, model level) and per reconstruction (semantic_accuracy)."""

    metrics = ("semantic_reference", "semantic_chance", "semantic_accuracy")
    record = "semantic_classifier"

    def __init__(self, *, epochs: int) -> None:
        super().__init__()
        self.epochs = epochs
        self.classifier: nn.Module | None = None

    def prepare(self, context: ScoringContext) -> None:
        self.classifier = None
        if self.epochs == 0:
            self.log = {"enabled": False, "reason": "semantic_epochs is 0"}
            return
        if len(context.aux) < 2:
            self.log = {"enabled": False, "reason": "the attacker has no auxiliary images to train a classifier on"}
            return
        if not context.labelled:
            self.log = {"enabled": False, "reason": "the images have no labels"}
            return
        arch = classifier_architecture(tuple(context.spec.shape), preferred=context.arch)
        if arch is None:
            self.log = {"enabled": False, "reason": f"no registered architecture takes inputs of shape {list(context.spec.shape)}"}
            return
        self.classifier = shared_classifier(  # once per process for the same auxiliary data, not per model
            context.aux, context.spec, context.num_classes, arch=arch.name, epochs=self.epochs,
            seed=context.seed, device=context.device, progress=context.progress,
        )
        self.log = {"enabled": True, "arch": arch.name, "epochs": self.epochs, "train_size": len(context.aux)}

    def score_model(self, outputs: ModelOutputs) -> Sequence[Score]:
        if self.classifier is None:
            return []
        reference = semantic_reference(self.classifier, outputs.x, outputs.y).item()
        chance = majority_rate(outputs.y).item()
        self.log["reference_accuracy"] = reference
        self.log["chance"] = chance
        return [Score.per_set("semantic_reference", reference, len(outputs.x)), Score.per_set("semantic_chance", chance, len(outputs.x))]

    def score(self, batch: Reconstructions) -> Sequence[Score]:
        if self.classifier is None:
            return []
        return [Score.per_sample("semantic_accuracy", semantic_correct(self.classifier, batch.x_hat, batch.y).numpy(), batch.samples)]


def check_scores(scorer: Scorer, scores: Sequence[Score]) -> None:
    """A scorer writes only the metrics its specs declare, at their level."""
    declared = {spec.name: spec for spec in scorer.specs}
    for s in scores:
        spec = declared.get(s.metric)
        if spec is None:
            raise RuntimeError(f"{type(scorer).__name__} wrote {s.metric!r}, which is not among its specs {sorted(declared)}")
        if (s.samples is not None) != (spec.level == "sample"):
            raise RuntimeError(f"{type(scorer).__name__} wrote {s.metric!r} {'per sample' if s.samples is not None else 'per set'}, but its level is {spec.level!r}")


def extremes(attack: str, values: np.ndarray, test: ArraySplit, x_hat: Tensor, *, metric: str = PRIMARY_METRIC) -> dict[str, Tensor]:
    """The best, median and worst reconstructed test images by `metric` (the primary metric):
    best = most leakage in the metric's direction; ties: lower test index."""
    leak = -values if METRICS[metric].leakage_direction == "higher" else values
    order = np.lexsort((test.indices.numpy(), leak))
    picks = torch.from_numpy(order[[0, len(order) // 2, len(order) - 1]].copy())
    prefix = f"extremes/{attack}"
    return {
        f"{prefix}/indices": test.indices[picks].clone(),
        f"{prefix}/original": test.x[picks].clone(),
        f"{prefix}/reconstruction": x_hat[picks].clone(),
    }


__all__ = [
    "AccuracyScorer",
    "BaseScorer",
    "DependenceScorer",
    "LpipsScorer",
    "ModelOutputs",
    "ReconstructionDependenceScorer",
    "ReconstructionScorer",
    "Reconstructions",
    "Score",
    "Scorer",
    "ScoringContext",
    "SemanticScorer",
    "check_scores",
    "extremes",
    "reconstruction_values",
]
