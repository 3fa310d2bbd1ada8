"""SDAR: simulator + decoder with adversarial regularisation (Zhu, Tang, Wang, Xiao, NDSS 2025,
"Passive Inference Attacks on Split Learning via Adversarial Regularization"; authors' code
zhxchd/SDAR_SplitNN, TensorFlow).

The attacker is a passive server: it has the trained head f2, labelled auxiliary images and the
activations z it observed from the client. Each iteration (batch `batch_size` of aux images
x_s, y_s and of observed activations z, y) it

1. updates a simulator f~ of the client with  CE(f2(f~(x_s)), y_s) + lambda1 * BCE(D_f(f~(x_s), y_s), 1),
   f2 frozen, while a conditional feature discriminator D_f learns to tell (z, y) (real) from
   (f~(x_s), y_s) (fake);
2. updates a conditional decoder g with  ||g(f~(x_s), y_s) - x_s||^2 + lambda2 * BCE(D_g(g(z, y), y), 1),
   while a conditional decoder discriminator D_g tells (x_s, y_s) (real) from (g(z, y), y) (fake);

and finally decodes the observed activations with g. Losses, optimisers (Adam), learning rates
(simulator 1e-3, decoder 5e-4, discriminators lr x lambda: 2e-5 and 5e-9), lambda1 = 0.02,
lambda2 = 1e-5 and batch 128 are the authors' vanilla-split-learning defaults (util.load_config).

Deviations, and why:

* **Post-hoc, not during training.** The paper's main setting attacks while the model trains:
  f and f2 change every step and the discriminator sees each new batch of client activations.
  splitleak attacks a finished model, so the real examples are the activations the server
  observed (`Access.observed`; in `evaluate`, those of the attacked test images, which is what
  a passive server sees anyway) and f2 is the final head.
* **Pseudo-labels.** In vanilla split learning the server holds the labels of the client's
  batches; `Access` carries no labels for the observed activations, so the conditional models
  get the head's prediction argmax f2(z) instead (the head's accuracy on them: ~0.85 undefended,
  ~0.8 under NoPeek here). The reconstruction of z uses the same pseudo-label.
* **Budget.** The paper runs 20,000 iterations (CIFAR); the default here is 1,000 (a 2-core CPU),
  a `budget_field`. Post hoc, longer is not stronger: undefended, 3,000 iterations reconstruct
  far worse than 1,000 (the simulator drifts from the client; docs/attacks.md, `sdar`). The
  discriminators are narrower and shallower than the authors' (their feature discriminator has
  up to six 256-wide convolutions) for the same reason; the decoder is
  the `decoder` attack's network (its input widened by one label channel), close to the
  authors' upsample + conv + BN + ReLU decoder with a sigmoid.
* **Simulator.** A fresh clone of the client's architecture (as the paper's default) when the
  architecture is known (`Access.arch`/`cut` or `Access.clone`), else a generic conv encoder
  producing `Access.activation_shape` (the paper's "different simulator" ablation). It is trained
  without the defense's activation transform: noise the server sees is not simulated.

Randomness: every network's weights from the "init" stream, the aux batch order from "order",
the observed batch order from "observed", the discriminators' dropout masks from "dropout"
(all of `access.seed`, new on every `fit`); torch's global generator is not used.
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

from splitleak._random import Stochastic, build, constructed
from splitleak.attacks._optim import attack_generator, fresh_client, frozen, load_server_module, server_copy
from splitleak.attacks.base import ATTACKS, Access, AttackConfig, ThreatModel, ThreatModelError, WorkSize
from splitleak.attacks.decoder import Decoder
from splitleak.data import ArraySplit
from splitleak.dataspec import InputSpec
from splitleak.errors import InputError
from splitleak.models.architectures import activation_shape
from splitleak.models.split import SplitModel
from splitleak.progress import ProgressFactory, silent
from splitleak.protocol import SERVERS, HonestServer, ServerReply, ServerSetup

EMBEDDING = 50  # label embedding size of the authors' conditional models


@dataclass(frozen=True)
class SDARServerConfig(AttackConfig):
    """SDAR's recipe (defaults: the authors' vanilla split learning ones): what the server that
    runs it during training takes (`--server-param sdar.KEY=VALUE`), one iteration per training step."""

    what: ClassVar[str] = "sdar server"

    batch_size: int = 128
    simulator_lr: float = 1e-3
    decoder_lr: float = 5e-4
    lambda1: float = 0.02  # weight of the feature discriminator's loss in the simulator's
    lambda2: float = 1e-5  # weight of the decoder discriminator's loss in the decoder's
    feature_disc_lr: float = 2e-5  # the authors': simulator_lr * lambda1
    decoder_disc_lr: float = 5e-9  # the authors': decoder_lr * lambda2
    decoder_width: int = 32
    disc_width: int = 32


@dataclass(frozen=True)
class SDARConfig(SDARServerConfig):
    """Budget and hyper-parameters of SDAR on a finished model: the recipe and its iterations."""

    what: ClassVar[str] = "sdar"
    budget_fields: ClassVar[tuple[str, ...]] = ("iterations",)

    iterations: int = 1000


class _Dropout(Stochastic):
    """Dropout whose mask comes from its own generator (not torch's global one)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        keep = self.rand(x.shape, dtype=x.dtype, device=x.device) >= self.p
        return x * keep / (1 - self.p)


class _LabelMap(nn.Module):
    """Label -> one extra input channel of `size` (the authors' Embedding(50) -> Dense(H*W))."""

    def __init__(self, num_classes: int, size: tuple[int, int]) -> None:
        super().__init__()
        self.size = size
        self.net = nn.Sequential(nn.Embedding(num_classes, EMBEDDING), nn.Linear(EMBEDDING, size[0] * size[1]))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return torch.cat([x, self.net(y).view(len(y), 1, *self.size)], 1)


def _down(c_in: int, c_out: int, stride: int, norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)]
    return layers + ([nn.BatchNorm2d(c_out)] if norm else []) + [nn.LeakyReLU(0.2)]


