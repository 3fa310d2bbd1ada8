"""evaluate(checkpoint, config, splits) -> Results: run the attacks, score them, keep provenance."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from splitleak._config import from_mapping
from splitleak._validate import positive_int
from splitleak.attacks import ATTACKS, Access, make_attack
from splitleak.data import DataConfig, Splits
from splitleak.metrics import IMAGE_METRICS, accuracy, distance_correlation, u_distance_correlation_sqr
from splitleak.metrics.semantic import semantic_correct, train_classifier
from splitleak.models.checkpoint import Checkpoint
from splitleak.progress import ProgressFactory, silent
from splitleak.provenance import environment
from splitleak.results import MODEL_LEVEL, Results

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalConfig:
    """Which attacks to run with which budgets, on how many test images, with which seed."""

    attacks: tuple[str, ...] = ("decoder",)
    attack_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    metrics: tuple[str, ...] = ("ssim", "psnr", "mse")
    limit: int | None = 1000
    dcor_samples: int = 1000
    gallery: int = 16
    semantic_epochs: int = 5
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "attacks", tuple(self.attacks))
        object.__setattr__(self, "metrics", tuple(self.metrics))
        object.__setattr__(self, "attack_params", {k: dict(v) for k, v in dict(self.attack_params).items()})
        if not self.attacks:
            raise ValueError("evaluate needs at least one attack")
        for name in (*self.attacks, *self.attack_params):
            if name not in ATTACKS:
                raise ValueError(f"unknown attack {name!r}; choose from {sorted(ATTACKS)}")
        for name in self.metrics:
            if name not in IMAGE_METRICS:
                raise ValueError(f"unknown reconstruction metric {name!r}; choose from {sorted(IMAGE_METRICS)}")
        positive_int("limit", self.limit, allow_none=True)
        positive_int("dcor_samples", self.dcor_samples)
        for name in ("gallery", "semantic_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "EvalConfig":
        return from_mapping(cls, values, "evaluation")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "attacks": list(self.attacks), "metrics": list(self.metrics)}


def data_config_for(checkpoint: Checkpoint, **overrides: Any) -> DataConfig:
    """The checkpoint's own data splits (same seed, same attacker pool), with `overrides`."""
    recorded = dict(checkpoint.meta.get("data") or {})
    if not recorded:
        raise ValueError(f"{checkpoint.path} records no dataset; pass the data explicitly")
    recorded.update({k: v for k, v in overrides.items() if v is not None})
    return DataConfig.from_dict(recorded)


@torch.no_grad()
def _client_outputs(checkpoint: Checkpoint, x: Tensor, device: str, batch: int = 1024) -> tuple[Tensor, Tensor]:
    model = checkpoint.model.to(device).eval()
    zs, logits = [], []
    for i in range(0, len(x), batch):
        out, z = model(x[i : i + batch].to(device))
        zs.append(z.cpu())
        logits.append(out.cpu())
    return torch.cat(zs), torch.cat(logits)


def _rows(base: dict[str, Any], attack: str, metric: str, values: np.ndarray, samples: np.ndarray | None, n: int) -> pd.DataFrame:
    count = len(values)
    return pd.DataFrame(
        {
            **{k: [v] * count for k, v in base.items()},
            "attack": attack,
            "metric": metric,
            "value": values.astype("float64"),
            "sample": pd.array(samples if samples is not None else [pd.NA] * count, dtype="Int64"),
            "n": n,
        }
    )


def _score(metric: str, x: Tensor, x_hat: Tensor, value_range: tuple[float, float]) -> np.ndarray:
    """Per-sample values of an image metric, with reconstructions clipped to the value range."""
    spec = IMAGE_METRICS[metric]
    low, high = value_range
    extra = {"data_range": high - low} if spec.takes_data_range else {}
    return spec.fn(x, x_hat.clamp(low, high), **extra).numpy()


