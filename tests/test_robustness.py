"""Bad input through the CLI: one line `splitleak: error: ...`, exit code 2, nothing half-written."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from splitleak.cli import main
from splitleak.results import Results
from tests._byo import folder, scripted, save_torchscript, trained_pair, write_factory_module, write_png_folder  # noqa: F401 (fixtures)

FAST = ["--limit", "20", "--lpips", "none", "--semantic-epochs", "0", "--attack-param", "decoder.epochs=1", "--quiet"]
TINY_TRAIN = ["--dataset", "digits", "--limit-train", "200", "--aux-pool", "200", "--limit-test", "50", "--epochs", "1", "--quiet"]



class NaNs(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * float("nan")


def _fails(argv: list[str], capsys, message: str, out: Path) -> None:
    """Exit 2, one error line containing `message`, and nothing at or beside `out`."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("splitleak: error:"), err
    assert message in err[0], err[0]
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith((out.name, f".{out.name}"))]
    assert leftovers == [], leftovers


def _evaluate(model: Path, folder: Path, out: Path, *extra: str) -> list[str]:
    return ["evaluate", str(model), "--image-folder", str(folder), "--allow-code", "--out", str(out), *FAST, *extra]


# --- corrupt or truncated files --------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty or truncated"),
        (b"\x00\x01garbage that is no model at all" * 8, "not a model file splitleak knows"),
        (b"PK\x03\x04" + b"\x00" * 60, "truncated or corrupt zip archive"),
        (b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": 1", "truncated safetensors"),
    ],
)
def test_junk_model_files(tmp_path: Path, folder: Path, capsys, content: bytes, message: str) -> None:
    model = tmp_path / "model.pt"
    model.write_bytes(content)
    _fails(_evaluate(model, folder, tmp_path / "res"), capsys, message, tmp_path / "res")


def test_truncated_torchscript_and_weights(tmp_path: Path, folder: Path, scripted, monkeypatch, capsys) -> None:
    data = scripted[0].read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) * 2 // 3])
    _fails(_evaluate(cut, folder, tmp_path / "res"), capsys, "truncated or corrupt zip archive", tmp_path / "res")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = write_factory_module(tmp_path)
    encoder, _ = trained_pair()
    save_file(encoder.state_dict(), str(tmp_path / "w.safetensors"))
    whole = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "w.safetensors").write_bytes(whole[: len(whole) - 100])
    argv = _evaluate(tmp_path / "w.safetensors", folder, tmp_path / "res", "--factory", f"{module}:encoder")
    _fails(argv, capsys, "not a readable safetensors file", tmp_path / "res")


def test_corrupt_image_in_the_folder(tmp_path: Path, scripted, capsys) -> None:
    images = write_png_folder(tmp_path / "imgs", n=40)
    bad = next(images.rglob("*.png"))
    bad.write_bytes(bad.read_bytes()[:30])
    _fails(_evaluate(scripted[0], images, tmp_path / "res"), capsys, f"cannot read image {bad}", tmp_path / "res")


def test_bad_toml_input_spec(tmp_path: Path, folder: Path, scripted, capsys) -> None:
    spec = tmp_path / "spec.toml"
    for text, message in (("shape = [1, 16", "not valid TOML"), ("shape = [1, 16, 16]\ncolour = 'red'", "unknown input spec option(s) ['colour']"), ("std = [0.5]\nmean = [0.5]\nvalue_range = [1, 0]", "low < high")):
        spec.write_text(text)
        _fails(["evaluate", str(scripted[0]), "--input-spec", str(spec), "--allow-code", "--out", str(tmp_path / "res"), *FAST], capsys, message, tmp_path / "res")


# --- shapes ----------------------------------------------------------------------------------


def test_wrong_shapes_between_model_and_data(tmp_path: Path, folder: Path, scripted, monkeypatch, capsys) -> None:
    out = tmp_path / "res"
    colour = save_torchscript(nn.Conv2d(3, 4, 3), tmp_path / "colour.pt")
    _fails(_evaluate(colour, folder, out), capsys, "does not take inputs of shape [2, 1, 16, 16]", out)
    _fails(_evaluate(scripted[0], folder, out, "--shape", "1,28,28"), capsys, "16x16 pixels but the input spec wants 28x28", out)
    wrong_head = save_torchscript(nn.Linear(7, 10), tmp_path / "wrong_head.pt")
    _fails(_evaluate(scripted[0], folder, out, "--head", str(wrong_head)), capsys, "does not take the encoder's activations of shape [4, 8, 8]", out)
    five = save_torchscript(nn.Sequential(nn.Flatten(), nn.Linear(256, 5)), tmp_path / "five.pt")
    _fails(_evaluate(scripted[0], folder, out, "--head", str(five)), capsys, "gives 5 classes but the data has 10", out)
    _fails(_evaluate(scripted[0], folder, out, "--mean", "0.5,0.5,0.5", "--std", "1,1,1"), capsys, "3 values but the images have 1 channel", out)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = write_factory_module(tmp_path)
    save_file({"0.weight": torch.zeros(2, 1, 3, 3)}, str(tmp_path / "w.safetensors"))
    _fails(_evaluate(tmp_path / "w.safetensors", folder, out, "--factory", f"{module}:encoder"), capsys, "do not fit the module", out)
    _fails(_evaluate(tmp_path / "w.safetensors", folder, out, "--factory", f"{module}:broken"), capsys, "raised RuntimeError: the factory is broken", out)
    _fails(_evaluate(tmp_path / "w.safetensors", folder, out, "--factory", f"{module}:not_a_module"), capsys, "not a torch.nn.Module", out)
    _fails(_evaluate(tmp_path / "w.safetensors", folder, out, "--factory", "no_such_module_here:make"), capsys, "cannot import no_such_module_here", out)


