"""Devices: 'auto' everywhere a device is named, and the CUDA path end to end (only where torch
sees a CUDA device; on a CPU-only machine those tests are skipped, never faked)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from splitleak import DataConfig, EvalConfig, TrainConfig, evaluate, save_checkpoint, train
from splitleak._validate import resolve_device
from splitleak.cli import main
from splitleak.data import load_splits
from splitleak.models.checkpoint import load_checkpoint

HERE = "cuda" if torch.cuda.is_available() and torch.cuda.device_count() > 0 else "cpu"
cuda_only = pytest.mark.skipif(HERE != "cuda", reason="torch sees no CUDA device here")


def test_auto_is_the_device_this_machine_has() -> None:
    assert resolve_device("auto") == HERE
    assert resolve_device("cpu") == "cpu" and resolve_device("cuda:1") == "cuda:1"
    assert TrainConfig(device="auto").device == HERE and TrainConfig(device="auto").to_dict()["device"] == HERE
    assert EvalConfig(device="auto").device == HERE


def test_auto_on_the_command_line_records_the_device_used(tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    main(["train", "--dataset", "digits", "--limit-train", "100", "--aux-pool", "100", "--limit-test", "20", "--epochs", "1", "--device", "auto", "--quiet", "--out", str(out)])
    assert load_checkpoint(out).meta.train["device"] == HERE


@cuda_only
@pytest.mark.parametrize(("dataset", "arch", "cut"), [("digits", "small-cnn", 1), ("photo-patches", "resnet18", "layer1")])
def test_train_and_every_passive_attack_on_cuda(tmp_path: Path, dataset: str, arch: str, cut: int | str) -> None:
    train_and_attack(tmp_path, dataset, arch, cut, "cuda")


def train_and_attack(tmp_path: Path, dataset: str, arch: str, cut: int | str, device: str) -> None:
    """Train and evaluate on `device`; the checkpoint loads on the CPU and gives the same task
    accuracy there (float tolerances: at most one test image flips)."""
    data = DataConfig(dataset=dataset, limit_train=512, aux_size=256, limit_test=64)
    splits = load_splits(data)
    trained = train(TrainConfig(arch=arch, cut=cut, epochs=1, batch_size=64, device=device), splits)
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, trained.model, trained.meta)
    checkpoint = load_checkpoint(path)
    assert checkpoint.meta.train["device"] == device
    attacks = ("decoder", "rmle", "shadow", "unsplit", "sdar", "fora")
    config = EvalConfig(attacks=attacks, limit=64, budget_scale=0.05, semantic_epochs=1, lpips=None, device=device)
    results = evaluate(checkpoint, config, splits)
    table = results.table
    assert set(attacks) <= set(table["attack"])
    assert pd.to_numeric(table["value"]).notna().all()
    on_cpu = evaluate(load_checkpoint(path), EvalConfig(attacks=("rmle",), limit=64, budget_scale=0.05, semantic_epochs=0, lpips=None, device="cpu"), splits)
    accuracy = {where: frame.loc[frame.metric == "accuracy", "value"].mean() for where, frame in ((device, table), ("cpu", on_cpu.table))}
    assert abs(accuracy[device] - accuracy["cpu"]) <= 1 / 64 + 1e-9
    assert results.provenance.only.evaluation["device"] == device