def evaluate(checkpoint: Checkpoint, config: EvalConfig, splits: Splits, *, progress: ProgressFactory = silent) -> Results:
    """Score the checkpoint's leakage under each attack in `config` on `splits.test`."""
    torch.manual_seed(config.seed)
    model, meta = checkpoint.model, checkpoint.meta
    if tuple(splits.spec.shape) != tuple(model.spec.shape):
        raise ValueError(f"data shape {splits.spec.shape} does not match the model's input {model.spec.shape}")
    test = splits.test if config.limit is None else splits.test.head(min(config.limit, len(splits.test)))
    z_test, logits = _client_outputs(checkpoint, test.x, config.device)
    if not torch.isfinite(z_test).all():
        raise FloatingPointError("the encoder produced NaN or infinite activations on the test set")
    samples = test.indices.numpy()
    base = {
        "run": checkpoint.sha256[:12],
        "checkpoint": str(checkpoint.path),
        "checkpoint_sha256": checkpoint.sha256,
        "dataset": splits.dataset,
        "arch": meta["arch"],
        "cut": int(meta["cut"]),
        "defense": meta["defense"]["name"],
        "defense_params": json.dumps(meta["defense"].get("params", {}), sort_keys=True),
        "seed": config.seed,
    }
    n_dcor = min(config.dcor_samples, len(test))
    x_flat, z_flat = test.x[:n_dcor].flatten(1).double(), z_test[:n_dcor].flatten(1).double()
    frames = [
        _rows(base, MODEL_LEVEL, "accuracy", np.array([accuracy(logits, test.y)]), None, len(test)),
        _rows(base, MODEL_LEVEL, "dcor", np.array([distance_correlation(x_flat, z_flat).item()]), None, n_dcor),
    ]
    if n_dcor > 3:
        frames.append(_rows(base, MODEL_LEVEL, "dcor_u2", np.array([u_distance_correlation_sqr(x_flat, z_flat).item()]), None, n_dcor))
    classifier, semantic_log = None, {"enabled": False, "reason": "semantic_epochs is 0"}
    if config.semantic_epochs > 0 and len(splits.aux) < 2:
        semantic_log["reason"] = "the attacker has no auxiliary images to train a classifier on"
    elif config.semantic_epochs > 0:
        classifier = train_classifier(
            splits.aux, model.spec, int(meta["num_classes"]), arch=meta["arch"], epochs=config.semantic_epochs,
            seed=config.seed, device=config.device, progress=progress,
        )
        reference = semantic_correct(classifier, test.x, test.y).mean().item()
        frames.append(_rows(base, MODEL_LEVEL, "semantic_reference", np.array([reference]), None, len(test)))
        semantic_log = {"enabled": True, "arch": meta["arch"], "epochs": config.semantic_epochs, "train_size": len(splits.aux), "reference_accuracy": reference}
    shown = min(config.gallery, len(test))
    reconstructions = {"indices": test.indices[:shown].clone(), "original": test.x[:shown].clone()}
    attack_log: dict[str, Any] = {}
    access = Access(
        spec=model.spec,
        activation_shape=tuple(z_test.shape[1:]),
        query=lambda x: model(x)[1],
        encoder=model,
        head=model.head,
        aux=splits.aux,
        arch=meta["arch"],
        cut=int(meta["cut"]),
        num_classes=int(meta["num_classes"]),
        device=config.device,
        seed=config.seed,
    )
    for name in config.attacks:
        attack = make_attack(name, config.attack_params.get(name), progress=progress)
        start = time.perf_counter()
        attack.fit(access)
        fitted = time.perf_counter()
        x_hat = attack.reconstruct(z_test)
        done = time.perf_counter()
        if x_hat.shape != test.x.shape or not torch.isfinite(x_hat).all():
            raise FloatingPointError(f"attack {name!r} returned {tuple(x_hat.shape)} or non-finite values")
        for metric in config.metrics:
            values = _score(metric, test.x, x_hat, model.spec.value_range)
            frames.append(_rows(base, name, metric, values, samples, len(test)))
        if classifier is not None:
            correct = semantic_correct(classifier, x_hat.clamp(*model.spec.value_range), test.y).numpy()
            frames.append(_rows(base, name, "semantic_accuracy", correct, samples, len(test)))
        reconstructions[f"attack/{name}"] = x_hat[:shown].clone()
        attack_log[name] = {
            "threat_model": attack.threat_model.to_dict(),
            "budget": attack.budget(),
            "fit_seconds": fitted - start,
            "reconstruct_seconds": done - fitted,
            "aux_size": len(splits.aux),
        }
        log.info("attack %s: fit %.1fs", name, fitted - start)
    provenance = {
        "environment": environment(),
        "checkpoint": {"path": str(checkpoint.path), "sha256": checkpoint.sha256, "meta": meta},
        "evaluation": config.to_dict(),
        "data": {**splits.config.to_dict(), "train_size": len(splits.train), "aux_size": len(splits.aux), "test_size": len(test)},
        "attacks": attack_log,
        "semantic_classifier": semantic_log,
        "gallery_indices": reconstructions["indices"].tolist(),
    }
    return Results(table=pd.concat(frames, ignore_index=True), provenance=provenance, reconstructions=reconstructions)
