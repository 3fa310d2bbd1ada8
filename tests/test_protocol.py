"""The training protocol: a pluggable server and defenses that own modules, an optimiser and state."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import Tensor, nn

from splitleak.defenses import DEFENSES
from splitleak.defenses.base import DefenseSession
from splitleak.models import load_checkpoint, save_checkpoint
from splitleak.protocol import SERVERS, HonestServer, ServerReply
from splitleak.training import TrainConfig, build_split_model, train


class _Inverter(DefenseSession):
    """A trainable defense's session: a linear 'attacker' trained every step with its own Adam."""

    def __init__(self, defense: Any, *, model: Any, generator: torch.Generator, device: torch.device) -> None:
        super().__init__(defense)
        width = model.client(torch.zeros(1, *model.spec.shape)).numel()
        self.decoder = nn.Linear(width, 4).to(device)
        with torch.no_grad():
            self.decoder.weight.copy_(torch.randn(self.decoder.weight.shape, generator=generator) * 0.01)
            self.decoder.bias.zero_()
        self.optimiser = torch.optim.Adam(self.decoder.parameters(), lr=1e-2)
        self.steps = 0

    def after_step(self, x: Tensor, z: Tensor, y: Tensor) -> Mapping[str, float]:
        loss = (self.decoder(z.flatten(1)) - x.flatten(1)[:, :4]).pow(2).mean()
        self.optimiser.zero_grad()
        loss.backward()
        self.optimiser.step()
        self.steps += 1
        return {"inverter_loss": loss.item()}

    def modules(self) -> Mapping[str, nn.Module]:
        return {"inverter": self.decoder}

    def state_dict(self) -> dict[str, Any]:
        return {"decoder": self.decoder.state_dict(), "optimiser": self.optimiser.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.decoder.load_state_dict(state["decoder"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.steps = state["steps"]


@dataclass(frozen=True)
class _Trainable:
    name: ClassVar[str] = "test-trainable"
    label: ClassVar[str] = "trainable"
    strength: ClassVar[str | None] = None
    symbol: ClassVar[str] = ""
    training_speed: ClassVar[float] = 1.0

    def penalty(self, x: Tensor, z: Tensor) -> Tensor | None:
        return None

    def transform(self, generator: torch.Generator | None = None) -> nn.Module | None:
        return None

    def params(self) -> dict[str, Any]:
        return asdict(self)

    def session(self, **kwargs: Any) -> DefenseSession:
        return _Inverter(self, **kwargs)


@pytest.fixture
def trainable() -> Any:
    DEFENSES.register(_Trainable)
    yield _Trainable
    DEFENSES.unregister(_Trainable.name)


def test_honest_server_is_the_default_and_is_registered(tiny_splits) -> None:
    assert SERVERS["honest"] is HonestServer
    config = TrainConfig(cut=1, epochs=1, batch_size=64)
    a = train(config, tiny_splits)
    b = train(config, tiny_splits, server=lambda model: HonestServer(model, lr=config.lr))
    assert a.meta.server == {"name": "honest", "threat": "honest", "params": {"lr": config.lr}}
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key


class _Steering:
    """A server that ignores the task and sends the gradient of its own objective (z -> 0)."""

    name: ClassVar[str] = "steering"
    threat: ClassVar[str] = "malicious: replaces the task signal"

    def __init__(self, model: Any) -> None:
        self.calls = 0

    def respond(self, z: Tensor, y: Tensor) -> ServerReply:
        self.calls += 1
        return ServerReply(loss=z.pow(2).mean(), terms={"steer": z.pow(2).mean().item()})

    def update(self) -> None: ...

    def zero_grad(self) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {"calls": self.calls}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.calls = state["calls"]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "threat": self.threat, "params": {}}


def test_a_malicious_server_steers_the_client_through_the_gradient_alone(tiny_splits) -> None:
    config = TrainConfig(cut=1, epochs=2, batch_size=64)
    before = build_split_model(config, tiny_splits)
    trained = train(config, tiny_splits, server=_Steering)
    after = trained.model
    assert all(torch.equal(p, q) for p, q in zip(before.head.parameters(), after.head.parameters()))  # the head is the server's: untouched
    assert not all(torch.equal(p, q) for p, q in zip(before.encoder.parameters(), after.encoder.parameters()))
    with torch.no_grad():
        x = tiny_splits.test.x[:64]
        assert after.client(x).pow(2).mean() < 0.9 * before.client(x).pow(2).mean()  # steered towards z = 0
    log = trained.meta.log[-1]
    assert "steer" in log and math.isnan(log["train_accuracy"]) and trained.meta.server["name"] == "steering"


def test_a_trainable_defense_owns_modules_saved_in_the_checkpoint(tiny_splits, trainable, tmp_path: Path) -> None:
    trained = train(TrainConfig(cut=1, epochs=1, batch_size=64, defense=trainable.name), tiny_splits)
    assert set(trained.defense_state) == {"inverter.weight", "inverter.bias"}
    assert "inverter_loss" in trained.meta.log[0]
    path = save_checkpoint(tmp_path / "m.safetensors", trained.model, trained.meta, trained.defense_state)
    loaded = load_checkpoint(path)
    assert set(loaded.defense_state) == set(trained.defense_state)
    assert all(torch.equal(loaded.defense_state[k], v) for k, v in trained.defense_state.items())


def test_resume_restores_the_defense_and_server_state(tiny_splits, trainable, tmp_path: Path) -> None:
    config = TrainConfig(cut=1, epochs=2, batch_size=64, defense=trainable.name)
    whole = train(config, tiny_splits)
    state = tmp_path / "m.partial"
    train(TrainConfig(cut=1, epochs=1, batch_size=64, defense=trainable.name), tiny_splits, state_file=state)
    resumed = train(config, tiny_splits, state_file=state, resume=True)
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    for key, value in whole.defense_state.items():
        assert torch.equal(value, resumed.defense_state[key]), key
    assert [e["epoch"] for e in resumed.meta.log] == [1, 2]
