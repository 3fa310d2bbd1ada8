"""Train a split model under a defense through the client/server protocol, seeded, logged per epoch.

Randomness (splitleak._random): the seed becomes named generators -- "train/init" (weights),
"train/order" (batch order), "train/transform" (the defense's noise or dropout mask),
"train/defense" (a trainable defense's own draws), "train/server" (a registered server's own
draws: FSHA's modules and batches), "train/detector" (a hijacking detector's own draws: when
to send a fake batch, which images, their labels, the fake batch's transform) and
"train/test-accuracy" (the transform while scoring the test set). torch's global generator is
neither seeded nor drawn from.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from splitleak import __version__
from splitleak._config import FromDict
from splitleak._random import drawing_from, generator
from splitleak._validate import device_string, finite_number, positive_int, resolve_device, torch_seed
from splitleak.cuts import Cut
from splitleak.data import Splits
from splitleak.defenses import make_defense
from splitleak.defenses.base import start_session
from splitleak.detection import Detector, check_detector_params, make_detector
from splitleak.errors import InputError, NumericalError
from splitleak.metrics.task import accuracy
from splitleak.models.architectures import get_architecture
from splitleak.models.build import make_split_model
from splitleak.models.split import SplitModel
from splitleak.progress import ProgressFactory, silent
from splitleak.protocol import Server, ServerSetup, StepLog, check_server_params, client_parameters, make_server, server_modules
from splitleak.records import CheckpointMeta, DefenseRecord
from splitleak.resume import TrainProgress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig(FromDict):
    """How to train: architecture and cut, defense and its parameters, the server (honest, or a
    malicious one such as "fsha") and its parameters, the client's hijacking detector (None, or
    "splitguard") and its parameters, optimiser budget, seed."""

    what: ClassVar[str] = "training"

    arch: str = "small-cnn"
    cut: Cut | None = None  # a cut point of `arch`: a number or a name ("layer2"); None: its default
    defense: str = "none"
    defense_params: Mapping[str, Any] = field(default_factory=dict)
    epochs: int = 3
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0
    device: str = "cpu"
    server: str = "honest"
    server_params: Mapping[str, Any] = field(default_factory=dict)
    detector: str | None = None
    detector_params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        arch = get_architecture(self.arch)
        object.__setattr__(self, "cut", arch.default_cut if self.cut is None else arch.resolve_cut(self.cut))
        # validated, with defaults filled in: a config records exactly the defense it trains
        object.__setattr__(self, "defense_params", make_defense(self.defense, dict(self.defense_params)).params())
        object.__setattr__(self, "server_params", check_server_params(self.server, dict(self.server_params)))
        if self.detector is None and self.detector_params:
            raise InputError(f"detector parameters {sorted(self.detector_params)} were given without a detector")
        if self.detector is not None:
            object.__setattr__(self, "detector_params", check_detector_params(self.detector, dict(self.detector_params)))
        positive_int("epochs", self.epochs)
        positive_int("batch_size", self.batch_size)
        finite_number("lr", self.lr, minimum=0.0)
        torch_seed("seed", self.seed)
        object.__setattr__(self, "device", resolve_device(self.device))
        device_string("device", self.device)


    def to_dict(self) -> dict[str, Any]:
        """The config as JSON; the honest server (the default, no parameters) and an absent
        detector are left out, so such configs keep the checkpoint, resume and sweep keys they
        had before servers and detectors."""
        out = {
            **dataclasses.asdict(self), "defense_params": dict(self.defense_params),
            "server_params": dict(self.server_params), "detector_params": dict(self.detector_params),
        }
        if self.server == "honest" and not self.server_params:
            del out["server"], out["server_params"]
        if self.detector is None:
            del out["detector"], out["detector_params"]
        return out


@dataclass(frozen=True)
class TrainedModel:
    """A trained model and the metadata a checkpoint stores with it."""

    model: SplitModel
    meta: CheckpointMeta
    defense_state: dict[str, torch.Tensor] = field(default_factory=dict)  # a trainable defense's modules, by "<module>.<key>"
    server_state: dict[str, torch.Tensor] = field(default_factory=dict)  # the server's own modules (FSHA's decoder), by "<module>.<key>"


def _fake_exchange(detector: Detector, model: SplitModel, serving: Server, optimiser: torch.optim.Optimizer, fake: tuple[torch.Tensor, torch.Tensor], step: int) -> None:
    """Send the detector's fake batch, hand it the client's first-layer gradient from the reply,
    and drop that gradient: the client never applies it (the server, unaware, updates as usual)."""
    x, y = fake
    with drawing_from(model, detector.generator):
        z = model.client(x)
    reply = serving.respond(z, y)
    optimiser.zero_grad(set_to_none=True)
    serving.zero_grad()
    reply.loss.backward()
    first = _first_layer(model)
    detector.observe(step, _received(first, first.grad), fake=True)
    serving.update()
    optimiser.zero_grad(set_to_none=True)


def _first_layer(model: SplitModel) -> torch.nn.Parameter:
    """The client's first parameter (SplitGuard watches its gradient, as the authors' code does)."""
    return client_parameters(model)[0]


def _received(param: torch.nn.Parameter, gradient: torch.Tensor | None) -> torch.Tensor:
    """`param`'s gradient from the server's reply, zeros when the reply did not reach it."""
    return torch.zeros_like(param) if gradient is None else gradient


def build_split_model(
    config: TrainConfig, splits: Splits, *, init: torch.Generator | None = None, transform: torch.Generator | None = None
) -> SplitModel:
    """A freshly initialised split model for `config` on `splits`' inputs.

    Weights are drawn from `init` (default: the "train/init" stream of `config.seed`); the
    defense's transform, if it draws, draws from `transform` (default: its own, seeded 0).
    """
    return make_split_model(
        arch=config.arch, cut=config.cut, spec=splits.spec, num_classes=splits.num_classes,
        defense=config.defense, defense_params=config.defense_params,
        init=init if init is not None else generator(config.seed, "train", "init"), transform=transform,
    )


def evaluate_accuracy(model: SplitModel, x: torch.Tensor, y: torch.Tensor, device: str, batch_size: int = 1024) -> float:
    """Task accuracy of `model` (in eval mode, defense transform active) on (x, y)."""
    was_training = model.training
    model.eval()
    logits = torch.cat([model.predict(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return accuracy(logits, y)


def _detector_log(detector: Detector, fakes: int, since: int) -> dict[str, float]:
    """An epoch's log entries of the detector: fake batches sent, the latest score, the alarm
    step (logged as a warning in the epoch that raised it: the one after step `since`)."""
    record = detector.describe()
    scores = record["scores"]
    alarm = record["alarm_step"]
    if alarm is not None and alarm > since:
        log.warning("%s raised an alarm at step %d: the server may be hijacking training", record["name"], alarm)
    return {"detector_fakes": float(fakes), "detector_score": scores[-1][1] if scores else math.nan, "detector_alarm_step": math.nan if alarm is None else float(alarm)}


def train(
    config: TrainConfig,
    splits: Splits,
    *,
    progress: ProgressFactory = silent,
    state_file: str | os.PathLike[str] | None = None,
    resume: bool = False,
    server: Callable[[SplitModel], Server] | None = None,
) -> TrainedModel:
    """Train a split model on `splits.train` and report its accuracy on `splits.test`.

    Each step is the client/server exchange of `splitleak.protocol`: the client sends z, the
    server replies with its objective, the client adds its defense's penalty and updates its
    encoder from the gradient it receives. The server is `config.server` built by
    `splitleak.protocol.make_server` (default: honest, training the head on the task; "fsha"
    steers the encoder), or `server(model)` when given (a server that is not registered).
    With `state_file`, the model, both sides' optimisers, the defense's and server's state, the
    random generators and the log are saved there after every epoch; with `resume` too, a run
    continues from the file's last finished epoch and ends with the same weights as an
    uninterrupted run (splitleak.resume.TrainProgress).
    """
    device = torch.device(config.device)
    noise = generator(config.seed, "train", "transform")
    model = build_split_model(config, splits, transform=noise).to(device)
    defense = make_defense(config.defense, config.defense_params)
    defense_draws = generator(config.seed, "train", "defense")
    session = start_session(defense, model=model, generator=defense_draws, device=device)
    if server is not None:
        serving = server(model)
    else:
        setup = ServerSetup(params=config.server_params, aux=splits.aux, generator=generator(config.seed, "train", "server"), lr=config.lr, device=device)
        serving = make_server(config.server, model, setup)
    optimiser = torch.optim.Adam(client_parameters(model), lr=config.lr)
    detector = make_detector(config.detector, config.detector_params, generator(config.seed, "train", "detector")) if config.detector else None
    order = generator(config.seed, "train", "order")
    x_all, y_all = splits.train.x, splits.train.y
    n = len(x_all)
    if n == 0:
        raise InputError("the training split is empty")
    epochs_log: list[dict[str, float]] = []
    first_epoch = 1
    saver = None
    parts = {"model": model, "client_optimiser": optimiser, "server": serving, "defense": session}
    generators = {"order": order, "transform": noise, "defense": defense_draws}
    if detector is not None:
        parts["detector"] = detector  # its state holds its own stream
    if state_file is not None:
        material = {"train": {k: v for k, v in config.to_dict().items() if k != "epochs"}, "data": splits.config.to_dict(), "train_size": n, "server": serving.describe()}
        saver = TrainProgress(state_file, material)
        state = saver.load() if resume else None
        if state is not None:
            if state.epoch > config.epochs:
                raise InputError(f"{state_file} holds {state.epoch} finished epochs, more than the {config.epochs} asked for")
            for name, part in parts.items():
                part.load_state_dict(state.parts[name])
            for name, gen in generators.items():
                gen.set_state(state.generators[name])
            epochs_log = [dict(entry) for entry in state.log]
            first_epoch = state.epoch + 1
            log.info("resuming %s after epoch %d", state_file, state.epoch)
    model.train()
    step = (first_epoch - 1) * math.ceil(n / config.batch_size)  # regular steps so far
    for epoch in range(first_epoch, config.epochs + 1):
        perm = torch.randperm(n, generator=order)
        sums = StepLog()
        fakes, since = 0, step
        start = time.perf_counter()
        with progress(total=n, desc=f"train {config.defense} epoch {epoch}/{config.epochs}") as bar:
            for i in range(0, n, config.batch_size):
                idx = perm[i : i + config.batch_size]
                x, y = x_all[idx].to(device), y_all[idx].to(device)
                step += 1
                if detector is not None and detector.wants_fake(step):
                    fake = detector.fake_batch(x_all, y_all, config.batch_size, splits.num_classes)
                    _fake_exchange(detector, model, serving, optimiser, (fake[0].to(device), fake[1].to(device)), step)
                    fakes += 1
                z = model.client(x)
                reply = serving.respond(z, y)
                penalty = session.penalty(x, z) if len(idx) > 3 else None
                loss = reply.loss if penalty is None else reply.loss + penalty
                if not torch.isfinite(loss):
                    raise NumericalError(f"training diverged at epoch {epoch}: loss is {loss.item()}")
                optimiser.zero_grad(set_to_none=True)
                serving.zero_grad()
                watched = detector is not None and detector.watches(step)
                if watched and penalty is not None:  # the server's part alone, without the client's penalty
                    server_part = torch.autograd.grad(reply.loss, _first_layer(model), retain_graph=True, allow_unused=True)[0]
                loss.backward()
                if watched:
                    gradient = server_part if penalty is not None else _first_layer(model).grad
                    detector.observe(step, _received(_first_layer(model), gradient), fake=False)
                serving.update()
                optimiser.step()
                after = session.after_step(x, z.detach(), y)
                b = len(idx)
                correct = (reply.logits.argmax(1) == y).sum().item() if reply.logits is not None else math.nan
                means = {"loss": loss.item(), **reply.terms, "penalty": penalty.item() if penalty is not None else 0.0}
                sums.add(b, means, {"train_accuracy": correct, **{k: v * b for k, v in after.items()}})
                bar.update(b)
                bar.set_postfix(loss=f"{loss.item():.3f}")
        seconds = time.perf_counter() - start
        entry = {"epoch": epoch, **sums.means(), "seconds": seconds, "images_per_second": n / seconds}
        if detector is not None:
            entry.update(_detector_log(detector, fakes, since))
        epochs_log.append(entry)
        log.info("epoch %d: %s", epoch, entry)
        if saver is not None:
            saver.save(epoch, parts, generators, epochs_log)
    with drawing_from(model, generator(config.seed, "train", "test-accuracy")):
        test_accuracy = evaluate_accuracy(model, splits.test.x, splits.test.y, config.device)
    model.eval()
    meta = CheckpointMeta(
        arch=config.arch,
        cut=config.cut,
        num_classes=splits.num_classes,
        input_spec=splits.spec,
        defense=DefenseRecord(name=config.defense, params=defense.params()),
        server=serving.describe(),
        data=splits.config.to_dict(),
        train=config.to_dict(),
        log=tuple(epochs_log),
        test_accuracy=test_accuracy,
        test_size=len(splits.test),
        train_size=n,
        seed=config.seed,
        splitleak_version=__version__,
        torch_version=torch.__version__,
        detection=detector.describe() if detector is not None else None,
    )
    defense_state = {f"{name}.{k}": v.detach().cpu() for name, module in session.modules().items() for k, v in module.state_dict().items()}
    return TrainedModel(model=model.cpu(), meta=meta, defense_state=defense_state, server_state=server_modules(serving))
