"""Every registered attack, defense and metric passes the shared conformance checks
(splitleak.testing); the registries are read when the tests are collected, so a new
registration is covered without editing this file."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from splitleak.attacks import ATTACKS, DecoderAttack, DecoderConfig
from splitleak.defenses import DEFENSES, ActivationNoise
from splitleak.metrics import METRICS
from splitleak.testing import attack_checks, defense_checks, metric_checks


@pytest.mark.parametrize("check", [c for name in ATTACKS for c in attack_checks(name)], ids=str)
def test_attack_conforms(check) -> None:
    check()


@pytest.mark.parametrize("check", [c for name in DEFENSES for c in defense_checks(name)], ids=str)
def test_defense_conforms(check) -> None:
    check()


@pytest.mark.parametrize("check", [c for name in METRICS for c in metric_checks(name)], ids=str)
def test_metric_conforms(check) -> None:
    check()


# --------------------------------------------------------------------------------------------
# the checks have teeth: each catches the violation it is named for
# --------------------------------------------------------------------------------------------

_TINY_DECODER = DecoderConfig(epochs=1, batch_size=16, width=8)


def _only(checks, name):
    (check,) = [c for c in checks if c.name == name]
    return check


class _Appending(DecoderAttack):
    """Keeps the history of earlier fits, as DecoderAttack once did."""

    def fit(self, access):
        earlier = list(self.history)
        super().fit(access)
        self.history = earlier + self.history
        return self


class _GlobalDraw(DecoderAttack):
    def fit(self, access):
        torch.rand(1)
        return super().fit(access)


class _QueriesFirst(DecoderAttack):
    def fit(self, access):
        if access.query is not None:
            access.query(access.aux.x[:2] if access.aux is not None else torch.zeros(2, 1, 8, 8))
        return super().fit(access)


class _GlobalNoise(nn.Module):
    def forward(self, z):
        return z + torch.randn(z.shape)


@dataclasses.dataclass(frozen=True)
class _SloppyNoise(ActivationNoise):
    def transform(self, generator=None):
        return _GlobalNoise()


@pytest.mark.parametrize(
    ("factory", "check"),
    [
        (lambda: _Appending(_TINY_DECODER), "refit_starts_over"),
        (lambda: _GlobalDraw(_TINY_DECODER), "leaves_global_rng_and_inputs_untouched"),
        (lambda: _QueriesFirst(_TINY_DECODER), "unmet_threat_model_fails_before_work"),
    ],
    ids=["appends-history", "draws-globally", "queries-before-checking"],
)
def test_attack_checks_catch_violations(factory, check) -> None:
    with pytest.raises(AssertionError):
        _only(attack_checks(factory), check)()
    _only(attack_checks(lambda: DecoderAttack(_TINY_DECODER)), check)()  # the honest attack passes


def test_defense_and_metric_checks_catch_violations() -> None:
    with pytest.raises(AssertionError, match="global"):
        _only(defense_checks(_SloppyNoise()), "transform_draws_only_from_its_generator")()
    backwards = dataclasses.replace(METRICS["mse"], leakage_direction="higher")
    with pytest.raises(AssertionError, match="direction 'higher'"):
        _only(metric_checks(backwards), "matching_inputs_leak_most")()
    per_sample_set = dataclasses.replace(METRICS["semantic_reference"], fn=METRICS["semantic_accuracy"].function)
    with pytest.raises(AssertionError, match="scalar"):
        _only(metric_checks(per_sample_set), "returns_its_level")()