def test_nan_activations(tmp_path: Path, folder: Path, capsys) -> None:
    nans = save_torchscript(NaNs(), tmp_path / "nans.pt")
    _fails(_evaluate(nans, folder, tmp_path / "res"), capsys, "NaN or infinite activations", tmp_path / "res")


# --- data ------------------------------------------------------------------------------------


def test_empty_and_too_small_datasets(tmp_path: Path, folder: Path, scripted, capsys) -> None:
    out = tmp_path / "res"
    empty = tmp_path / "empty"
    (empty / "cats").mkdir(parents=True)
    (empty / "notes.txt").write_text("no images here")
    _fails(_evaluate(scripted[0], empty, out), capsys, "holds no images", out)
    _fails(_evaluate(scripted[0], tmp_path / "missing", out), capsys, "does not exist", out)
    _fails(_evaluate(scripted[0], folder, out, "--aux-pool", "40"), capsys, "aux_pool=40 leaves no test images", out)
    _fails(_evaluate(scripted[0], folder, out, "--limit", "1000"), capsys, "limit_test=1000 is larger than the 20 test images", out)
    _fails(_evaluate(scripted[0], folder, out, "--limit", "4"), capsys, "at least 5 test images", out)
    _fails(_evaluate(scripted[0], folder, out, "--aux-size", "30"), capsys, "aux_size (30) cannot exceed aux_pool (20)", out)
    _fails(["evaluate", str(scripted[0]), "--allow-code", "--out", str(out), *FAST], capsys, "needs data to be attacked on", out)


def test_unknown_attack_and_metric_names(tmp_path: Path, folder: Path, scripted, capsys) -> None:
    out = tmp_path / "res"
    _fails(_evaluate(scripted[0], folder, out, "--attacks", "decoder,psychic"), capsys, "unknown attack 'psychic'", out)
    _fails(_evaluate(scripted[0], folder, out, "--metrics", "ssim,vibes"), capsys, "unknown reconstruction metric 'vibes'", out)


# --- the output ------------------------------------------------------------------------------


def test_read_only_output_folder(tmp_path: Path, folder: Path, scripted, monkeypatch, capsys) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    out = parent / "res"
    if os.geteuid() == 0:  # root writes anywhere: make the folder refuse new files the way a read-only mount does
        real = tempfile.mkstemp

        def refuse(*args, dir=None, **kwargs):  # noqa: A002 - tempfile's own name
            if dir is not None and Path(dir) == parent:
                raise PermissionError(errno.EACCES, "Permission denied")
            return real(*args, dir=dir, **kwargs)

        monkeypatch.setattr(tempfile, "mkstemp", refuse)
    parent.chmod(0o555)
    try:
        _fails(_evaluate(scripted[0], folder, out), capsys, "cannot write results beside", out)
        _fails(["train", *TINY_TRAIN, "--out", str(parent / "m.safetensors")], capsys, "cannot write results beside", parent / "m.safetensors")
    finally:
        parent.chmod(0o755)


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_while_saving_results_keeps_the_finished_attacks(tmp_path: Path, folder: Path, scripted, monkeypatch, capsys) -> None:
    out = tmp_path / "res"
    (tmp_path / "res").mkdir()
    (out / "results.csv").write_text("previous results\n")
    monkeypatch.setattr("splitleak.results.save_file", _disk_full)
    assert main(_evaluate(scripted[0], folder, out, "--attacks", "decoder")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res", "res.partial"]  # no staging folder left behind
    assert (out / "results.csv").read_text() == "previous results\n"  # the old results are untouched
    monkeypatch.undo()
    assert main(_evaluate(scripted[0], folder, out, "--attacks", "decoder", "--resume")) == 0
    import json

    assert Results.load(out).provenance.only.resumed_attacks == ("decoder",)
    assert not (tmp_path / "res.partial").exists()


def test_disk_full_while_saving_progress(tmp_path: Path, folder: Path, scripted, monkeypatch, capsys) -> None:
    monkeypatch.setattr("splitleak.resume.save_file", _disk_full)
    assert main(_evaluate(scripted[0], folder, tmp_path / "res")) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res.partial"]
    assert [p.name for p in (tmp_path / "res.partial").iterdir()] == []  # no temporary file left


def test_disk_full_while_saving_a_checkpoint(tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "m.safetensors"
    monkeypatch.setattr("splitleak.models.checkpoint.save_file", _disk_full)
    assert main(["train", *TINY_TRAIN, "--out", str(out)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors.partial"]  # resumable, nothing half-written
    monkeypatch.undo()
    assert main(["train", *TINY_TRAIN, "--out", str(out), "--resume"]) == 0  # every epoch done: only saves
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
