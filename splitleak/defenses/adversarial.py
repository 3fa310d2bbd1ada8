"""Attacker-aware training (ResSFL, Li, Rakin, Chen, He, Fan, Chakrabarti, CVPR 2022).

The client trains against a simulated inversion network of its own. Each step:

    penalty = lam * max(0, SSIM(A(z), x) - ssim_threshold)   (loss "ssim", ResSFL's default)
            = -lam * MSE(A(z), x)                             (loss "mse", ResSFL's other option)
    client: CE + penalty            (A frozen and in eval mode; the gradient reaches the encoder via z)
    A: `attacker_steps` Adam steps on (z.detach(), x) minimising -SSIM (or MSE)

A is splitleak's `Decoder` (the network of the `decoder` attack), initialised from the run's
"train/defense" stream. Before the first client step A takes `pretrain_steps` steps on the first
batch (ResSFL pre-trains it on the freshly initialised encoder's activations).

Read from the authors' code (zlijingtao/ResSFL, MIA_torch.py; read, not copied): the SSIM term with
threshold 0.5 and strength 0.3 (their reproduce scripts), one attacker step per client step
("gan_adv_step1"), the attacker's Adam at lr 1e-3 trained on -SSIM, the attacker in eval mode for
the client's term. Deviations, and why:
- The attacker is splitleak's `Decoder` (width 32 by default), not ResSFL's res_normN4C64 decoder:
  it is the network our `decoder` attack trains, so the defense is measured against the attacker
  it was trained with (its best case; rMLE and the other attacks are the independent check).
- The attacker steps after the client's step, on the z of that step (ResSFL steps it before, on
  the same batch): the protocol's `after_step` hook; the client sees an attacker one step older.
- Pre-training is `pretrain_steps` steps on the first batch, not ResSFL's 30 epochs over a data
  set: a 2-core CPU budget, and the session is given no data set. Below the SSIM threshold the
  penalty is zero anyway, so an untrained attacker does not push the encoder.
- No bottleneck layer (ResSFL's optional 3x3 conv to 8 channels at the cut, widened again on the
  server): it changes the client's architecture, and the attacks that rebuild the client from the
  registered architecture (rmle, shadow, unsplit, sdar, fora) would invert a different function
  than the one trained, making the defense look stronger than it is. It belongs in the
  architecture registry (a narrower cut), not in this defense's transform.
- No learning-rate schedule for the attacker (ResSFL decays it with the model's MultiStepLR).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from splitleak._random import build
from splitleak._validate import finite_number, positive_int
from splitleak.defenses.base import DEFENSES, DefenseSession
from splitleak.errors import InputError
from splitleak.metrics.image import ssim

LOSSES = ("ssim", "mse")
SSIM_WINDOW = 11  # the pinned SSIM's window: images must be at least this large for loss "ssim"


@DEFENSES.register
@dataclass(frozen=True)
class AdversarialTraining:
    """The client maximises a simulated inversion network's reconstruction error (ResSFL)."""

    lam: float = 1.0
    loss: str = "ssim"
    ssim_threshold: float = 0.5
    attacker_width: int = 32
    attacker_lr: float = 1e-3
    attacker_steps: int = 1
    pretrain_steps: int = 50
    name: ClassVar[str] = "adversarial"
    label: ClassVar[str] = "adversarial"
    strength: ClassVar[str | None] = "lam"
    symbol: ClassVar[str] = "λ"
    training_speed: ClassVar[float] = 0.21  # training throughput relative to no defense (4.75x the time, benchmarks/results/defense_training.md)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lam", finite_number("adversarial lam", self.lam, minimum=0.0))
        if self.loss not in LOSSES:
            raise InputError(f"adversarial loss must be one of {list(LOSSES)}, got {self.loss!r}")
        threshold = finite_number("adversarial ssim_threshold", self.ssim_threshold, minimum=0.0)
        if threshold >= 1:
            raise InputError(f"adversarial ssim_threshold must be < 1 (SSIM is at most 1), got {threshold}")
        object.__setattr__(self, "ssim_threshold", threshold)
        positive_int("adversarial attacker_width", self.attacker_width)
        if self.attacker_width < 2:
            raise InputError(f"adversarial attacker_width must be >= 2, got {self.attacker_width}")
        lr = finite_number("adversarial attacker_lr", self.attacker_lr, minimum=0.0)
        if lr == 0:
            raise InputError("adversarial attacker_lr must be > 0")
        object.__setattr__(self, "attacker_lr", lr)
        positive_int("adversarial attacker_steps", self.attacker_steps)
        if isinstance(self.pretrain_steps, bool) or not isinstance(self.pretrain_steps, int) or self.pretrain_steps < 0:
            raise InputError(f"adversarial pretrain_steps must be a whole number >= 0, got {self.pretrain_steps!r}")

    def penalty(self, x: Tensor, z: Tensor) -> Tensor | None:
        return None  # the term needs the simulated attacker: it lives in the session

    def transform(self, generator: torch.Generator | None = None) -> nn.Module | None:
        return None

    def params(self) -> dict[str, Any]:
        return asdict(self)

    def session(self, *, model: Any, generator: torch.Generator, device: torch.device) -> AdversarialSession:
        return AdversarialSession(self, model=model, generator=generator, device=device)


