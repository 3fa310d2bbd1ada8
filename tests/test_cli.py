"""The CLI end to end on tiny digits data in a temp dir."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from splitleak.cli import main
from splitleak.results import Results

TINY = ["--dataset", "digits", "--limit-train", "300", "--aux-pool", "200", "--limit-test", "100", "--quiet"]


def test_train_then_evaluate(tmp_path: Path, capsys) -> None:
    ckpt = tmp_path / "m.safetensors"
    assert main(["train", *TINY, "--cut", "1", "--defense", "nopeek", "--alpha", "2", "--epochs", "1", "--out", str(ckpt)]) == 0
    assert "test accuracy" in capsys.readouterr().out
    out = tmp_path / "res"
    code = main(["evaluate", str(ckpt), "--out", str(out), "--limit", "40", "--attack-param", "decoder.epochs=1", "--dcor-samples", "30", "--quiet", "--aux-size", "64"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "ssim" in printed and "(model)" in printed
    results = Results.load(out)
    assert set(results.table.defense) == {"nopeek"}
    assert results.provenance.only.data["aux_size"] == 64
    assert results.table.query("metric == 'ssim' and attack != 'worst'").shape[0] == 40


@pytest.mark.parametrize(
    "argv",
    [
        ["train", *TINY, "--epochs", "0", "--out", "x.safetensors"],
        ["train", *TINY, "--defense", "nopeek", "--alpha", "-3", "--out", "x.safetensors"],
        ["train", *TINY, "--cut", "9", "--out", "x.safetensors"],
        ["train", *TINY, "--defense", "nopeek", "--defense-param", "noise.scale=2", "--out", "x.safetensors"],
        ["train", *TINY, "--defense", "nopeek", "--defense-param", "nopeek.beta=2", "--out", "x.safetensors"],
        ["train", *TINY, "--defense", "nopeek", "--defense-param", "alpha=2", "--out", "x.safetensors"],
        ["evaluate", "missing.safetensors", "--out", "r"],
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, capsys, monkeypatch, argv) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("splitleak: error:")
    assert not (tmp_path / "x.safetensors").exists() and not (tmp_path / "r").exists()


def test_unknown_attack_and_pickle_checkpoint(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    assert main(["evaluate", str(tiny_checkpoint), "--attacks", "decoder,mindreader", "--out", str(tmp_path / "r")]) == 2
    assert "unknown attack 'mindreader'" in capsys.readouterr().err
    evil = tmp_path / "evil.pt"
    evil.write_bytes(b"\x80\x04K\x01.")
    assert main(["evaluate", str(evil), "--out", str(tmp_path / "r")]) == 2
    assert "never unpickles" in capsys.readouterr().err


def test_console_script_help_for_every_command() -> None:
    for args in ([], ["train"], ["evaluate"]):
        out = subprocess.run([sys.executable, "-m", "splitleak.cli", *args, "--help"], capture_output=True, text=True, check=True)
        assert "usage: splitleak" in out.stdout
    for args in (["train"], ["train", "--out", "m.safetensors", "--epochs", "x"], ["evaluate"], ["fly"]):
        out = subprocess.run([sys.executable, "-m", "splitleak.cli", *args], capture_output=True, text=True)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert out.stderr.startswith("splitleak") and "error:" in out.stderr


def test_attacks_lists_threat_models(capsys) -> None:
    assert main(["attacks"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:3] == ["attack", "trained", "encoder"]
    decoder = next(line for line in lines if line.startswith("decoder"))
    assert "black-box" in decoder and ">= 16" in decoder and decoder.split()[1] == "any"
    fsha = next(line for line in lines if line.startswith("fsha"))
    assert fsha.split()[1:3] == ["by", "fsha"]  # a training-time attack names its server
    fields = [[m.start() for m in re.finditer(r"(?<!\S)\S", line)] for line in lines]  # where each word starts
    header = fields[0]
    for line, starts in zip(lines[1:], fields[1:]):  # the second and third columns line up under their headers
        assert starts[1] == header[1] and header[2] in starts, (lines[0], line)


def test_attack_params_parse_json_scalars() -> None:
    from splitleak.cli import _attack_params

    parsed = _attack_params(["rmle.steps=500", "rmle.lr=3e-2", "decoder.epochs = 2"])
    assert parsed == {"rmle": {"steps": 500, "lr": 0.03}, "decoder": {"epochs": 2}}


def test_adaptive_and_observations_exclude_each_other(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", str(tiny_checkpoint), "--out", str(tmp_path / "r"), "--observations", "2", "--adaptive"])
    assert exit_.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--attack-param", "rmle.steps"], "ATTACK.OPTION=VALUE"),
        (["--attack-param", "steps=3"], "ATTACK.OPTION=VALUE"),
        (["--attacks", "rmle", "--attack-param", "rmle.stepz=3"], "unknown rmle option(s) ['stepz']"),
        (["--attack-param", "rmle.steps=0"], "rmle steps must be a whole number >= 1"),
        (["--budget-scale", "0"], "budget scale must be a finite number > 0"),
        (["--observations", "0"], "observations must be a whole number from 1"),
        (["--attacks", "all,decoder"], "--attacks 'all' stands alone"),
    ],
)
def test_bad_attack_options_exit_2_before_any_work(tmp_path: Path, tiny_checkpoint: Path, capsys, extra, message) -> None:
    assert main(["evaluate", str(tiny_checkpoint), "--out", str(tmp_path / "r"), "--quiet", *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_evaluate_default_limit_uses_the_checkpoints_smaller_test_set(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    """Digits has 360 test images: the default --limit 1000 adapts (and says so), an explicit 1000 is refused."""
    common = ["evaluate", str(tiny_checkpoint), "--attack-param", "decoder.epochs=1", "--lpips", "none", "--semantic-epochs", "0", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "res")]) == 0
    assert "note: attacked all 360 test images" in capsys.readouterr().err
    assert Results.load(tmp_path / "res").provenance.only.data["limit_test"] == 360
    assert main([*common, "--out", str(tmp_path / "res2"), "--limit", "1000"]) == 2
    assert "limit_test=1000 is larger than the 360 images available" in capsys.readouterr().err


def test_evaluate_attacks_all_runs_every_attack_the_checkpoint_allows(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    from splitleak.attacks import passive_attacks

    code = main(["evaluate", str(tiny_checkpoint), "--attacks", "all", "--budget-scale", "0.01", "--limit", "30", "--dcor-samples", "30",
                 "--lpips", "none", "--semantic-epochs", "0", "--metrics", "ssim", "--quiet", "--out", str(tmp_path / "all")])
    assert code == 0
    err = capsys.readouterr().err
    assert f"note: --attacks all ran {', '.join(passive_attacks())}; not fsha (needs a checkpoint trained by the 'fsha' server" in err
    results = Results.load(tmp_path / "all")
    assert set(results.table["attack"]) == {"", "worst", *passive_attacks()}
    assert results.provenance.only.attacks["fora"]["budget"]["substitute_steps"] == 15  # the budget scale reached every attack


@pytest.mark.parametrize("command", [["train", *TINY, "--out", "m.safetensors"], ["evaluate", "missing.safetensors", "--out", "r"], ["demo", "--out", "d"]])
def test_threads_sets_torchs_pool_and_its_absence_leaves_it(command, tmp_path: Path, monkeypatch) -> None:
    import torch

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("splitleak.cli._cmd_train", lambda args: 0)
    monkeypatch.setattr("splitleak.cli._cmd_evaluate", lambda args: 0)
    monkeypatch.setattr("splitleak.cli._cmd_demo", lambda args: 0)
    torch.set_num_threads(2)
    assert main(command) == 0 and torch.get_num_threads() == 2  # $OMP_NUM_THREADS / torch's own choice is kept
    assert main([*command, "--threads", "1"]) == 0 and torch.get_num_threads() == 1


def test_threads_must_be_a_positive_number(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "m.safetensors", "--out", "r", "--threads", "0"])
    assert exit_.value.code == 2
    assert "argument --threads: want a whole number >= 1, got '0'" in capsys.readouterr().err


def test_evaluate_logs_one_line_per_stage_without_a_terminal_and_ends_with_the_verdict(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    common = ["evaluate", str(tiny_checkpoint), "--attacks", "decoder,rmle", "--limit", "20", "--attack-param", "decoder.epochs=1",
              "--attack-param", "rmle.steps=2", "--lpips", "none", "--semantic-epochs", "0"]
    assert main([*common, "--out", str(tmp_path / "r")]) == 0  # pytest's stderr is not a terminal
    captured = capsys.readouterr()
    stages = [line.split("] ", 1)[1] for line in captured.err.splitlines() if line.startswith("[")]
    assert stages == ["decoder attack: fit", "decoder attack: scoring", "rmle attack: reconstruct", "rmle attack: scoring"]
    verdicts = [line for line in captured.out.splitlines() if line.startswith("verdict: ")]
    assert len(verdicts) == 1 and verdicts[0].startswith("verdict: no defense, cut 1: ")
    assert main([*common, "--out", str(tmp_path / "q"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_train_and_evaluate_share_one_name_for_the_test_limit() -> None:
    """--limit-test on both commands; --limit (evaluate's older name) is kept on both as an alias."""
    from splitleak.cli import _parser

    parser = _parser()
    for flag in ("--limit-test", "--limit"):
        assert parser.parse_args(["evaluate", "m.safetensors", "--out", "r", flag, "7"]).limit == 7
        assert parser.parse_args(["train", "--out", "m.safetensors", flag, "7"]).limit_test == 7
    assert parser.parse_args(["evaluate", "m.safetensors", "--out", "r"]).limit is None  # the default adapts to the data


def test_train_help_names_every_built_in_defense_server_and_detector() -> None:
    """The parser lists these names by hand (building it imports no registry); a new defense,
    server or detector in splitleak's own package must appear in `train --help`."""
    from splitleak.cli import _parser
    from splitleak.defenses import DEFENSES
    from splitleak.detection import DETECTORS
    from splitleak.protocol import SERVERS, server_class

    server_class("honest")  # the attacks' servers register on import
    train = next(a.choices["train"] for a in _parser()._actions if getattr(a, "choices", None) and "train" in a.choices)
    helps = {a.dest: a.help for a in train._actions}
    for option, registry in (("defense", DEFENSES), ("server", SERVERS), ("detector", DETECTORS)):
        own = [name for name in registry if registry[name].__module__.startswith("splitleak.")]
        assert own and all(re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", helps[option]) for name in own), (option, own, helps[option])
