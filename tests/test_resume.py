"""--resume: an interrupted evaluate or train continues and ends with the same numbers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from splitleak.attacks import DecoderAttack, RMLEAttack
from splitleak.cli import main
from splitleak.evaluation import EvalConfig, evaluate
from splitleak.models import load_checkpoint
from splitleak.resume import AttackProgress, ProgressError, TrainProgress
from splitleak.results import Results
from tests._byo import malicious_pickle

EVAL = ["--limit", "20", "--lpips", "none", "--semantic-epochs", "1", "--attacks", "decoder,rmle", "--attack-param", "decoder.epochs=1", "--attack-param", "rmle.steps=5", "--quiet"]
TRAIN = ["--dataset", "digits", "--limit-train", "256", "--aux-pool", "200", "--limit-test", "50", "--batch-size", "64", "--quiet"]


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_evaluate_resumes_after_an_interrupt_with_the_same_table(tmp_path: Path, tiny_checkpoint: Path, monkeypatch, capsys) -> None:
    whole, out = tmp_path / "whole", tmp_path / "res"
    assert main(["evaluate", str(tiny_checkpoint), "--out", str(whole), *EVAL]) == 0
    monkeypatch.setattr(RMLEAttack, "fit", _interrupt)  # killed during the second attack
    assert main(["evaluate", str(tiny_checkpoint), "--out", str(out), *EVAL]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not out.exists()
    saved = sorted((tmp_path / "res.partial").glob("*.safetensors"))
    assert [p.name.split("-")[0] for p in saved] == ["decoder"]
    monkeypatch.undo()
    monkeypatch.setattr(DecoderAttack, "fit", _interrupt)  # a finished attack must not run again
    assert main(["evaluate", str(tiny_checkpoint), "--out", str(out), "--resume", *EVAL]) == 0
    resumed, uninterrupted = Results.load(out), Results.load(whole)
    pd.testing.assert_frame_equal(resumed.table, uninterrupted.table)
    pd.testing.assert_frame_equal(resumed.summary(), uninterrupted.summary())
    assert resumed.provenance.only.resumed_attacks == ("decoder",)
    assert resumed.reconstructions.keys() == uninterrupted.reconstructions.keys()
    for key, tensor in uninterrupted.reconstructions.items():
        np.testing.assert_array_equal(resumed.reconstructions[key], tensor, err_msg=key)
    assert not (tmp_path / "res.partial").exists()


def test_without_resume_progress_is_not_reused(tmp_path: Path, tiny_checkpoint: Path, monkeypatch) -> None:
    out = tmp_path / "res"
    monkeypatch.setattr(RMLEAttack, "fit", _interrupt)
    assert main(["evaluate", str(tiny_checkpoint), "--out", str(out), *EVAL]) == 130
    monkeypatch.undo()
    assert main(["evaluate", str(tiny_checkpoint), "--out", str(out), *EVAL]) == 0
    assert Results.load(out).provenance.only.resumed_attacks == ()


@pytest.mark.slow
def test_evaluate_killed_in_a_subprocess_resumes(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """A real SIGKILL once the first attack's progress file is there (rmle then runs ~20 s on 2 cores)."""
    out = tmp_path / "res"
    options = ["--limit", "20", "--lpips", "none", "--semantic-epochs", "1", "--attacks", "decoder,rmle", "--attack-param", "decoder.epochs=1", "--attack-param", "rmle.steps=400", "--quiet"]
    argv = [sys.executable, "-m", "splitleak.cli", "evaluate", str(tiny_checkpoint), "--out", str(out), *options]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    partial = tmp_path / "res.partial"
    deadline = time.monotonic() + 300
    while not (partial.is_dir() and any(partial.glob("decoder-*.safetensors"))):
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    assert main(["evaluate", str(tiny_checkpoint), "--out", str(out), "--resume", *options]) == 0
    assert main(["evaluate", str(tiny_checkpoint), "--out", str(tmp_path / "whole"), *options]) == 0
    pd.testing.assert_frame_equal(Results.load(out).table, Results.load(tmp_path / "whole").table)
    assert Results.load(out).provenance.only.resumed_attacks == ("decoder",)


