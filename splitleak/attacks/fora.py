"""Feature-Oriented Reconstruction Attack (Xu et al., CVPR 2024, "A Stealthy Wrongdoer: FORA
against Split Learning"; authors' code: github.com/X1aoyangXu/FORA).

A semi-honest server with unlabelled public images of the client's domain and the activations
("smashed data") it observed, but no query access, no client weights, no client architecture
and no labels:

1. trains a *substitute client* of a generic VGG-style architecture (conv-BN-ReLU stages and
   max-pools, sized only from the observed activation shape) so that its features of the
   auxiliary images are distributed like the observed activations: a WGAN-GP critic on the
   features plus a multi-kernel MMD (Gaussian kernels, five bandwidths), as in the authors'
   code: substitute loss (1 - a) * mean critic(sub(x_aux)) + a * MK-MMD(sub(x_aux), z_obs),
   critic loss mean critic(z_obs) - mean critic(sub(x_aux)) + gp_weight * GP;
2. trains an inverse network on (substitute(x_aux), x_aux) pairs (the `decoder` attack's
   network and l2 training loop, the substitute standing in for the query interface);
3. decodes the observed activations with it.

Deviations (docs/attacks.md, "fora"):

* Post hoc: the paper collects a snapshot of the smashed data during training; here the
  attack runs on a finished model and aligns to `Access.observed` -- in `evaluate`, the
  activations of the very test images it then reconstructs (what a passive server sees), so the
  feature distribution it matches is that of a few hundred images, not of a training epoch.
* Budget scaled for a 2-core CPU: `substitute_steps` (default 1,500) instead of the authors'
  40,000 iterations at batch 64; the critic is the authors' shape (two stride-2 convs,
  pre-activation residual blocks, a stride-2 conv, a linear score) at width 64 with two
  residual blocks instead of 256 with six; the substitute is 32 channels wide instead of
  VGG's 64; the inverse network is trained after the substitute (the authors train both at
  once) for `decoder_epochs` at Adam 1e-3 (the decoder attack's recipe) instead of 40,000 steps
  at 1e-4. With ~27x fewer steps the substitute's Adam runs at 1e-3, not the authors' 1e-4.
  Losses, loss weights (a = 0.8, gradient-penalty weight 1000), kernels, batch size (64) and
  the critic's optimiser (Adam 3e-4) are the authors'.
* The substitute's last layer ends in ReLU only when every observed activation is >= 0 (the
  paper's target and substitute both end in ReLU); otherwise (noise defenses) it is linear.

Randomness: the substitute's and critic's weights, the batch orders and the gradient penalty's
interpolation weights come from named streams of `access.seed` ("init", "critic-init", "order",
"observed", "gp"); the inverse network is a decoder attack fitted with a seed derived from
`access.seed` ("attack/fora/decoder").
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from splitleak._random import build, derive_seed
from splitleak.attacks._optim import attack_generator
from splitleak.attacks.base import ATTACKS, Access, AttackConfig, ThreatModel, ThreatModelError, WorkSize
from splitleak.attacks.decoder import DecoderAttack, DecoderConfig
from splitleak.data import InputSpec
from splitleak.errors import InputError
from splitleak.models.pooling import MaxPool2x2
from splitleak.progress import ProgressFactory, silent

KERNEL_ALPHAS = tuple(2.0**k for k in range(-3, 2))
"""Bandwidth multipliers of the MK-MMD's Gaussian kernels: sigma^2 = alpha * mean squared distance."""


@dataclass(frozen=True)
class FORAConfig(AttackConfig):
    """Budget and hyper-parameters of FORA (substitute client, critic, then inverse network)."""

    what: ClassVar[str] = "fora"
    budget_fields: ClassVar[tuple[str, ...]] = ("substitute_steps", "decoder_epochs")

    substitute_steps: int = 1500
    decoder_epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3  # substitute, Adam (authors: 1e-4 over 40,000 steps; 10x for ~27x fewer steps)
    critic_lr: float = 3e-4  # critic, Adam (authors: --dlr 3e-4)
    mmd_weight: float = 0.8  # a: (1 - a) * critic term + a * MK-MMD (authors: --a 0.8)
    gp_weight: float = 1000.0  # the authors' gradient-penalty weight
    width: int = 32  # substitute's first-stage channels (doubling per stage, at most 256)
    critic_width: int = 64
    decoder_batch_size: int = 128
    decoder_lr: float = 1e-3
    decoder_width: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mmd_weight > 1.0:
            raise InputError(f"fora mmd_weight must be in [0, 1], got {self.mmd_weight!r}")


