"""Bad input exits 2 with one line; a bug exits 1 with one short line (its traceback with -v);
the library's validations raise InputError; only the CLI modules import argparse."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

import splitleak
from splitleak.cli import main
from splitleak.errors import InputError, NumericalError

PACKAGE = Path(splitleak.__file__).parent
EVAL = ["--limit", "20", "--attack-param", "decoder.epochs=1", "--semantic-epochs", "0", "--lpips", "none", "--quiet"]


def _stderr_lines(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


class _BrokenListing(dict):
    """An attack registry whose listing fails as a bug would."""

    error: BaseException = ValueError("boom")

    def items(self):  # type: ignore[override]
        raise self.error


# --- a bug is exit 1, one short line; -v shows the traceback --------------------------------


def test_a_plain_value_error_deep_in_evaluate_is_an_internal_error(tmp_path: Path, tiny_checkpoint: Path, capsys, monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise ValueError("boom\nfrom deep inside")  # as numpy or torch would

    monkeypatch.setattr("splitleak.scoring.dcor_statistics", boom)
    out = tmp_path / "r"
    assert main(["evaluate", str(tiny_checkpoint), "--out", str(out), *EVAL]) == 1
    err = _stderr_lines(capsys)
    assert len(err) == 1, err
    assert err[0].startswith("splitleak: internal error: ValueError: boom from deep inside")
    assert "-v" in err[0] and "please report it" in err[0] and "Traceback" not in err[0]
    assert not out.exists()

    assert main(["evaluate", str(tiny_checkpoint), "--out", str(out), *EVAL, "-v"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in boom" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("splitleak: internal error: ValueError: boom") and "run again with -v" not in last


@pytest.mark.parametrize(
    "error",
    [ValueError("boom"), KeyError("missing"), TypeError("unsupported operand"), FloatingPointError("overflow"), RuntimeError("")],
    ids=lambda e: type(e).__name__,
)
def test_unexpected_exceptions_exit_1(capsys, monkeypatch, error: BaseException) -> None:
    import splitleak.attacks

    broken = _BrokenListing(splitleak.attacks.ATTACKS)
    broken.error = error
    monkeypatch.setattr(splitleak.attacks, "ATTACKS", broken)
    assert main(["attacks"]) == 1
    err = _stderr_lines(capsys)
    assert len(err) == 1 and err[0].startswith(f"splitleak: internal error: {type(error).__name__}"), err
    assert "-v" in err[0]

    assert main(["attacks", "--verbose"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in items" in err


def test_a_long_internal_message_is_cut_short(capsys, monkeypatch) -> None:
    import splitleak.attacks

    broken = _BrokenListing(splitleak.attacks.ATTACKS)
    broken.error = ValueError("x" * 5000)
    monkeypatch.setattr(splitleak.attacks, "ATTACKS", broken)
    assert main(["attacks"]) == 1
    err = _stderr_lines(capsys)
    assert len(err) == 1 and len(err[0]) < 500 and "..." in err[0]


@pytest.mark.parametrize(
    ("error", "code", "prefix"),
    [
        (InputError("bad value\nof an option"), 2, "splitleak: error: bad value of an option"),
        (NumericalError("training diverged at epoch 1: loss is nan"), 2, "splitleak: error: training diverged"),
        (PermissionError(13, "Permission denied", "/somewhere/x"), 2, "splitleak: error: [Errno 13] Permission denied"),
        (OSError(28, "No space left on device"), 2, "splitleak: error: [Errno 28] No space left on device"),
        (KeyboardInterrupt(), 130, "splitleak: interrupted"),
    ],
    ids=["input", "numerical", "permission", "disk-full", "interrupt"],
)
def test_input_environment_and_interrupts_keep_their_codes(capsys, monkeypatch, error: BaseException, code: int, prefix: str) -> None:
    import splitleak.attacks

    broken = _BrokenListing(splitleak.attacks.ATTACKS)
    broken.error = error
    monkeypatch.setattr(splitleak.attacks, "ATTACKS", broken)
    assert main(["attacks"]) == code
    err = _stderr_lines(capsys)
    assert len(err) == 1 and err[0].startswith(prefix), err


# --- typical bad input is still exit 2, one line ------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate", "{ckpt}", "--out", "r", "--attack-param", "decoder.epochs"], "--attack-param wants ATTACK.OPTION=VALUE"),
        (["evaluate", "{ckpt}", "--out", "r", "--attack-param", "decoder.epochs=0"], "decoder epochs must be a whole number >= 1"),
        (["evaluate", "{ckpt}", "--out", "r", "--attack-param", "rmle.stepz=3"], "unknown rmle option(s) ['stepz']"),
        (["evaluate", "{ckpt}", "--out", "r", "--budget-scale", "0"], "budget scale must be a finite number > 0"),
        (["evaluate", "{ckpt}", "--out", "r", "--metrics", "ssim,vibes"], "unknown reconstruction metric 'vibes'"),
        (["evaluate", "{ckpt}", "--out", "r", "--limit", "0"], "limit must be a whole number >= 1"),
        (["evaluate", "{ckpt}", "--out", "r", "--activation-memory-mb", "0"], "activation_memory must be a whole number >= 1"),
        (["evaluate", "{ckpt}", "--out", "r", "--gallery", "-1"], "gallery must be a whole number >= 0"),
        (["evaluate", "{ckpt}", "--out", "r", "--image-folder", "imgs"], "options ['image_folder'] are for models trained elsewhere"),
        (["train", "--dataset", "digits", "--defense", "dropout", "--dropout-rate", "1.5", "--out", "m.safetensors"], "dropout rate must be < 1"),
        (["train", "--dataset", "digits", "--defense", "noise", "--alpha", "2", "--out", "m.safetensors"], "defense 'noise' has no parameter(s) ['alpha']"),
        (["train", "--dataset", "digits", "--lr", "nan", "--out", "m.safetensors"], "lr must be a finite number"),
        (["train", "--dataset", "digits", "--seed", str(2**70), "--out", "m.safetensors"], "seed must be a whole number from -2**63"),
        (["train", "--dataset", "digits", "--split-seed", str(-(2**70)), "--out", "m.safetensors"], "split_seed must be from -2**63"),
        (["train", "--dataset", "digits", "--device", "gpu please", "--out", "m.safetensors"], "device must name a torch device"),
        (["evaluate", "{ckpt}", "--out", "r", "--device", "meta"], "device 'meta' holds no data"),
        (["evaluate", "{ckpt}", "--out", "r", "--seed", str(2**64)], "seed must be a whole number from -2**63"),
        (["gate"], "gate needs a RESULTS_DIR"),
        (["sweep", "grid.toml", "--workers", "many"], "--workers must be a whole number >= 1 or 'auto'"),
        (["sweep", "grid.toml", "--workers", "0"], "--workers must be a whole number >= 1 or 'auto'"),
        (["demo", "--out", "d", "--workers", "-2"], "--workers must be a whole number >= 1 or 'auto'"),
        (["demo", "--out", "d", "--attacks", "decoder,fsha"], "attack 'fsha' attacks only models trained by its 'fsha' server"),
    ],
)
def test_bad_input_is_exit_2_with_one_line(tmp_path: Path, tiny_checkpoint: Path, capsys, monkeypatch, argv: list[str], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([arg.format(ckpt=tiny_checkpoint) for arg in argv]) == 2
    err = _stderr_lines(capsys)
    assert len(err) == 1 and err[0].startswith("splitleak: error:"), err
    assert message in err[0], err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# --- the library's own validations raise InputError ---------------------------------------


def _checks() -> list[tuple[str, Callable[[], object]]]:
    from splitleak._config import from_mapping
    from splitleak._validate import finite_number, positive_int
    from splitleak.attacks import make_attack
    from splitleak.byo import InputConfig, parse_input_spec
    from splitleak.data import DataConfig
    from splitleak.defenses import make_defense
    from splitleak.evaluation import EvalConfig
    from splitleak.models.architectures import get_architecture
    from splitleak.sweep.grid import study_grid
    from splitleak.sweep.executors import make_executor
    from splitleak.training import TrainConfig
    from splitleak.weights import get_backbone

    return [
        ("from_dict unknown key", lambda: from_mapping(DataConfig, {"datasett": "x"}, "data")),
        ("from_dict not a table", lambda: DataConfig.from_dict([1, 2])),  # type: ignore[arg-type]
        ("finite_number", lambda: finite_number("lr", float("inf"))),
        ("positive_int", lambda: positive_int("epochs", 0)),
        ("unknown attack", lambda: make_attack("mindreader")),
        ("attack option", lambda: make_attack("rmle", {"steps": -1})),
        ("budget scale", lambda: make_attack("rmle", budget_scale=float("nan"))),
        ("unknown defense", lambda: make_defense("wall")),
        ("defense parameter", lambda: make_defense("nopeek", {"rate": 1})),
        ("noise distribution", lambda: make_defense("noise", {"distribution": "cauchy"})),
        ("dropout rate", lambda: make_defense("dropout", {"rate": 1.0})),
        ("unknown architecture", lambda: get_architecture("resnet-9000")),
        ("cut", lambda: TrainConfig(cut=9)),
        ("seed", lambda: TrainConfig(seed=1.5)),  # type: ignore[arg-type]
        ("seed range", lambda: EvalConfig(seed=2**64)),
        ("device", lambda: TrainConfig(device="gpu")),
        ("device type", lambda: EvalConfig(device=0)),  # type: ignore[arg-type]
        ("split seed range", lambda: DataConfig(dataset="digits", split_seed=-(2**63) - 1)),
        ("input spec split seed", lambda: InputConfig(split_seed=2**64)),
        ("no attack", lambda: EvalConfig(attacks=())),
        ("metric", lambda: EvalConfig(metrics=("vibes",))),
        ("lpips backbone", lambda: EvalConfig(lpips="resnet")),
        ("require lpips", lambda: EvalConfig(lpips=None, require_lpips=True)),
        ("input spec", lambda: InputConfig(value_range=(1.0, 0.0))),
        ("input spec toml", lambda: parse_input_spec("shape = [")),
        ("data", lambda: DataConfig(dataset="")),
        ("study lists a model twice", lambda: study_grid("s", DataConfig(), [("a", TrainConfig()), ("b", TrainConfig())], EvalConfig())),
        ("executor", lambda: make_executor("cluster")),
        ("workers", lambda: make_executor("local", workers=0)),
        ("lpips weights name", lambda: get_backbone("resnet")),
    ]


@pytest.mark.parametrize("index", range(len(_checks())), ids=[name for name, _ in _checks()])
def test_library_validations_raise_input_error(index: int) -> None:
    _, call = _checks()[index]
    with pytest.raises(InputError):
        call()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_bad_input(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--dataset", "digits", "--device", "cuda", "--out", "m.safetensors"]) == 2
    err = _stderr_lines(capsys)
    assert len(err) == 1 and "sees no CUDA device" in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_results_with_a_provenance_that_is_not_utf8_are_bad_input(tmp_path: Path, capsys) -> None:
    import pandas as pd

    from splitleak.results import Results, ResultsError

    row = dict(run="abc", checkpoint="m.safetensors", checkpoint_sha256="f" * 64, dataset="digits", arch="small-cnn", cut=1,
               defense="none", defense_params="{}", seed=0, n=1, attack="decoder", metric="ssim", value=0.5, sample=0)
    Results(pd.DataFrame([row])).save(tmp_path / "r")
    (tmp_path / "r" / "provenance.json").write_bytes(b'{"k": "\xff\xfe"}')  # not UTF-8
    with pytest.raises(ResultsError, match="not valid JSON"):
        Results.load(tmp_path / "r")
    assert main(["report", str(tmp_path / "r"), "--out", str(tmp_path / "report.pdf")]) == 2
    assert _stderr_lines(capsys)[-1].startswith("splitleak: error:")
    (tmp_path / "r" / "provenance.json").write_text('{"checkpoint": {"sha256": 7}}')  # JSON of the wrong shape
    assert main(["report", str(tmp_path / "r"), "--out", str(tmp_path / "report.pdf")]) == 2
    assert _stderr_lines(capsys)[-1] == f"splitleak: error: {tmp_path / 'r'}: provenance: checkpoint.sha256 must be text, got 7"
    assert not (tmp_path / "report.pdf").exists()


def test_numerical_errors_are_input_errors_and_floating_point_errors() -> None:
    assert issubclass(NumericalError, InputError) and issubclass(NumericalError, FloatingPointError)
    assert issubclass(InputError, ValueError)


def test_library_error_classes_are_input_errors() -> None:
    from splitleak.attacks import ThreatModelError
    from splitleak.data import DataError
    from splitleak.gate import GateError
    from splitleak.models.checkpoint import CheckpointError
    from splitleak.outputs import OutputError
    from splitleak.reports.runs import ReportError
    from splitleak.results import ResultsError
    from splitleak.resume import ProgressError
    from splitleak.sweep import GridError
    from splitleak.weights import UnsafePickleError, WeightsError, WeightsUnavailable

    for cls in (ThreatModelError, DataError, GateError, CheckpointError, OutputError, ReportError, ResultsError,
                ProgressError, GridError, WeightsError, WeightsUnavailable, UnsafePickleError):
        assert issubclass(cls, InputError), cls


def test_every_value_error_subclass_in_the_library_is_an_input_error() -> None:
    """A new `class XError(ValueError)` would be exit 1 on the command line: derive it from InputError."""
    for path in sorted(set(PACKAGE.rglob("*.py")) - {PACKAGE / "errors.py"}):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = {base.id for base in node.bases if isinstance(base, ast.Name)}
                assert not bases & {"ValueError", "FloatingPointError"}, f"{path.relative_to(PACKAGE)}: {node.name}"


# --- layout: argparse only in the CLI; evaluation uses public modules ----------------------


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_only_the_cli_modules_import_argparse() -> None:
    cli = {PACKAGE / "cli.py", *(PACKAGE / "_cli").rglob("*.py")}
    importers = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path not in cli and any(name == "argparse" or name.startswith("argparse.") for name in _imports(path))
    )
    assert importers == []
    assert any("argparse" in _imports(path) for path in cli)  # the check looks at the right files


def test_errors_module_imports_nothing() -> None:
    assert _imports(PACKAGE / "errors.py") <= {"__future__", "__future__.annotations"}


def test_evaluation_imports_no_private_attack_module() -> None:
    private = sorted(name for name in _imports(PACKAGE / "evaluation.py") if name.startswith("splitleak.attacks._"))
    assert private == []