class Discriminator(nn.Module):
    """Conditional critic of (input, label): one logit per sample; vector or [C, H, W] inputs.

    Maps: conv (LeakyReLU 0.2), two stride-2 convs with BatchNorm, flatten, dropout 0.4, linear
    (the authors' layout, narrower). Vectors: label embedding concatenated, two LeakyReLU layers.
    """

    def __init__(self, shape: tuple[int, ...], num_classes: int, width: int) -> None:
        super().__init__()
        if len(shape) == 3:
            c, h, w = shape
            self.label: nn.Module = _LabelMap(num_classes, (h, w))
            body = [*_down(c + 1, width, 1, False), *_down(width, 2 * width, 2, True), *_down(2 * width, 4 * width, 2, True)]
            features = 4 * width * math.ceil(math.ceil(h / 2) / 2) * math.ceil(math.ceil(w / 2) / 2)
        elif len(shape) == 1:
            self.label = nn.Embedding(num_classes, EMBEDDING)
            body = [nn.Linear(shape[0] + EMBEDDING, 8 * width), nn.LeakyReLU(0.2), nn.Linear(8 * width, 8 * width), nn.LeakyReLU(0.2)]
            features = 8 * width
        else:
            raise InputError(f"sdar takes vector or [C, H, W] activations, got shape {shape}")
        self.body = nn.Sequential(*body, nn.Flatten())
        self.out = nn.Sequential(_Dropout(0.4), nn.Linear(features, 1))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        joined = self.label(x, y) if isinstance(self.label, _LabelMap) else torch.cat([x, self.label(y)], 1)
        return self.out(self.body(joined)).squeeze(1)


