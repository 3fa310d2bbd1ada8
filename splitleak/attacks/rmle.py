"""White-box regularised maximum-likelihood inversion, rMLE (He, Zhang, Lee, ACSAC 2019).

The attacker holds the client encoder's weights. For each observed activation z it searches
the input space: starting from mid-range grey it runs Adam on x to minimise

    ||f1(x) - z||^2 / ||z||^2  +  tv_weight * TV(x)

keeping x inside the spec's value range (projection after every step). The distance is
divided by the activation's own energy so that one `tv_weight` means the same thing at every
cut (He et al. tune lambda per layer; with Adam only the ratio of the two terms matters).

Which f1: the deterministic encoder, with the deterministic part of the defense's activation
transform (dp-noise's clipping) and without the part that draws (the noise). Under
additive Gaussian noise z = f1(x) + n the likelihood p(z | x) is maximised exactly by
minimising ||f1(x) - z||^2, so the l2 objective on the noiseless encoder *is* the MLE (for
Laplace noise the MLE would be the l1 distance; we keep He et al.'s l2). Differentiating
through a freshly drawn noise sample instead would only add variance to the gradient.

All activations are inverted at once in chunks of `batch_size` (Adam normalises per
coordinate, so a sample's path does not depend on its chunk-mates); only the optimisation
steps are a Python loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from splitleak._random import without_draws
from splitleak.attacks._optim import InputOptimiser, RunningMeans, chunks, per_sample_mse, total_variation
from splitleak.attacks.base import ATTACKS, Access, AttackConfig, ThreatModel, WorkSize
from splitleak.data import InputSpec
from splitleak.models.split import SplitModel
from splitleak.progress import ProgressFactory, silent


@dataclass(frozen=True)
class RMLEConfig(AttackConfig):
    """Budget and hyper-parameters of the rMLE attack."""

    what: ClassVar[str] = "rmle"
    budget_fields: ClassVar[tuple[str, ...]] = ("steps",)

    steps: int = 200
    lr: float = 0.1
    tv_weight: float = 0.01
    batch_size: int = 256


def noiseless_client(encoder: nn.Module, spec: InputSpec) -> Callable[[Tensor], Tensor]:
    """The deterministic client function x -> f1(x) for inputs in the spec's value range.

    For a SplitModel: its normalisation and encoder, then the defense's transform without the
    layers that draw (`without_draws`: dp-noise's clipping stays, its noise goes; noise and
    dropout leave nothing). A new wrapper sharing the encoder; the model is not modified. Any
    other module is taken to be that function already.
    """
    if isinstance(encoder, SplitModel):
        device = next(encoder.encoder.parameters(), torch.empty(0)).device
        transform = without_draws(encoder.transform)
        return SplitModel(encoder.encoder, nn.Identity(), encoder.spec, transform=transform).to(device).client
    return encoder


STEPS_PER_SECOND = 1850.0  # image-steps (one image, one Adam step) per second, one core, small-cnn


@ATTACKS.register
class RMLEAttack:
    """He et al.'s white-box regularised MLE: optimise the input until it reproduces z."""

    name: ClassVar[str] = "rmle"
    label: ClassVar[str] = "rMLE"
    reference: ClassVar[str] = "He, Zhang, Lee 2019 (white-box rMLE)"
    config_class: ClassVar[type[RMLEConfig]] = RMLEConfig
    threat_model: ClassVar[ThreatModel] = ThreatModel(
        summary="white-box: has the client encoder's weights, no data",
        encoder_weights=True,
    )

    @classmethod
    def estimate_seconds(cls, config: RMLEConfig, size: WorkSize) -> float:
        """Rough seconds of one core for fit + reconstruct (sweep --dry-run)."""
        return config.steps * size.scored / STEPS_PER_SECOND

    def __init__(self, config: RMLEConfig | None = None, *, progress: ProgressFactory = silent) -> None:
        self.config = config or RMLEConfig()
        self.progress = progress
        self.client: Callable[[Tensor], Tensor] | None = None
        self.spec: InputSpec | None = None
        self.device = "cpu"
        self.history: list[float] = []
        self.objective = RunningMeans(2)  # first and last step, over the reconstruct calls since fit

    def fit(self, access: Access) -> "RMLEAttack":
        self.threat_model.check(self.name, access)
        assert access.encoder is not None
        self.history, self.objective = [], RunningMeans(2)
        self.client = noiseless_client(access.encoder, access.spec)
        self.spec = access.spec
        self.device = access.device
        return self

    def reconstruct(self, z: Tensor) -> Tensor:
        if self.client is None or self.spec is None:
            raise RuntimeError("call fit() before reconstruct()")
        cfg, client, spec = self.config, self.client, self.spec
        out, first, last = [], 0.0, 0.0
        with self.progress(total=cfg.steps * len(z), desc="rmle attack: reconstruct") as bar:
            for target in chunks(z, cfg.batch_size):
                target = target.to(self.device)
                energy = target.pow(2).flatten(1).mean(1).clamp_min(1e-12)

                def objective(x: Tensor) -> Tensor:
                    return per_sample_mse(client(x), target) / energy + cfg.tv_weight * total_variation(x)

                inputs = InputOptimiser((len(target), *spec.shape), spec, cfg.lr, self.device)
                for step in range(cfg.steps):
                    losses = inputs.step(objective)
                    if step == 0:
                        first += losses.sum().item()
                    bar.update(len(target))
                with torch.no_grad():
                    last += objective(inputs.x).sum().item()
                out.append(inputs.result().cpu())
        self.history = self.objective.add([first, last], len(z))
        return torch.cat(out) if out else torch.empty(0, *spec.shape)

    def budget(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self.config),
            "objective_start": self.history[0] if self.history else None,
            "objective_end": self.history[-1] if self.history else None,
        }