class AdversarialSession(DefenseSession):
    """One run's simulated attacker: a `Decoder`, its Adam, and whether it was pre-trained."""

    def __init__(self, defense: AdversarialTraining, *, model: Any, generator: torch.Generator, device: torch.device) -> None:
        super().__init__(defense)
        spec = model.spec
        if defense.loss == "ssim" and min(spec.shape[1:]) < SSIM_WINDOW:
            raise InputError(f"adversarial loss 'ssim' needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {spec.shape}; use loss 'mse'")
        from splitleak.attacks.decoder import Decoder  # here: splitleak.attacks imports the defenses

        z_shape = _activation_shape(model)
        self.attacker = build(lambda: Decoder(z_shape, spec, defense.attacker_width), generator).to(device)
        self.optimiser = torch.optim.Adam(self.attacker.parameters(), lr=defense.attacker_lr)
        self.data_range = float(spec.value_range[1] - spec.value_range[0])
        self.pretrained = defense.pretrain_steps == 0

    def penalty(self, x: Tensor, z: Tensor) -> Tensor | None:
        """The client's term: the frozen attacker's reconstruction quality, to be lowered."""
        if not self.pretrained:
            self._train(x, z.detach(), self.defense.pretrain_steps)
            self.pretrained = True
        self.attacker.eval()
        params = list(self.attacker.parameters())
        for p in params:
            p.requires_grad_(False)
        try:
            recon = self.attacker(z)
        finally:
            for p in params:
                p.requires_grad_(True)
        if self.defense.loss == "mse":
            return -self.defense.lam * F.mse_loss(recon, x)
        return self.defense.lam * torch.relu(self._ssim(recon, x) - self.defense.ssim_threshold)

    def after_step(self, x: Tensor, z: Tensor, y: Tensor) -> Mapping[str, float]:
        """Train the attacker on the step's detached activations; log its loss before the update."""
        if len(x) < 2:  # BatchNorm needs two samples
            return {}
        return self._train(x, z, self.defense.attacker_steps)

    def _train(self, x: Tensor, z: Tensor, steps: int) -> dict[str, float]:
        self.attacker.train()
        first = None
        for _ in range(steps):
            recon = self.attacker(z)
            loss = F.mse_loss(recon, x) if self.defense.loss == "mse" else -self._ssim(recon, x)
            self.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            self.optimiser.step()
            first = loss.item() if first is None else first
        self.optimiser.zero_grad(set_to_none=True)  # nothing of the attacker's update outlives it
        if first is None:
            return {}
        return {"attacker_mse": first} if self.defense.loss == "mse" else {"attacker_ssim": -first}

    def _ssim(self, recon: Tensor, x: Tensor) -> Tensor:
        return ssim(recon, x, data_range=self.data_range).mean()

    def modules(self) -> Mapping[str, nn.Module]:
        return {"attacker": self.attacker}

    def state_dict(self) -> dict[str, Any]:
        return {"attacker": self.attacker.state_dict(), "optimiser": self.optimiser.state_dict(), "pretrained": self.pretrained}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        missing = sorted({"attacker", "optimiser", "pretrained"} - set(state))
        if missing:
            raise InputError(f"defense 'adversarial' state lacks {missing}")
        self.attacker.load_state_dict(state["attacker"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.pretrained = bool(state["pretrained"])


def _activation_shape(model: Any) -> tuple[int, ...]:
    """The shape of one released activation, from a zero input (eval mode, nothing changed)."""
    training = model.training
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            z = model.eval().client(torch.zeros(1, *model.spec.shape, device=device))
    finally:
        model.train(training)
    return tuple(z.shape[1:])
