"""Attack configs: budgets scale only the compute fields; bad options are refused by name."""

import dataclasses

import pytest

from splitleak.attacks import ATTACKS, DecoderConfig, RMLEConfig, ShadowConfig, make_attack


def test_scaled_multiplies_only_budget_fields() -> None:
    cfg = ShadowConfig(shadow_epochs=3, decoder_epochs=10, batch_size=128, lr=1e-3)
    bigger = cfg.scaled(2.5)
    assert (bigger.shadow_epochs, bigger.decoder_epochs) == (8, 25)  # round(7.5) = 8
    assert (bigger.batch_size, bigger.lr) == (128, 1e-3)
    assert cfg.scaled(0.01).shadow_epochs == 1  # never below one epoch
    assert cfg.scaled(1.0) == cfg


@pytest.mark.parametrize("factor", [0, -1, float("nan"), float("inf"), True])
def test_scaled_refuses_bad_factors(factor) -> None:
    with pytest.raises(ValueError, match="budget scale"):
        RMLEConfig().scaled(factor)


def test_every_attack_declares_existing_budget_fields() -> None:
    for name, cls in ATTACKS.items():
        config_cls = cls.config_class
        cfg = config_cls()
        # a training-time attack (fsha) spent its budget during training, through its server
        assert config_cls.budget_fields or cls.threat_model.trained_by is not None, name
        for field in config_cls.budget_fields:
            assert isinstance(getattr(cfg, field), int), (name, field)


def test_make_attack_applies_params_then_scale() -> None:
    attack = make_attack("decoder", {"epochs": 4, "width": 8}, budget_scale=3)
    assert attack.config == DecoderConfig(epochs=12, width=8)
    with pytest.raises(ValueError, match=r"unknown rmle option\(s\) \['stepz'\]"):
        make_attack("rmle", {"stepz": 3})


@pytest.mark.parametrize(
    "attack, option",
    [(name, f.name) for name, cls in sorted(ATTACKS.items()) for f in dataclasses.fields(cls.config_class)],
)
def test_every_option_is_checked_by_name(attack: str, option: str) -> None:
    config_cls = ATTACKS[attack].config_class
    is_count = isinstance(getattr(config_cls(), option), int)
    for bad in ((0, 2.5, True) if is_count else (-0.1, float("nan"), float("inf"), "1")):
        with pytest.raises(ValueError, match=f"^{attack} {option} must be"):
            config_cls(**{option: bad})


def test_frozen_copies_a_torchscript_module_without_gradients(tmp_path) -> None:
    import torch
    from torch import nn

    from splitleak.attacks._optim import frozen

    module = torch.jit.script(nn.Sequential(nn.Flatten(), nn.Linear(8, 3)))
    copy = frozen(module)
    x = torch.rand(2, 2, 4, requires_grad=True)
    copy(x).sum().backward()
    assert x.grad is not None and all(not p.requires_grad and p.grad is None for p in copy.parameters())
    assert all(p.requires_grad for p in module.parameters())  # the original is untouched
    torch.testing.assert_close(copy(x), module(x))
