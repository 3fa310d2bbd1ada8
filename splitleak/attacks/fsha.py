"""Feature-space hijacking (FSHA; Pasquini, Ateniese, Bernaschi, CCS 2021, "Unleashing the Tiger:
Inference Attacks on Split Learning"; authors' code: github pasquini-dario/SplitNN_FSHA).

A malicious server during training. It never trains the task: it holds public data (here the
data splits' `aux` part, the attacker's pool) and trains three modules of its own --

* a pilot encoder f~ and an inverse g~, as an autoencoder on its public data (MSE), so that
  f~'s feature space is one g~ inverts;
* a critic D (WGAN-GP) telling f~(x_pub) ("real") from the client's activations f(x_priv)
  ("fake"): D_loss = mean D(f~(x_pub)) - mean D(f(x_priv)) + w_gp * GP;

and instead of the task's gradient sends the client the gradient of mean D(f(x_priv)), so the
client's own optimiser pulls f into f~'s feature space. Then g~(f(x)) reconstructs the client's
private inputs from what it sends. All three losses are computed in `respond` from the same
modules (the authors compute them in one gradient tape) and applied in `update`.

`FSHAServer` is that server (`SERVERS["fsha"]`, `splitleak train --server fsha`); its modules are
saved in the checkpoint (`server/pilot.*`, `server/decoder.*`, `server/critic.*`).
`FSHAAttack` (`ATTACKS["fsha"]`) is what the server does afterwards: decode observed activations
with its trained g~. Its threat model requires a checkpoint trained by the fsha server.

Deviations from the authors' code (all for a 2-core CPU or splitleak's models):

* f~ is a freshly initialised copy of the client's own architecture up to the cut (public
  knowledge), not the authors' linear "pilot" conv net: the pilot's feature space must be one
  the client can reach, and splitleak's encoders end in a ReLU (non-negative activations) that
  an unbounded linear pilot's features would give away to the critic at once.
* g~ is splitleak's decoder network (the passive decoder attack's, `attacks.decoder.Decoder`),
  not the authors' transposed-conv stack: the same inverse for FSHA and the passive decoder,
  so the comparison measures the attack, not the decoder.
* D is a residual critic of `critic_blocks` blocks of `critic_width` channels (default 2 x 64)
  instead of 6 x 256: scaled for the CPU.
* The gradient penalty is Gulrajani et al.'s (norm over all of a sample's activation
  coordinates); the authors' code takes the norm over height and width only.
* Learning rates and penalty weight, scaled for a budget of hundreds of steps instead of the
  authors' >= 10,000 iterations: f~/g~ Adam 1e-3 (authors 1e-5), D Adam 1e-3 (authors 1e-4),
  penalty weight 10 (Gulrajani et al.'s; authors 500). Measured on Fashion-MNIST small-cnn cut 2,
  10,000 private images, 628 steps of 64: the authors' D settings (1e-4) left the client far
  from f~'s space (private SSIM 0.15 with weight 10, 0.04 with 500 after 157 steps), D at 1e-3
  reached 0.39 (docs/attacks.md#fsha). The client's lr is the client's own (`--lr`; splitleak's
  default 1e-3, the authors' experiments 1e-5).
* The server scales the objective it sends (`adversarial_weight`, default 50), as the authors'
  distance-correlation experiment does (FSHA_with_distance_cor: alpha2 = 50 against the client's
  alpha1 = 10,000) "to overwrite alpha1": the client cannot tell a scaled gradient from a large
  one. Against an undefended client it changes nothing (the client's Adam normalises a gradient's
  scale away, up to its epsilon); against a client that adds a penalty (NoPeek) it tips the
  balance: Fashion-MNIST cut 2, NoPeek alpha 5, 942 steps: SSIM 0.51 with 50, 0.16 with 1.
* A public batch as large as the client's is drawn per step, uniformly with replacement
  across steps, from the server's own stream ("train/server"), not an epoch-wise shuffle.

The task head is never trained: the FSHA-trained model's test accuracy is at chance level.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from splitleak._random import build, constructed
from splitleak.attacks._optim import load_server_module, server_copy
from splitleak.attacks.base import ATTACKS, Access, AttackConfig, ThreatModel, WorkSize
from splitleak.attacks.decoder import Decoder
from splitleak.errors import InputError
from splitleak.models.architectures import activation_shape
from splitleak.models.split import SplitModel
from splitleak.progress import ProgressFactory, silent
from splitleak.protocol import SERVERS, ServerReply, ServerSetup


@dataclass(frozen=True)
class FSHAServerConfig(AttackConfig):
    """The FSHA server's hyper-parameters (`splitleak train --server-param fsha.KEY=VALUE`)."""

    what: ClassVar[str] = "fsha server"

    lr_autoencoder: float = 1e-3  # f~ and g~ (authors: 1e-5 over >= 10k iterations)
    lr_critic: float = 1e-3  # D (authors: 1e-4)
    gradient_penalty: float = 10.0  # WGAN-GP weight (Gulrajani et al.; authors: 500)
    decoder_width: int = 32  # g~'s width (splitleak's decoder)
    critic_width: int = 64
    critic_blocks: int = 2
    adversarial_weight: float = 50.0  # scales the objective sent to the client (the authors' dCor run)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (math.isfinite(self.adversarial_weight) and self.adversarial_weight > 0):
            raise InputError(f"fsha adversarial_weight must be a finite number > 0, got {self.adversarial_weight!r}")