# --------------------------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------------------------


def mk_mmd(source: Tensor, target: Tensor, alphas: tuple[float, ...] = KERNEL_ALPHAS) -> Tensor:
    """Multi-kernel MMD^2 between two equal-size batches of features (flattened), as in DAN/FORA.

    Sum of Gaussian kernels exp(-d^2 / (2 alpha m)), m the mean squared distance over the joint
    batch (not differentiated); within-domain means leave the diagonal out, the cross term
    does not. The authors add the constant 2 / (n - 1); it changes no gradient and is left out.
    """
    n = source.shape[0]
    if target.shape[0] != n or n < 2:
        raise ValueError(f"mk_mmd needs two batches of the same size >= 2, got {source.shape[0]} and {target.shape[0]}")
    features = torch.cat([source.flatten(1), target.flatten(1)])
    sq = features.pow(2).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2 * features @ features.T).clamp_min(0)
    scale = d2.detach().mean().clamp_min(1e-12)
    kernel = sum(torch.exp(-d2 / (2 * alpha * scale)) for alpha in alphas)
    off_diagonal = 1 - torch.eye(n, device=features.device, dtype=features.dtype)
    within = ((kernel[:n, :n] + kernel[n:, n:]) * off_diagonal).sum() / (n * (n - 1))
    return within - 2 * kernel[:n, n:].mean()


def gradient_penalty(critic: nn.Module, fake: Tensor, real: Tensor, generator: torch.Generator) -> Tensor:
    """WGAN-GP: mean (||grad critic(e fake + (1 - e) real)|| - 1)^2, e ~ U(0, 1) per sample."""
    shape = (fake.shape[0],) + (1,) * (fake.dim() - 1)
    eps = torch.rand(shape, generator=generator).to(fake.device)
    mixed = (eps * fake + (1 - eps) * real).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), [mixed], create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


# --------------------------------------------------------------------------------------------
# networks
# --------------------------------------------------------------------------------------------


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]


class Substitute(nn.Module):
    """A generic VGG-style client giving activations of `z_shape` from images of `spec`.

    Knows only the input spec and the activation shape: VGG stages (two conv-BN-ReLU, a 2x2
    max-pool) until the activation's resolution (a quarter of the input's for a vector), then a
    3x3 conv-BN to the activation's channels (a linear layer for a vector), ReLU when `relu_out`.
    """

    def __init__(self, spec: InputSpec, z_shape: tuple[int, ...], width: int = 32, relu_out: bool = True) -> None:
        super().__init__()
        c, height, width_px = spec.shape
        self.low, self.high = spec.value_range
        vector = len(z_shape) == 1
        stages = 2 if vector else max(0, round(math.log2(height / z_shape[1])))
        layers: list[nn.Module] = _conv_bn_relu(c, width)
        channels = width
        for stage in range(stages):
            wider = channels if stage == 0 else min(256, channels * 2)
            layers += [*_conv_bn_relu(channels, wider), *(_conv_bn_relu(wider, wider) if stage else []), MaxPool2x2()]
            channels = wider
        if vector:
            flat = channels * (height // 2**stages) * (width_px // 2**stages)
            layers += [nn.Flatten(), nn.Linear(flat, z_shape[0])]
        else:
            layers += [nn.Conv2d(channels, z_shape[0], 3, padding=1), nn.BatchNorm2d(z_shape[0])]
            layers += [nn.AdaptiveAvgPool2d(tuple(z_shape[1:]))]  # identity when the stages already match
        layers += [nn.ReLU()] if relu_out else []
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(2 * (x - self.low) / (self.high - self.low) - 1)  # the spec's range -> [-1, 1]


class _ResBlock(nn.Module):
    """The authors' critic block without BatchNorm: x + conv(relu(conv(relu(x))))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class Critic(nn.Module):
    """WGAN critic on activations of `z_shape`: one unbounded score per sample.

    Feature maps: the authors' shape for shallow cuts (stride-2 conv, ReLU, stride-2 conv,
    residual blocks, stride-2 conv, linear), narrower; vectors: a three-layer MLP.
    """

    def __init__(self, z_shape: tuple[int, ...], width: int = 64, blocks: int = 2) -> None:
        super().__init__()
        if len(z_shape) == 1:
            self.net = nn.Sequential(nn.Linear(z_shape[0], 4 * width), nn.ReLU(), nn.Linear(4 * width, 4 * width), nn.ReLU(), nn.Linear(4 * width, 1))
            return
        wide = 2 * width
        trunk = nn.Sequential(
            nn.Conv2d(z_shape[0], width, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(width, wide, 3, stride=2, padding=1),
            *(_ResBlock(wide) for _ in range(blocks)), nn.Conv2d(wide, wide, 3, stride=2, padding=1), nn.Flatten(),
        )
        with torch.no_grad():
            flat = trunk(torch.zeros(1, *z_shape)).shape[1]
        self.net = nn.Sequential(*trunk, nn.Linear(flat, 1))

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).squeeze(1)


# --------------------------------------------------------------------------------------------
# the attack
# --------------------------------------------------------------------------------------------


def _batches(n: int, size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Endless index batches of exactly `size`: one permutation of range(n) after another."""
    while True:
        perm = torch.randperm(n, generator=generator)
        for i in range(0, n - size + 1, size):
            yield perm[i : i + size]