def test_attack_numbers_do_not_depend_on_attack_order(tiny_checkpoint: Path, tiny_splits) -> None:
    config = EvalConfig(attacks=("decoder", "rmle"), attack_params={"decoder": {"epochs": 1}, "rmle": {"steps": 5}}, limit=20, lpips=None, semantic_epochs=0)
    a = evaluate(load_checkpoint(tiny_checkpoint), config, tiny_splits).table
    b = evaluate(load_checkpoint(tiny_checkpoint), replace(config, attacks=("rmle", "decoder")), tiny_splits).table
    key = ["attack", "metric", "sample"]
    pd.testing.assert_frame_equal(a.sort_values(key, ignore_index=True), b.sort_values(key, ignore_index=True))


def test_adding_an_attack_reuses_the_finished_ones(tmp_path: Path, tiny_checkpoint: Path, tiny_splits, monkeypatch) -> None:
    config = EvalConfig(attacks=("decoder",), attack_params={"decoder": {"epochs": 1}, "rmle": {"steps": 5}}, limit=20, lpips=None, semantic_epochs=0)
    evaluate(load_checkpoint(tiny_checkpoint), config, tiny_splits, store=AttackProgress(tmp_path / "p"))
    monkeypatch.setattr(DecoderAttack, "fit", _interrupt)
    store = AttackProgress(tmp_path / "p", resume=True)
    both = evaluate(load_checkpoint(tiny_checkpoint), replace(config, attacks=("decoder", "rmle")), tiny_splits, store=store)
    assert store.reused == ["decoder"] and set(both.table.attack) == {"", "decoder", "rmle", "worst"}
    # other settings for the decoder: its saved file no longer matches, so it would run again
    other = AttackProgress(tmp_path / "p", resume=True)
    with pytest.raises(KeyboardInterrupt):
        evaluate(load_checkpoint(tiny_checkpoint), replace(config, attack_params={"decoder": {"epochs": 2}}), tiny_splits, store=other)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


@pytest.mark.parametrize("defense", [["--defense", "none"], ["--defense", "noise", "--noise-scale", "0.2"]])
def _die_after(monkeypatch, last_epoch: int) -> None:
    """Interrupt training right after the state of `last_epoch` is saved."""
    real_save = TrainProgress.save

    def save_then_die(self, epoch, *args, **kwargs):
        real_save(self, epoch, *args, **kwargs)
        if epoch == last_epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(TrainProgress, "save", save_then_die)


@pytest.mark.parametrize("defense", [["--defense", "none"], ["--defense", "noise", "--noise-scale", "0.2"]])
def test_train_resumes_with_identical_weights(tmp_path: Path, monkeypatch, defense: list[str]) -> None:
    """The noise defense draws from the run's "train/transform" generator: its state must come back too."""
    whole, out = tmp_path / "whole.safetensors", tmp_path / "m.safetensors"
    assert main(["train", *TRAIN, *defense, "--epochs", "3", "--out", str(whole)]) == 0
    assert not (tmp_path / "whole.safetensors.partial").exists()
    _die_after(monkeypatch, 2)
    assert main(["train", *TRAIN, *defense, "--epochs", "3", "--out", str(out)]) == 130
    assert not out.exists() and (tmp_path / "m.safetensors.partial").exists()
    monkeypatch.undo()
    assert main(["train", *TRAIN, *defense, "--epochs", "3", "--out", str(out), "--resume"]) == 0
    a, b = _weights(whole), _weights(out)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    meta = load_checkpoint(out).meta
    assert [e["epoch"] for e in meta.log] == [1, 2, 3]
    assert meta.test_accuracy == load_checkpoint(whole).meta.test_accuracy
    assert not (tmp_path / "m.safetensors.partial").exists()