class _Residual(nn.Module):
    """x + conv(relu(conv(relu(x)))), no normalisation (the gradient penalty forbids BatchNorm)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class Critic(nn.Module):
    """A WGAN critic over activations of `z_shape`: one unbounded score per sample [B]."""

    def __init__(self, z_shape: tuple[int, ...], width: int = 64, blocks: int = 2) -> None:
        super().__init__()
        if len(z_shape) == 3:
            c, h, w = z_shape
            h, w = math.ceil(math.ceil(h / 2) / 2), math.ceil(math.ceil(w / 2) / 2)  # two stride-2 convs
            self.net = nn.Sequential(
                nn.Conv2d(c, width, 3, stride=2, padding=1),  # -> [B, width, H/2, W/2]
                *[_Residual(width) for _ in range(blocks)],
                nn.Conv2d(width, width, 3, stride=2, padding=1),  # -> [B, width, H/4, W/4]
                nn.Flatten(),
                nn.Linear(width * h * w, 1),
            )
        elif len(z_shape) == 1:
            hidden = 4 * width
            layers: list[nn.Module] = [nn.Linear(z_shape[0], hidden)]
            for _ in range(blocks):
                layers += [nn.ReLU(), nn.Linear(hidden, hidden)]
            self.net = nn.Sequential(*layers, nn.ReLU(), nn.Linear(hidden, 1))
        else:
            raise InputError(f"the fsha critic takes vector or [C, H, W] activations, got shape {z_shape}")

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).squeeze(1)


def gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor, generator: torch.Generator) -> Tensor:
    """Gulrajani et al.'s penalty: mean (||grad D(x_hat)|| - 1)^2 at random interpolates x_hat."""
    n = min(len(real), len(fake))
    real, fake = real[:n], fake[:n]
    eps = torch.rand(n, *([1] * (real.dim() - 1)), generator=generator).to(real.device)
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), [mixed], create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