class ConditionalDecoder(nn.Module):
    """The decoder attack's network on (z, label): the label is one more channel (or 50 features)."""

    def __init__(self, z_shape: tuple[int, ...], num_classes: int, spec: InputSpec, width: int) -> None:
        super().__init__()
        if len(z_shape) == 3:
            self.label: nn.Module = _LabelMap(num_classes, (z_shape[1], z_shape[2]))
            widened = (z_shape[0] + 1, *z_shape[1:])
        else:
            self.label = nn.Embedding(num_classes, EMBEDDING)
            widened = (z_shape[0] + EMBEDDING,)
        self.decoder = Decoder(widened, spec, width)

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        joined = self.label(z, y) if isinstance(self.label, _LabelMap) else torch.cat([z, self.label(y)], 1)
        return self.decoder(joined)


class GenericSimulator(nn.Module):
    """A conv encoder from images of `image_shape` to activations of `z_shape` (architecture unknown)."""

    def __init__(self, image_shape: tuple[int, int, int], z_shape: tuple[int, ...], width: int = 32) -> None:
        super().__init__()
        c, h, _ = image_shape
        target_h = z_shape[1] if len(z_shape) == 3 else max(1, h // 4)
        layers: list[nn.Module] = [nn.Conv2d(c, width, 3, padding=1), nn.ReLU()]
        for _ in range(max(0, round(math.log2(h / target_h)))):  # stride-2 stages, doubling up to 4x
            layers += [nn.Conv2d(width, min(2 * width, 128), 3, stride=2, padding=1), nn.ReLU()]
            width = min(2 * width, 128)
        self.trunk = nn.Sequential(*layers)
        self.z_shape = z_shape
        if len(z_shape) == 3:
            self.out: nn.Module = nn.Conv2d(width, z_shape[0], 3, padding=1)
        else:
            self.out = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(16 * width, z_shape[0]))

    def forward(self, x: Tensor) -> Tensor:
        z = self.out(self.trunk(x))
        if z.dim() == 4 and tuple(z.shape[1:]) != self.z_shape:
            z = F.interpolate(z, size=self.z_shape[1:], mode="bilinear", align_corners=False)
        return z


def _simulator(access: Access, name: str, summary: str, init: torch.Generator) -> tuple[nn.Module, Any]:
    """(trainable module, function x -> z~): a fresh clone when the architecture is known, else generic."""
    if access.clone is not None or (access.arch is not None and access.cut is not None):
        clone = fresh_client(access, name, summary, init)
        return clone.encoder, clone.client
    generic = build(lambda: GenericSimulator(access.spec.shape, tuple(access.activation_shape)), init).to(access.device)
    low, high = access.spec.value_range
    return generic, lambda x: generic((x - low) / (high - low))


def _bce(logits: Tensor, real: bool) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, float(real)))


def _cycle(n: int, size: int, order: torch.Generator) -> Any:
    """Endless batches of indices into range(n): a new permutation per pass (last partial batch dropped)."""
    while True:
        perm = torch.randperm(n, generator=order)
        for i in range(0, n - size + 1, size):
            yield perm[i : i + size]


def _play(*moves: tuple[torch.optim.Optimizer, list[nn.Parameter], Tensor]) -> None:
    """Simultaneous updates: each player's gradient of its own loss (shared graph), then every step."""
    grads = [torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True) for _, params, loss in moves]
    for (optimiser, params, _), player_grads in zip(moves, grads):
        for p, g in zip(params, player_grads):
            p.grad = g
        optimiser.step()