def test_train_resume_refuses_other_settings_and_continues_a_shorter_run(tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "m.safetensors"
    assert TrainProgress(tmp_path / "none.safetensors", {"x": 1}).load() is None
    (tmp_path / "m.safetensors.partial").write_bytes(b"")  # a stale, broken file
    assert main(["train", *TRAIN, "--epochs", "1", "--out", str(out), "--resume"]) == 2
    assert "not a readable splitleak progress file" in capsys.readouterr().err
    (tmp_path / "m.safetensors.partial").unlink()
    _die_after(monkeypatch, 1)
    assert main(["train", *TRAIN, "--epochs", "1", "--out", str(out)]) == 130
    monkeypatch.undo()
    assert main(["train", *TRAIN, "--epochs", "1", "--lr", "0.01", "--out", str(out), "--resume"]) == 2
    assert "other settings" in capsys.readouterr().err
    assert main(["train", *TRAIN, "--epochs", "2", "--out", str(out), "--resume"]) == 0  # more epochs: continues
    assert [e["epoch"] for e in load_checkpoint(out).meta.log] == [1, 2]


def test_malicious_resume_files_are_refused_and_run_nothing(tmp_path: Path, tiny_checkpoint: Path, tiny_splits, monkeypatch, capsys) -> None:
    marker = tmp_path / "pwned"
    # train: OUT.partial replaced by a pickle, and by a torch.save archive
    for writer in ("pickle", "torch.save"):
        malicious_pickle(tmp_path / "m.safetensors.partial", marker, writer=writer)
        assert main(["train", *TRAIN, "--epochs", "1", "--out", str(tmp_path / "m.safetensors"), "--resume"]) == 2
        assert "refused" in capsys.readouterr().err
        assert not marker.exists()
    # evaluate: a finished attack's progress file replaced by a pickle
    config = EvalConfig(attacks=("decoder",), attack_params={"decoder": {"epochs": 1}}, limit=20, lpips=None, semantic_epochs=0)
    store = AttackProgress(tmp_path / "p")
    evaluate(load_checkpoint(tiny_checkpoint), config, tiny_splits, store=store)
    (saved,) = (tmp_path / "p").glob("*.safetensors")
    malicious_pickle(saved, marker, writer="pickle")
    with pytest.raises(ProgressError, match="refused"):
        evaluate(load_checkpoint(tiny_checkpoint), config, tiny_splits, store=AttackProgress(tmp_path / "p", resume=True))
    assert not marker.exists()
    # through the CLI: interrupted while saving the results, then the finished attack's file is swapped
    out = tmp_path / "res"
    argv = ["evaluate", str(tiny_checkpoint), "--out", str(out), "--limit", "20", "--lpips", "none", "--semantic-epochs", "0", "--attack-param", "decoder.epochs=1", "--quiet"]
    monkeypatch.setattr(Results, "save", _interrupt)
    assert main(argv) == 130
    assert "interrupted" in capsys.readouterr().err
    monkeypatch.undo()
    (saved,) = (tmp_path / "res.partial").glob("*.safetensors")
    malicious_pickle(saved, marker, writer="torch.save")
    assert main([*argv, "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refused" in err[0] and "nothing in it was loaded" in err[0]
    assert not marker.exists() and not out.exists()


def test_progress_files_hold_what_was_saved(tmp_path: Path, tiny_checkpoint: Path, tiny_splits) -> None:
    config = EvalConfig(attacks=("decoder",), attack_params={"decoder": {"epochs": 1}}, limit=20, lpips=None, semantic_epochs=0, gallery=3)
    store = AttackProgress(tmp_path / "p")
    results = evaluate(load_checkpoint(tiny_checkpoint), config, tiny_splits, store=store)
    loaded = AttackProgress(tmp_path / "p", resume=True)
    loaded.bind(checkpoint_sha256=load_checkpoint(tiny_checkpoint).sha256, evaluation=config.to_dict(), data={**tiny_splits.config.to_dict(), "origin": tiny_splits.origin}, lpips=results.provenance.only.lpips)
    finished = loaded.load("decoder")
    assert finished is not None
    np.testing.assert_array_equal(finished.reconstructions["attack/decoder"].numpy(), results.reconstructions["attack/decoder"])
    assert json.dumps(finished.log, sort_keys=True) == json.dumps(results.provenance.only.attacks["decoder"], sort_keys=True)
    rows = results.table.query("attack == 'decoder'").reset_index(drop=True)
    assert finished.rows["value"].tolist() == rows["value"].tolist()