@SERVERS.register
class FSHAServer:
    """The feature-space hijacking server (see the module docstring)."""

    name: ClassVar[str] = "fsha"
    threat: ClassVar[str] = "malicious: sends the gradient of a feature-space adversarial loss instead of the task's (FSHA)"
    training_speed: ClassVar[float] = 0.23  # relative to the honest server (sweep estimates; 2,299 s vs 523 s, small-cnn cut 2, NoPeek, batch 64, one thread)

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        return dataclasses.asdict(FSHAServerConfig.from_dict(params))

    @classmethod
    def setup(cls, model: SplitModel, setup: ServerSetup) -> FSHAServer:
        if setup.aux is None or len(setup.aux) < 2:
            raise InputError("server 'fsha' needs at least 2 auxiliary images (its public data: the data splits' aux part)")
        return cls(model, FSHAServerConfig.from_dict(setup.params), public=setup.aux.x, generator=setup.generator, device=setup.device)

    def __init__(self, model: SplitModel, config: FSHAServerConfig, *, public: Tensor, generator: torch.Generator, device: torch.device) -> None:
        self.config, self.public, self.generator, self.device = config, public, generator, torch.device(device)
        z_shape = activation_shape(model.encoder, model.spec.shape)
        self.pilot = server_copy(model, generator, self.name, "pilot encoder").to(self.device)
        self.decoder = build(lambda: Decoder(z_shape, model.spec, config.decoder_width), generator).to(self.device)
        self.critic = build(lambda: Critic(z_shape, config.critic_width, config.critic_blocks), generator).to(self.device)
        self.autoencoder_optimiser = torch.optim.Adam([*self.pilot.encoder.parameters(), *self.decoder.parameters()], lr=config.lr_autoencoder)
        self.critic_optimiser = torch.optim.Adam(self.critic.parameters(), lr=config.lr_critic)
        self._pending: tuple[Tensor, Tensor] | None = None

    def respond(self, z: Tensor, y: Tensor) -> ServerReply:
        """The client's objective mean D(z); the server's own losses, applied in `update`."""
        self.critic.requires_grad_(False)  # the client's objective does not train the critic
        adversarial = self.config.adversarial_weight * self.critic(z).mean()
        self.critic.requires_grad_(True)
        idx = torch.randint(len(self.public), (len(z),), generator=self.generator)
        x_pub = self.public[idx].to(self.device)
        z_pub = self.pilot.client(x_pub)
        reconstruction = F.mse_loss(self.decoder(z_pub), x_pub)
        real, fake = z_pub.detach(), z.detach()
        penalty = gradient_penalty(self.critic, real, fake, self.generator)
        critic_loss = self.critic(real).mean() - self.critic(fake).mean() + self.config.gradient_penalty * penalty
        self._pending = (reconstruction, critic_loss)
        terms = {"fsha_adversarial": adversarial.item(), "fsha_public_mse": reconstruction.item(), "fsha_critic": critic_loss.item(), "fsha_gp": penalty.item()}
        return ServerReply(loss=adversarial, logits=None, terms=terms)

    def update(self) -> None:
        if self._pending is None:
            return
        reconstruction, critic_loss = self._pending
        self._pending = None
        self.autoencoder_optimiser.zero_grad(set_to_none=True)
        reconstruction.backward()
        self.autoencoder_optimiser.step()
        self.critic_optimiser.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimiser.step()

    def zero_grad(self) -> None:
        self.autoencoder_optimiser.zero_grad(set_to_none=True)
        self.critic_optimiser.zero_grad(set_to_none=True)

    def modules(self) -> dict[str, nn.Module]:
        """What the checkpoint keeps (`server/<module>.<key>`): f~, g~ and D."""
        return {"pilot": self.pilot.encoder, "decoder": self.decoder, "critic": self.critic}

    def state_dict(self) -> dict[str, Any]:
        return {
            **{name: module.state_dict() for name, module in self.modules().items()},
            "autoencoder_optimiser": self.autoencoder_optimiser.state_dict(),
            "critic_optimiser": self.critic_optimiser.state_dict(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name, module in self.modules().items():
            module.load_state_dict(state[name])
        self.autoencoder_optimiser.load_state_dict(state["autoencoder_optimiser"])
        self.critic_optimiser.load_state_dict(state["critic_optimiser"])
        self.generator.set_state(state["generator"])

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "threat": self.threat, "params": dataclasses.asdict(self.config)}


@dataclass(frozen=True)
class FSHAConfig(AttackConfig):
    """The fsha attack has no options: its budget was spent during training, by the server."""

    what: ClassVar[str] = "fsha"


@ATTACKS.register
class FSHAAttack:
    """Decode observed activations with the inverse g~ the FSHA server trained."""

    name: ClassVar[str] = "fsha"
    label: ClassVar[str] = "FSHA"
    reference: ClassVar[str] = "Pasquini, Ateniese, Bernaschi 2021 (FSHA, CCS)"
    config_class: ClassVar[type[FSHAConfig]] = FSHAConfig
    threat_model: ClassVar[ThreatModel] = ThreatModel(
        summary="malicious server during training: hijacked the client's training (FSHA) and kept its decoder",
        trained_by="fsha",
    )

    @classmethod
    def estimate_seconds(cls, config: FSHAConfig, size: WorkSize) -> float:
        """Decoding only (the server trained during training): about a second per 10,000 images."""
        return size.scored / 10_000

    def __init__(self, config: FSHAConfig | None = None, *, progress: ProgressFactory = silent) -> None:
        self.config = config or FSHAConfig()
        self.progress = progress
        self.decoder: Decoder | None = None
        self.device = "cpu"

    def fit(self, access: Access) -> FSHAAttack:
        """Rebuild the server's g~ from what it kept; a second fit starts over (same result)."""
        self.threat_model.check(self.name, access)
        assert access.server is not None
        self.decoder, self.device = None, access.device
        width = access.server.params.get("decoder_width", FSHAServerConfig.decoder_width)
        shape = tuple(access.activation_shape)
        decoder = load_server_module(self.name, constructed(lambda: Decoder(shape, access.spec, int(width))), access.server, "decoder", shape)
        self.decoder = decoder.to(self.device).eval()
        return self

    @torch.no_grad()
    def reconstruct(self, z: Tensor) -> Tensor:
        if self.decoder is None:
            raise RuntimeError("call fit() before reconstruct()")
        return torch.cat([self.decoder(z[i : i + 1024].to(self.device)).cpu() for i in range(0, len(z), 1024)])

    def budget(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)


__all__ = ["Critic", "FSHAAttack", "FSHAConfig", "FSHAServer", "FSHAServerConfig", "gradient_penalty"]