class Game:
    """SDAR's four players -- simulator f~ (through the head f2), feature discriminator D_f,
    conditional decoder g, decoder discriminator D_g -- with their Adam optimisers; `play` is one
    iteration of the paper's Algorithm 1 on a batch of auxiliary images and one of observed
    activations. The post-hoc attack plays it `iterations` times on a finished model, the
    training-time server once per training step on the batch it just received."""

    def __init__(
        self, sim_module: nn.Module, simulate: Any, head: nn.Module, shape: tuple[int, ...], spec: InputSpec, classes: int,
        cfg: SDARServerConfig, init: torch.Generator, dropout: torch.Generator, device: str | torch.device,
    ) -> None:
        self.simulate, self.head, self.cfg = simulate, head, cfg
        self.sim_module = sim_module
        self.feature_disc = build(lambda: Discriminator(shape, classes, cfg.disc_width), init).to(device)
        self.decoder = build(lambda: ConditionalDecoder(shape, classes, spec, cfg.decoder_width), init).to(device)
        self.image_disc = build(lambda: Discriminator(tuple(spec.shape), classes, cfg.disc_width), init).to(device)
        for layer in [*self.feature_disc.modules(), *self.image_disc.modules()]:
            if isinstance(layer, _Dropout):
                layer.generator = dropout
        players = [
            (sim_module, cfg.simulator_lr), (self.feature_disc, cfg.feature_disc_lr), (self.decoder, cfg.decoder_lr), (self.image_disc, cfg.decoder_disc_lr),
        ]
        self.params = [[p for p in m.parameters() if p.requires_grad] for m, _ in players]
        self.optimisers = [torch.optim.Adam(p, lr=lr) for p, (_, lr) in zip(self.params, players)]
        for m, _ in players:
            m.train()

    def modules(self) -> dict[str, nn.Module]:
        return {"simulator": self.sim_module, "feature_disc": self.feature_disc, "decoder": self.decoder, "image_disc": self.image_disc}

    def play(self, xs: Tensor, ys: Tensor, z: Tensor, y: Tensor) -> Tensor:
        """One iteration; returns (simulator CE, D_f loss, decoder MSE, D_f right on real, right on fake)."""
        cfg, params, optimisers = self.cfg, self.params, self.optimisers
        # 1. simulator vs feature discriminator
        zs = self.simulate(xs)
        ce = F.cross_entropy(self.head(zs), ys)
        fake, real = self.feature_disc(zs, ys), self.feature_disc(z, y)
        disc_loss = _bce(real, True) + _bce(fake, False)
        sim_loss = ce + cfg.lambda1 * _bce(fake, True) if cfg.lambda1 > 0 else ce
        _play((optimisers[0], params[0], sim_loss), *([(optimisers[1], params[1], disc_loss)] if cfg.lambda1 > 0 else []))
        # 2. decoder vs decoder discriminator, on the updated simulator
        with torch.no_grad():
            zs = self.simulate(xs)
        mse = F.mse_loss(self.decoder(zs, ys), xs)
        if cfg.lambda2 > 0:
            fake_x = self.image_disc(self.decoder(z, y), y)
            image_loss = _bce(self.image_disc(xs, ys), True) + _bce(fake_x, False)
            _play((optimisers[2], params[2], mse + cfg.lambda2 * _bce(fake_x, True)), (optimisers[3], params[3], image_loss))
        else:
            _play((optimisers[2], params[2], mse))
        return torch.stack([ce.detach(), disc_loss.detach(), mse.detach(), (real > 0).float().mean(), (fake < 0).float().mean()])


@torch.no_grad()
def head_labels(head: nn.Module, z: Tensor) -> Tensor:
    """The head's predicted labels for activations `z` (the pseudo-labels of observed ones)."""
    device = next(iter(head.parameters()), torch.empty(0)).device
    return torch.cat([head(z[i : i + 1024].to(device)).argmax(1).cpu() for i in range(0, len(z), 1024)])


@torch.no_grad()
def head_classes(head: nn.Module, shape: tuple[int, ...], device: str | torch.device) -> int:
    """How many classes `head` scores, from a zero activation of `shape` (in eval mode; its mode is kept)."""
    was = head.training
    try:
        return int(head.eval()(torch.zeros(1, *shape, device=device)).shape[1])
    finally:
        head.train(was)


@torch.no_grad()
def decode(decoder: ConditionalDecoder, head: nn.Module, z: Tensor, device: str | torch.device) -> Tensor:
    """x^ = g(z, y^) for each activation, y^ the head's label for it (observed activations carry none)."""
    labels = head_labels(head, z)
    return torch.cat([decoder(z[i : i + 1024].to(device), labels[i : i + 1024].to(device)).cpu() for i in range(0, len(z), 1024)])


SAMPLES_PER_SECOND = 300.0  # iteration-samples (one aux + one observed image) per second, one core, small-cnn cut 2


