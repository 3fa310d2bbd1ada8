"""Training as a simulated client/server exchange that defenses and servers can join.

One step of split learning, as `splitleak.training.train` runs it:

    z = client(x)                                  # encoder + the defense's transform
    reply = server.respond(z, y)                   # the server's objective for z (honest: CE of its head)
    penalty = defense.penalty(x, z)                # the client's own term (NoPeek: alpha dCor(x, z))
    (reply.loss + penalty).backward()              # gradients reach the client only through z
    server.update(); client optimiser step
    defense.after_step(x, z, y)                    # a trainable defense updates its own modules

The server is pluggable: `HonestServer` trains the model's head on the task; a malicious server
(FSHA, Pasquini et al. 2021) returns its own objective instead, so the gradient the client
receives steers the encoder, and keeps whatever modules it trains to itself. A defense may own
modules and an optimiser through a `splitleak.defenses.base.DefenseSession` (its `session(...)`
method); their state is saved in the `--resume` file, like the server's.

Every participant's state is a `state_dict()` / `load_state_dict()` pair of plain tensors and
JSON-able values, so progress files stay safetensors + JSON.

A registered server (`SERVERS`) is built from a `TrainConfig`'s `server` and `server_params` by
`make_server`: its class checks the parameters (`check_params`, defaults filled in, recorded in
the checkpoint) and builds itself from a `ServerSetup` (the auxiliary data a malicious server
holds as its public data, its own random stream). A server's `modules()` (optional) are saved
in the checkpoint beside the weights (`server/` tensors, `Checkpoint.server_state`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from splitleak.defenses.base import DefenseSession, start_session
from splitleak.errors import InputError
from splitleak.registry import Registry

if TYPE_CHECKING:
    from splitleak.data import ArraySplit
    from splitleak.models.split import SplitModel


@dataclass(frozen=True)
class ServerReply:
    """What the server sends back for one batch: the objective whose gradient reaches the client
    through z, the task logits it computed (None if it computes none) and scalars for the log."""

    loss: Tensor
    logits: Tensor | None = None
    terms: Mapping[str, float] = field(default_factory=dict)


class Server(Protocol):
    """The server side of training (see the module docstring)."""

    name: ClassVar[str]
    threat: ClassVar[str]  # "honest", or what a malicious server does, for checkpoints and reports
    # optional: `training_speed: ClassVar[float]`, training throughput relative to the honest
    # server, for the sweep's cost estimate (1.0 when absent)

    def respond(self, z: Tensor, y: Tensor) -> ServerReply: ...

    def update(self) -> None:
        """Apply the gradients of the last step to the server's own modules."""
        ...

    def zero_grad(self) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...

    def describe(self) -> dict[str, Any]:
        """JSON-able name and parameters (recorded in the checkpoint)."""
        ...


SERVERS: Registry[Any] = Registry("server", group="splitleak.servers")
"""Server behaviours by name: `honest`, and what the attacks add (FSHA)."""


@dataclass(frozen=True)
class ServerSetup:
    """What training hands a registered server besides the model: its checked parameters, the
    auxiliary data (the attacker's pool, a malicious server's public data), its own random
    stream ("train/server"), the training learning rate and the device."""

    params: Mapping[str, Any]
    aux: ArraySplit | None
    generator: torch.Generator
    lr: float
    device: torch.device = torch.device("cpu")


def server_class(name: str) -> Any:
    """The registered server class `name` (the attacks' servers, e.g. FSHA, register on import)."""
    import splitleak.attacks  # noqa: F401  (registers the attacks' servers)

    return SERVERS.get_entry(name)


def check_server_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """`params` of server `name`, checked, with its defaults filled in (InputError if bad)."""
    return server_class(name).check_params(dict(params))


def make_server(name: str, model: SplitModel, setup: ServerSetup) -> Server:
    """Build the registered server `name` for `model` (see `ServerSetup`)."""
    return server_class(name).setup(model, setup)


def server_modules(server: Server) -> dict[str, torch.Tensor]:
    """A server's own modules' tensors by "<module>.<key>" (empty for one without `modules()`)."""
    modules = getattr(server, "modules", None)
    if modules is None:
        return {}
    return {f"{name}.{k}": v.detach().cpu() for name, module in modules().items() for k, v in module.state_dict().items()}


@SERVERS.register
class HonestServer:
    """Trains the model's head on the task with Adam, and sends back the gradient of its loss."""

    name: ClassVar[str] = "honest"
    threat: ClassVar[str] = "honest"
    training_speed: ClassVar[float] = 1.0  # training throughput relative to this server (sweep estimates)

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        if params:
            raise InputError(f"server 'honest' takes no parameters (its learning rate is the training lr), got {sorted(params)}")
        return {}

    @classmethod
    def setup(cls, model: SplitModel, setup: ServerSetup) -> HonestServer:
        return cls(model, lr=setup.lr)

    def __init__(self, model: SplitModel, *, lr: float = 1e-3) -> None:
        self.head = model.head
        self.lr = lr
        self.optimiser = torch.optim.Adam(self.head.parameters(), lr=lr)

    def respond(self, z: Tensor, y: Tensor) -> ServerReply:
        logits = self.head(z)
        loss = F.cross_entropy(logits, y)
        return ServerReply(loss=loss, logits=logits, terms={"ce": loss.item()})

    def update(self) -> None:
        self.optimiser.step()

    def zero_grad(self) -> None:
        self.optimiser.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any]:
        return {"optimiser": self.optimiser.state_dict()}  # the head's weights are the model's

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.optimiser.load_state_dict(state["optimiser"])

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "threat": self.threat, "params": {"lr": self.lr}}


def client_parameters(model: SplitModel) -> list[nn.Parameter]:
    """What the client trains: its encoder (and a transform's parameters, if it has any)."""
    return [*model.encoder.parameters(), *model.transform.parameters()]


@dataclass
class StepLog:
    """Per-epoch sums of one training run's step values, weighted by batch size."""

    totals: dict[str, float] = field(default_factory=dict)
    images: int = 0

    def add(self, batch: int, means: Mapping[str, float], counts: Mapping[str, float] | None = None) -> None:
        """Add a batch's `means` (weighted by its size) and `counts` (already totals)."""
        self.images += batch
        for key, value in means.items():
            self.totals[key] = self.totals.get(key, 0.0) + value * batch
        for key, value in (counts or {}).items():
            self.totals[key] = self.totals.get(key, 0.0) + value

    def means(self) -> dict[str, float]:
        return {k: v / self.images if self.images else math.nan for k, v in self.totals.items()}


__all__ = [
    "SERVERS",
    "DefenseSession",
    "HonestServer",
    "Server",
    "ServerReply",
    "ServerSetup",
    "StepLog",
    "check_server_params",
    "client_parameters",
    "make_server",
    "server_class",
    "server_modules",
    "start_session",
]
