"""UnSplit: data-oblivious inversion with a cloned client (Erdogan, Kupcu, Cicek, WPES 2022).

The attacker knows only the client's architecture and cut and sees activations z: no
weights, no queries, no auxiliary data. It starts from mid-range grey inputs x and a randomly
initialised clone f1' of the client, and alternates

* `input_steps` Adam steps on x to minimise  ||f1'(x) - z||^2 / ||z||^2 + tv_weight * TV(x),
* `model_steps` Adam steps on the clone to minimise  ||f1'(x) - z||^2 / ||z||^2,

for `outer_steps` rounds (the paper: 1000 x (100 + 100), one image at a time; far beyond a
CPU budget). Here a whole chunk of activations shares one clone, which must then explain all
of them at once, and the clone carries over from chunk to chunk within one `reconstruct`
call, as the paper's clone carries over from image to image (an evaluation that streams its
activations, splitleak.streaming, calls `reconstruct` once per chunk of `activation_memory`'s
images: each such chunk starts from the fitted clone again). The distance is divided by the
activation's energy as in rMLE, so `tv_weight` is comparable across cuts.

The outcome depends on the activations' scale relative to the fresh clone's, although the
clone's last layer can absorb any positive scale (conv/linear + ReLU: ReLU(aWx + ab) =
a ReLU(Wx + b)): with fixed step sizes the clone and the input co-adapt differently (the
authors' code, unnormalised MSE with fixed Adam rates, has the same dependence). A noise-trained
encoder's activations are ~5x larger at cut 2, which is why UnSplit seemed to do better under
noise (docs/attacks.md; at the undefended scale the outcome also swings with the attack seed). `activation_rms > 0` first rescales each chunk's activations by one
positive scalar to that root-mean-square, so the attack no longer depends on the victim's
scale; 0 (the default) attacks them as observed.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from splitleak.attacks._optim import InputOptimiser, RunningMeans, attack_generator, chunks, fresh_client, per_sample_mse, total_variation
from splitleak.attacks.base import ATTACKS, Access, AttackConfig, ThreatModel, WorkSize
from splitleak.data import InputSpec
from splitleak.models.split import SplitModel
from splitleak.progress import ProgressFactory, silent


@dataclass(frozen=True)
class UnSplitConfig(AttackConfig):
    """Budget and hyper-parameters of the UnSplit attack."""

    what: ClassVar[str] = "unsplit"
    budget_fields: ClassVar[tuple[str, ...]] = ("outer_steps",)

    outer_steps: int = 20
    input_steps: int = 10
    model_steps: int = 10
    input_lr: float = 0.05
    model_lr: float = 1e-3
    tv_weight: float = 0.05
    batch_size: int = 256
    activation_rms: float = 0.0  # > 0: rescale each chunk of activations to this root-mean-square first


STEPS_PER_SECOND = 1700.0  # image-steps of the input and model updates per second, one core, small-cnn


def rescaled(z: Tensor, rms: float) -> Tensor:
    """`z` times one positive scalar so that its root-mean-square is `rms` (`rms` 0, or z all
    zero: `z` unchanged). A power-of-two factor on `z` gives bit-identical output."""
    current = z.pow(2).mean().sqrt()
    if rms <= 0 or not current > 0:
        return z
    return z / current * rms


@ATTACKS.register
class UnSplitAttack:
    """Erdogan et al.'s UnSplit: jointly invert the activations and clone the client."""

    name: ClassVar[str] = "unsplit"
    label: ClassVar[str] = "UnSplit"
    reference: ClassVar[str] = "Erdogan, Küpçü, Çiçek 2022 (UnSplit)"
    config_class: ClassVar[type[UnSplitConfig]] = UnSplitConfig
    threat_model: ClassVar[ThreatModel] = ThreatModel(
        summary="data-oblivious: knows only the client's architecture and sees its activations",
        architecture=True,
    )

    @classmethod
    def estimate_seconds(cls, config: UnSplitConfig, size: WorkSize) -> float:
        """Rough seconds of one core for fit + reconstruct (sweep --dry-run)."""
        return config.outer_steps * (config.input_steps + config.model_steps) * size.scored / STEPS_PER_SECOND

    def __init__(self, config: UnSplitConfig | None = None, *, progress: ProgressFactory = silent) -> None:
        self.config = config or UnSplitConfig()
        self.progress = progress
        self.initial_clone: SplitModel | None = None
        self.clone: SplitModel | None = None
        self.spec: InputSpec | None = None
        self.device = "cpu"
        self.history: list[float] = []
        self.objective = RunningMeans(self.config.outer_steps + 1)  # per round, over the reconstruct calls since fit

    def fit(self, access: Access) -> "UnSplitAttack":
        """Nothing to learn before seeing activations: build the random clone, its weights drawn
        from the "init" stream of `access.seed` (a second fit builds the same clone)."""
        self.threat_model.check(self.name, access)
        self.clone, self.history, self.objective = None, [], RunningMeans(self.config.outer_steps + 1)
        self.initial_clone = fresh_client(access, self.name, self.threat_model.summary, attack_generator(access.seed, self.name, "init"))
        self.spec, self.device = access.spec, access.device
        return self

    @torch.enable_grad()  # it trains the clone, also when the caller turned gradients off
    def reconstruct(self, z: Tensor) -> Tensor:
        if self.initial_clone is None or self.spec is None:
            raise RuntimeError("call fit() before reconstruct()")
        cfg, spec = self.config, self.spec
        clone = copy.deepcopy(self.initial_clone).train()
        model_opt = torch.optim.Adam(clone.encoder.parameters(), lr=cfg.model_lr)
        out: list[Tensor] = []
        history = [0.0] * (cfg.outer_steps + 1)
        steps_per_round = cfg.input_steps + cfg.model_steps
        with self.progress(total=cfg.outer_steps * steps_per_round * len(z), desc="unsplit attack: reconstruct") as bar:
            for target in chunks(z, cfg.batch_size):
                target = rescaled(target.to(self.device), cfg.activation_rms)
                energy = target.pow(2).flatten(1).mean(1).clamp_min(1e-12)

                def distance(x: Tensor) -> Tensor:
                    return per_sample_mse(clone.client(x), target) / energy

                def objective(x: Tensor) -> Tensor:
                    return distance(x) + cfg.tv_weight * total_variation(x)

                inputs = InputOptimiser((len(target), *spec.shape), spec, cfg.input_lr, self.device)
                for round_ in range(cfg.outer_steps):
                    for step in range(cfg.input_steps):
                        losses = inputs.step(objective)
                        if round_ == 0 and step == 0:
                            history[0] += losses.sum().item()
                    x = inputs.x.detach()
                    for _ in range(cfg.model_steps):
                        loss = distance(x).mean()
                        model_opt.zero_grad(set_to_none=True)
                        loss.backward()
                        model_opt.step()
                    with torch.no_grad():
                        history[round_ + 1] += objective(x).sum().item()
                    bar.update(steps_per_round * len(target))
                out.append(inputs.result().cpu())
        self.history = self.objective.add(history, len(z))
        self.clone = clone.eval()
        return torch.cat(out) if out else torch.empty(0, *spec.shape)

    def budget(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self.config),
            "objective_start": self.history[0] if self.history else None,
            "objective_end": self.history[-1] if self.history else None,
        }