@ATTACKS.register
class SDARAttack:
    """Zhu et al.'s SDAR: adversarially regularised simulator and decoder, fitted on observed activations."""

    name: ClassVar[str] = "sdar"
    label: ClassVar[str] = "SDAR"
    reference: ClassVar[str] = "Zhu et al. 2025 (SDAR, NDSS)"
    config_class: ClassVar[type[SDARConfig]] = SDARConfig
    threat_model: ClassVar[ThreatModel] = ThreatModel(
        summary="passive server: has the head, labelled auxiliary data and the activations it observed",
        server_head=True,
        aux_data=True,
        min_aux=16,
        aux_labels=True,
    )

    @classmethod
    def estimate_seconds(cls, config: SDARConfig, size: WorkSize) -> float:
        """Rough seconds of one core for fit + reconstruct (sweep --dry-run)."""
        return config.iterations * config.batch_size / SAMPLES_PER_SECOND

    def __init__(self, config: SDARConfig | None = None, *, progress: ProgressFactory = silent) -> None:
        self.config = config or SDARConfig()
        self.progress = progress
        self.decoder: ConditionalDecoder | None = None
        self.head: nn.Module | None = None
        self.device = "cpu"
        self.history: list[float] = []
        self.diagnostics: dict[str, float | None] = {}

    def _observed(self, access: Access) -> Tensor:
        if access.observed is None:
            raise ThreatModelError(f"attack {self.name!r} ({self.threat_model.summary}) needs the observed activations (Access.observed)")
        z = access.observed
        if tuple(z.shape[1:]) != tuple(access.activation_shape) or len(z) < 2:
            raise InputError(f"sdar needs at least 2 observed activations of shape {tuple(access.activation_shape)}, got {tuple(z.shape)}")
        return z.detach()

    def fit(self, access: Access) -> "SDARAttack":
        """Train simulator, decoder and their discriminators; a second fit starts over (same result)."""
        self.threat_model.check(self.name, access)
        z_obs = self._observed(access)
        assert access.head is not None and access.aux is not None
        cfg, device = self.config, access.device
        self.decoder, self.head, self.history, self.diagnostics, self.device = None, None, [], {}, device
        head = frozen(access.head).to(device)
        x_aux, y_aux = access.aux.x, access.aux.y.long()
        y_obs = head_labels(head, z_obs)
        classes = max(int(head(z_obs[:1].to(device)).shape[1]), int(y_aux.max()) + 1)
        init = attack_generator(access.seed, self.name, "init")
        sim_module, simulate = _simulator(access, self.name, self.threat_model.summary, init)
        shape = tuple(access.activation_shape)
        game = Game(sim_module, simulate, head, shape, access.spec, classes, cfg, init, attack_generator(access.seed, self.name, "dropout"), device)
        aux_batches = _cycle(len(x_aux), min(cfg.batch_size, len(x_aux)), attack_generator(access.seed, self.name, "order"))
        obs_batches = _cycle(len(z_obs), min(cfg.batch_size, len(z_obs)), attack_generator(access.seed, self.name, "observed"))
        logs = torch.zeros(cfg.iterations, 5)
        with self.progress(total=cfg.iterations, desc="sdar attack: fit") as bar:
            for it in range(cfg.iterations):
                a, o = next(aux_batches), next(obs_batches)
                logs[it] = game.play(x_aux[a].to(device), y_aux[a].to(device), z_obs[o].to(device), y_obs[o].to(device))
                bar.update(1)
                if (it + 1) % 50 == 0:
                    bar.set_postfix(ce=f"{logs[it, 0]:.3f}", mse=f"{logs[it, 2]:.4f}", disc=f"{logs[it, 1]:.3f}")
        game.decoder.eval()
        sim_module.eval()
        self.decoder, self.head = game.decoder, head
        self.history, self.diagnostics = self._summaries(logs, simulate, head, x_aux, y_aux, device)
        return self

    @staticmethod
    @torch.no_grad()
    def _summaries(logs: Tensor, simulate: Any, head: nn.Module, x: Tensor, y: Tensor, device: str) -> tuple[list[float], dict[str, float | None]]:
        """History (decoder MSE averaged over tenths of the run) and final diagnostics."""
        tenth = max(1, len(logs) // 10)
        history = [float(chunk[:, 2].mean()) for chunk in logs.split(tenth)]
        last = logs[-tenth:].mean(0)
        logits = torch.cat([head(simulate(x[i : i + 1024].to(device))).cpu() for i in range(0, len(x), 1024)])
        return history, {
            "final_simulator_ce": float(last[0]),
            "final_feature_disc_loss": float(last[1]),
            "final_train_mse": float(last[2]),
            "feature_disc_real_accuracy": float(last[3]),
            "feature_disc_fake_accuracy": float(last[4]),
            "simulator_aux_accuracy": float((logits.argmax(1) == y).float().mean()),
        }

    def reconstruct(self, z: Tensor) -> Tensor:
        if self.decoder is None or self.head is None:
            raise RuntimeError("call fit() before reconstruct()")
        return decode(self.decoder, self.head, z, self.device)

    def budget(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self.config), **self.diagnostics}