def _observed(access: Access, summary: str) -> Tensor:
    """`access.observed`, checked: present, the activation shape, finite, at least two rows."""
    z = access.observed
    if z is None:
        raise ThreatModelError(f"attack 'fora' ({summary}) needs the activations the server observed (Access.observed)")
    if tuple(z.shape[1:]) != tuple(access.activation_shape):
        raise InputError(f"fora: observed activations have shape {tuple(z.shape[1:])}, expected {tuple(access.activation_shape)}")
    if len(z) < 2:
        raise InputError(f"fora needs at least 2 observed activations, got {len(z)}")
    if not bool(torch.isfinite(z).all()):
        raise InputError("fora: the observed activations contain NaN or infinite values")
    if len(access.activation_shape) not in (1, 3):
        raise InputError(f"fora takes vector or [C, H, W] activations, got shape {tuple(access.activation_shape)}")
    return z.detach()


IMAGES_PER_SECOND = 1000.0  # decoder fit, image-epochs per second, one core, small-cnn
STEPS_PER_SECOND = 5.0  # substitute + critic steps per second at batch 64, one core, small-cnn cut 2 (measured 3-7)


@ATTACKS.register
class FORAAttack:
    """Xu et al.'s FORA: a substitute client aligned to the observed features, then its inverse."""

    name: ClassVar[str] = "fora"
    label: ClassVar[str] = "FORA"
    reference: ClassVar[str] = "Xu et al. 2024 (FORA, CVPR)"
    config_class: ClassVar[type[FORAConfig]] = FORAConfig
    threat_model: ClassVar[ThreatModel] = ThreatModel(
        summary="query-free: unlabelled auxiliary data and the observed activations; no labels, head or architecture",
        aux_data=True,
        min_aux=16,
    )

    @classmethod
    def estimate_seconds(cls, config: FORAConfig, size: WorkSize) -> float:
        """Rough seconds of one core for fit + reconstruct (sweep --dry-run)."""
        return config.substitute_steps * (config.batch_size / 64) / STEPS_PER_SECOND + config.decoder_epochs * size.aux / IMAGES_PER_SECOND

    def __init__(self, config: FORAConfig | None = None, *, progress: ProgressFactory = silent) -> None:
        self.config = config or FORAConfig()
        self.progress = progress
        self.substitute: Substitute | None = None
        self.inverse: DecoderAttack | None = None
        self.history: list[float] = []  # MK-MMD, mean over each block of LOG_EVERY substitute steps
        self.critic_gap: float | None = None

    LOG_EVERY: ClassVar[int] = 50

    def fit(self, access: Access) -> "FORAAttack":
        """Align a substitute to `access.observed` on the aux images, then train its inverse."""
        self.threat_model.check(self.name, access)
        z_obs = _observed(access, self.threat_model.summary)
        assert access.aux is not None
        self.substitute, self.inverse, self.history, self.critic_gap = None, None, [], None
        substitute, history, gap = self._fit_substitute(access, z_obs)
        stand_in = dataclasses.replace(
            access, query=substitute, encoder=None, head=None, observed=None, seed=derive_seed(access.seed, "attack", self.name, "decoder")
        )
        cfg = self.config
        decoder_config = DecoderConfig(epochs=cfg.decoder_epochs, batch_size=cfg.decoder_batch_size, lr=cfg.decoder_lr, width=cfg.decoder_width)
        self.inverse = DecoderAttack(decoder_config, progress=self.progress).fit(stand_in)
        self.substitute, self.history, self.critic_gap = substitute, history, gap
        return self

    def _fit_substitute(self, access: Access, z_obs: Tensor) -> tuple[Substitute, list[float], float]:
        """Adversarial + MK-MMD feature alignment (the authors' alternating updates)."""
        assert access.aux is not None
        cfg, device = self.config, access.device
        z_shape = tuple(access.activation_shape)
        relu_out = bool((z_obs >= 0).all())
        substitute = build(lambda: Substitute(access.spec, z_shape, cfg.width, relu_out), attack_generator(access.seed, self.name, "init")).to(device)
        critic = build(lambda: Critic(z_shape, cfg.critic_width), attack_generator(access.seed, self.name, "critic-init")).to(device)
        sub_opt = torch.optim.Adam(substitute.parameters(), lr=cfg.lr)
        critic_opt = torch.optim.Adam(critic.parameters(), lr=cfg.critic_lr)
        x_aux, a = access.aux.x, cfg.mmd_weight
        m = min(cfg.batch_size, len(x_aux), len(z_obs))
        aux_batches = _batches(len(x_aux), m, attack_generator(access.seed, self.name, "order"))
        obs_batches = _batches(len(z_obs), m, attack_generator(access.seed, self.name, "observed"))
        gp_gen = attack_generator(access.seed, self.name, "gp")
        mmds: list[float] = []
        gaps: list[float] = []
        substitute.train()
        critic.train()
        with self.progress(total=cfg.substitute_steps, desc="fora attack: fit substitute") as bar:
            for step in range(cfg.substitute_steps):
                x, real = x_aux[next(aux_batches)].to(device), z_obs[next(obs_batches)].to(device)
                fake = substitute(x)
                mmd = mk_mmd(fake, real)
                loss = (1 - a) * critic(fake).mean() + a * mmd
                grads = torch.autograd.grad(loss, list(substitute.parameters()))
                for p, g in zip(substitute.parameters(), grads):
                    p.grad = g
                sub_opt.step()
                fake = fake.detach()
                gap_t = critic(real).mean() - critic(fake).mean()
                critic_loss = gap_t + cfg.gp_weight * gradient_penalty(critic, fake, real, gp_gen)
                critic_opt.zero_grad(set_to_none=True)
                critic_loss.backward()
                critic_opt.step()
                mmds.append(mmd.item())
                gaps.append(-gap_t.item())
                bar.update(1)
                if (step + 1) % self.LOG_EVERY == 0:
                    bar.set_postfix(mmd=f"{sum(mmds[-self.LOG_EVERY:]) / self.LOG_EVERY:.4f}")
        substitute.eval()
        for p in substitute.parameters():
            p.requires_grad_(False)
        history = [sum(mmds[i : i + self.LOG_EVERY]) / len(mmds[i : i + self.LOG_EVERY]) for i in range(0, len(mmds), self.LOG_EVERY)]
        tail = gaps[-self.LOG_EVERY :]
        return substitute, history, sum(tail) / len(tail)

    def reconstruct(self, z: Tensor) -> Tensor:
        if self.inverse is None:
            raise RuntimeError("call fit() before reconstruct()")
        return self.inverse.reconstruct(z)

    def budget(self) -> dict[str, Any]:
        inverse = self.inverse.budget() if self.inverse is not None else {}
        return {
            **dataclasses.asdict(self.config),
            "final_mk_mmd": self.history[-1] if self.history else None,
            "final_critic_gap": self.critic_gap,  # mean critic(substitute) - critic(observed), last steps
            "final_train_mse": inverse.get("final_train_mse"),
        }