@SERVERS.register
class SDARServer(HonestServer):
    """SDAR during training (the paper's main setting): a passive server that trains the head on
    the task exactly as the honest server does -- the client receives the same gradients and ends
    with the same weights -- and after each step plays one SDAR iteration with the batch it just
    received (activations and their true labels, which a vanilla split-learning server holds) as
    the real examples, a random batch of its labelled auxiliary data, and the head as it is now
    (in eval mode, so its BatchNorm statistics are the honest ones)."""

    name: ClassVar[str] = "sdar"
    threat: ClassVar[str] = "honest-but-curious: trains the head honestly and runs SDAR on every batch it receives (passive)"
    training_speed: ClassVar[float] = 0.06  # relative to the honest server (sweep estimates; 654 s vs 38.7 s, the demo's settings, one thread)

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        return dataclasses.asdict(SDARServerConfig.from_dict(params))

    @classmethod
    def setup(cls, model: SplitModel, setup: ServerSetup) -> SDARServer:
        if setup.aux is None or len(setup.aux) < 2:
            raise InputError("server 'sdar' needs at least 2 labelled auxiliary images (the data splits' aux part)")
        return cls(model, SDARServerConfig.from_dict(setup.params), aux=setup.aux, generator=setup.generator, device=setup.device, lr=setup.lr)

    def __init__(
        self, model: SplitModel, config: SDARServerConfig, *, aux: ArraySplit, generator: torch.Generator, device: torch.device, lr: float = 1e-3
    ) -> None:
        super().__init__(model, lr=lr)
        self.config, self.generator, self.device = config, generator, torch.device(device)
        self.x_aux, self.y_aux = aux.x, aux.y.long()
        shape = activation_shape(model.encoder, model.spec.shape)
        classes = head_classes(self.head, shape, self.device)
        if int(self.y_aux.min()) < 0 or int(self.y_aux.max()) >= classes:
            raise InputError(f"server 'sdar' needs auxiliary images labelled with the task's {classes} classes (its conditional models embed the labels)")
        simulator = server_copy(model, generator, self.name, "simulator").to(self.device)
        self.game = Game(simulator.encoder, simulator.client, self.head, shape, model.spec, classes, config, generator, generator, self.device)
        self._pending: tuple[Tensor, Tensor] | None = None
        self.logs: list[Tensor] = []  # one row per iteration (Game.play)

    def respond(self, z: Tensor, y: Tensor) -> ServerReply:
        """The honest reply; the batch is kept for this step's SDAR iteration (in `update`)."""
        reply = super().respond(z, y)
        self._pending = (z.detach(), y)
        return reply

    def update(self) -> None:
        super().update()
        if self._pending is None:
            return
        z, y = self._pending
        self._pending = None
        idx = torch.randint(len(self.x_aux), (min(self.config.batch_size, len(self.x_aux)),), generator=self.generator)
        was = self.head.training
        self.head.eval()
        try:
            self.logs.append(self.game.play(self.x_aux[idx].to(self.device), self.y_aux[idx].to(self.device), z, y.long()))
        finally:
            self.head.train(was)

    def modules(self) -> dict[str, nn.Module]:
        """What the checkpoint keeps (`server/<module>.<key>`): f~, D_f, g and D_g."""
        return self.game.modules()

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            **{name: module.state_dict() for name, module in self.modules().items()},
            "game_optimisers": [o.state_dict() for o in self.game.optimisers],
            "generator": self.generator.get_state(),
            "logs": torch.stack(self.logs) if self.logs else torch.zeros(0, 5),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        for name, module in self.modules().items():
            module.load_state_dict(state[name])
        for optimiser, saved in zip(self.game.optimisers, state["game_optimisers"]):
            optimiser.load_state_dict(saved)
        self.generator.set_state(state["generator"])
        self.logs = list(state["logs"])

    def describe(self) -> dict[str, Any]:
        """Name, threat and parameters; once it has played, the iterations and the last tenth's
        means (as the post-hoc attack's budget reports them)."""
        record: dict[str, Any] = {"name": self.name, "threat": self.threat, "params": dataclasses.asdict(self.config)}
        if self.logs:
            last = torch.stack(self.logs[-max(1, len(self.logs) // 10) :]).mean(0)
            names = ("final_simulator_ce", "final_feature_disc_loss", "final_train_mse", "feature_disc_real_accuracy", "feature_disc_fake_accuracy")
            record["diagnostics"] = {"iterations": len(self.logs), **{k: float(v) for k, v in zip(names, last)}}
        return record


@dataclass(frozen=True)
class SDAROnlineConfig(AttackConfig):
    """sdar-online has no options: its budget was spent during training, by the server."""

    what: ClassVar[str] = "sdar-online"


@ATTACKS.register
class SDAROnlineAttack:
    """Decode observed activations with the conditional decoder the SDAR server trained during training."""

    name: ClassVar[str] = "sdar-online"
    label: ClassVar[str] = "SDAR (in training)"
    reference: ClassVar[str] = "Zhu et al. 2025 (SDAR, NDSS), attacking while the model trains"
    config_class: ClassVar[type[SDAROnlineConfig]] = SDAROnlineConfig
    threat_model: ClassVar[ThreatModel] = ThreatModel(
        summary="passive server during training: trained the head honestly and ran SDAR on every batch it received (kept its decoder)",
        server_head=True,
        trained_by="sdar",
    )

    @classmethod
    def estimate_seconds(cls, config: SDAROnlineConfig, size: WorkSize) -> float:
        """Decoding only (the server trained during training): about a second per 10,000 images."""
        return size.scored / 10_000

    def __init__(self, config: SDAROnlineConfig | None = None, *, progress: ProgressFactory = silent) -> None:
        self.config = config or SDAROnlineConfig()
        self.progress = progress
        self.decoder: ConditionalDecoder | None = None
        self.head: nn.Module | None = None
        self.device = "cpu"

    def fit(self, access: Access) -> SDAROnlineAttack:
        """Rebuild the server's decoder from what it kept; a second fit starts over (same result)."""
        self.threat_model.check(self.name, access)
        assert access.server is not None and access.head is not None
        self.decoder, self.head, self.device = None, None, access.device
        head = frozen(access.head).to(self.device)
        shape = tuple(access.activation_shape)
        classes = head_classes(head, shape, self.device)
        width = access.server.params.get("decoder_width", SDARServerConfig.decoder_width)
        decoder = constructed(lambda: ConditionalDecoder(shape, classes, access.spec, int(width)))
        self.decoder = load_server_module(self.name, decoder, access.server, "decoder", shape).to(self.device).eval()
        self.head = head
        return self

    def reconstruct(self, z: Tensor) -> Tensor:
        """The decoder on each activation and the head's label for it (the observed ones carry no label)."""
        if self.decoder is None or self.head is None:
            raise RuntimeError("call fit() before reconstruct()")
        return decode(self.decoder, self.head, z, self.device)

    def budget(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)
