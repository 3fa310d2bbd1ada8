"""Hostile inputs through the real CLI, by class: sizes, dtypes, nesting, wrong types, devices,
seeds, offline downloads. Each ends with exit code 2, one `splitleak: error:` line, and nothing
written at the output path."""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import load_file
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file

from splitleak.cli import main
from tests._byo import folder, trained_pair, write_factory_module  # noqa: F401 (fixtures)

FAST = ["--limit", "20", "--lpips", "none", "--semantic-epochs", "0", "--attack-param", "decoder.epochs=1", "--quiet"]
DEEP_JSON = "[" * 100_000 + "]" * 100_000
DEEP_TOML = "a = " + "[" * 100_000 + "]" * 100_000 + "\n"


def _refused(argv: list[str], capsys, out: Path, message: str = "") -> None:
    """Exit 2, exactly one `splitleak: error:` line (containing `message`), nothing at or beside `out`."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("splitleak: error:"), err
    assert message in err[0], err[0]
    assert [p.name for p in out.parent.iterdir() if p.name.startswith((out.name, f".{out.name}"))] == []


@pytest.fixture(scope="module")
def results_dir(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hostile") / "res"
    assert main(["evaluate", str(tiny_checkpoint), "--out", str(out), *FAST]) == 0
    assert main(["gate", "--init", "--policy", str(out.parent / "policy.toml")]) == 0
    return out


def _checkpoint(source: Path, target: Path, *, meta: Callable[[dict], object] | None = None, raw_meta: str | None = None,
                tensors: Callable[[dict], object] | None = None) -> Path:
    """A copy of `source` with its metadata or tensors changed."""
    with safe_open(str(source), "pt") as handle:
        header, state = handle.metadata(), {k: handle.get_tensor(k) for k in handle.keys()}
    recorded = json.loads(header["splitleak"])
    if meta is not None:
        meta(recorded)
    if tensors is not None:
        tensors(state)
    save_file(state, str(target), metadata={"splitleak": raw_meta if raw_meta is not None else json.dumps(recorded)})
    return target


def _evaluate(model: Path, out: Path, *extra: str) -> list[str]:
    return ["evaluate", str(model), "--out", str(out), *FAST, *extra]


# --- sizes read from files ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.__setitem__("num_classes", 10**12), "1000000000000 classes"),
        (lambda m: m.__setitem__("num_classes", 10**7), "10000000 classes"),
        (lambda m: m["input_spec"].__setitem__("shape", [1, 10**6, 10**6]), "larger than any image splitleak reads"),
        (lambda m: m["input_spec"].__setitem__("shape", [1, 56, 56]), "input [1, 56, 56]"),
    ],
    ids=["num_classes_1e12", "num_classes_1e7", "shape_huge", "shape_other"],
)
def test_sizes_in_checkpoint_metadata_are_checked_before_allocating(tmp_path: Path, tiny_checkpoint: Path, capsys, change, message: str) -> None:
    model = _checkpoint(tiny_checkpoint, tmp_path / "m.safetensors", meta=change)
    _refused(_evaluate(model, tmp_path / "res"), capsys, tmp_path / "res", message)


def _with_reconstructions(results_dir: Path, tmp_path: Path, change: Callable[[dict], object]) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(results_dir, copy)
    stored = load_file(str(copy / "reconstructions.safetensors"))
    change(stored)
    save_numpy(stored, str(copy / "reconstructions.safetensors"))
    return copy


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.__setitem__("original", np.zeros((16, 1, 512, 512), np.float32)), "original is F32 [16, 1, 512, 512]"),
        (lambda r: r.__setitem__("original", np.zeros((5000, 1, 28, 28), np.float32)), "original is F32 [5000, 1, 28, 28]"),
        (lambda r: r.__setitem__("original", r["original"].reshape(len(r["original"]), -1)), "original is F32 [16, 784]"),
        (lambda r: r.__setitem__("attack/decoder", r["attack/decoder"][0]), "attack/decoder is F32 [1, 28, 28]"),
        (lambda r: r.__setitem__("attack/decoder", r["attack/decoder"][:3]), "hold different numbers of images"),
        (lambda r: r.__setitem__("original", r["original"].astype(np.int32)), "original is I32"),
        (lambda r: r.__setitem__("indices", r["indices"].astype(np.float32)), "indices is F32"),
    ],
    ids=["too_large_images", "too_many_images", "wrong_rank", "wrong_rank_attack", "uneven", "int_images", "float_indices"],
)
def test_reconstructions_that_do_not_fit_the_results_are_refused(results_dir: Path, tmp_path: Path, capsys, change, message: str) -> None:
    copy = _with_reconstructions(results_dir, tmp_path, change)
    _refused(["report", str(copy), "--out", str(tmp_path / "r.pdf")], capsys, tmp_path / "r.pdf", message)
    _refused(["gate", str(copy), "--policy", str(results_dir.parent / "policy.toml"), "--json", str(tmp_path / "v.json")], capsys, tmp_path / "v.json", message)


# --- dtypes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.int32, torch.float64, torch.float16])
def test_a_weight_of_another_dtype_is_refused(tmp_path: Path, tiny_checkpoint: Path, capsys, dtype: torch.dtype) -> None:
    def convert(state: dict) -> None:
        state["encoder.0.0.weight"] = state["encoder.0.0.weight"].to(dtype)

    model = _checkpoint(tiny_checkpoint, tmp_path / "m.safetensors", tensors=convert)
    _refused(_evaluate(model, tmp_path / "res"), capsys, tmp_path / "res", f"encoder.0.0.weight is {str(dtype).removeprefix('torch.')}, the model's float32")


def test_factory_weights_of_another_dtype_are_refused(tmp_path: Path, folder: Path, monkeypatch, capsys) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    module = write_factory_module(tmp_path)
    encoder, _ = trained_pair()
    save_file({k: v.to(torch.int32) if k.endswith("weight") else v for k, v in encoder.state_dict().items()}, str(tmp_path / "w.safetensors"))
    out = tmp_path / "res"
    argv = ["evaluate", str(tmp_path / "w.safetensors"), "--allow-code", "--factory", f"{module}:encoder", "--image-folder", str(folder), "--out", str(out), *FAST]
    _refused(argv, capsys, out, "0.weight is int32, the model's float32")


# --- nesting -----------------------------------------------------------------------------------


def test_deeply_nested_json_in_checkpoints(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    out = tmp_path / "res"
    model = _checkpoint(tiny_checkpoint, tmp_path / "m.safetensors", raw_meta=DEEP_JSON)
    _refused(_evaluate(model, out), capsys, out, "nested deeper than 64 levels")
    nested = json.dumps({"format": "splitleak-checkpoint", "x": json.loads("[" * 65 + "]" * 65)})
    model = _checkpoint(tiny_checkpoint, tmp_path / "m.safetensors", raw_meta=nested)
    _refused(_evaluate(model, out), capsys, out, "nested deeper than 64 levels")
    header = b'{"__metadata__": {"a": "b"}, "x": ' + DEEP_JSON.encode() + b"}"
    (tmp_path / "h.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    _refused(_evaluate(tmp_path / "h.safetensors", out), capsys, out, "nested deeper than 64 levels")


@pytest.mark.parametrize(("text", "message"), [(DEEP_JSON, "nested deeper"), ('{"runs": ' + DEEP_JSON + "}", "nested deeper"), ("[1, 2]", "got list"), ('"runs"', "got str")])
def test_provenance_nested_too_deep_or_not_a_table(results_dir: Path, tmp_path: Path, capsys, text: str, message: str) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(results_dir, copy)
    (copy / "provenance.json").write_text(text)
    _refused(["report", str(copy), "--out", str(tmp_path / "r.pdf")], capsys, tmp_path / "r.pdf", message)
    _refused(["gate", str(copy), "--policy", str(results_dir.parent / "policy.toml"), "--json", str(tmp_path / "v.json")], capsys, tmp_path / "v.json", message)


@pytest.mark.parametrize("text", [DEEP_TOML, "a = " + "{b = " * 50_000 + "1" + "}" * 50_000 + "\n", "a = " + "[" * 65 + "]" * 65 + "\n"], ids=["arrays", "tables", "just_too_deep"])
def test_deeply_nested_toml(results_dir: Path, tiny_checkpoint: Path, tmp_path: Path, capsys, text: str) -> None:
    toml = tmp_path / "deep.toml"
    toml.write_text(text)
    _refused(["gate", str(results_dir), "--policy", str(toml), "--json", str(tmp_path / "v.json")], capsys, tmp_path / "v.json", "nested deeper than 64 levels")
    _refused(_evaluate(tiny_checkpoint, tmp_path / "res", "--input-spec", str(toml)), capsys, tmp_path / "res", "nested deeper than 64 levels")
    _refused(["sweep", str(toml), "--out", str(tmp_path / "sw")], capsys, tmp_path / "sw", "nested deeper than 64 levels")


@pytest.mark.parametrize("source", ["big", "zero"])
def test_settings_files_are_read_only_up_to_a_bound(results_dir: Path, tiny_checkpoint: Path, tmp_path: Path, capsys, source: str) -> None:
    if source == "zero" and not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero here")
    toml = Path("/dev/zero") if source == "zero" else tmp_path / "big.toml"
    if source == "big":
        toml.write_text("# padding\n" * 200_000)
    _refused(_evaluate(tiny_checkpoint, tmp_path / "res", "--input-spec", str(toml)), capsys, tmp_path / "res", "larger than 1048576 bytes")
    _refused(["sweep", str(toml), "--out", str(tmp_path / "sw")], capsys, tmp_path / "sw", "larger than 1048576 bytes")
    if source == "big":  # a policy must be a file
        _refused(["gate", str(results_dir), "--policy", str(toml), "--json", str(tmp_path / "v.json")], capsys, tmp_path / "v.json", "larger than 1048576 bytes")


# --- files of the wrong kind -------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"this is not weights" * 10, b"\x80\x04K\x01.", b"PK\x03\x04" + b"\x00" * 40])
def test_a_non_weights_file_as_lpips_weights(tmp_path: Path, tiny_checkpoint: Path, capsys, content: bytes) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_bytes(content)
    _refused(["weights", "--path", str(junk)], capsys, tmp_path / "none", str(junk))
    argv = ["evaluate", str(tiny_checkpoint), "--out", str(tmp_path / "res"), "--limit", "20", "--semantic-epochs", "0", "--lpips-weights", str(junk), "--quiet"]
    _refused(argv, capsys, tmp_path / "res", str(junk))


def test_a_splitleak_checkpoint_as_lpips_weights(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    argv = ["evaluate", str(tiny_checkpoint), "--out", str(tmp_path / "res"), "--limit", "20", "--semantic-epochs", "0", "--attack-param", "decoder.epochs=1", "--lpips-weights", str(tiny_checkpoint), "--quiet"]
    _refused(argv, capsys, tmp_path / "res", "not a torchvision alexnet state dict")


# --- devices and seeds -------------------------------------------------------------------------


TRAIN = ["train", "--dataset", "digits", "--limit-train", "200", "--aux-pool", "200", "--limit-test", "50", "--epochs", "1", "--quiet"]


@pytest.mark.parametrize("device", ["nonsense", "cuda:-1", "meta"] + ([] if torch.cuda.is_available() else ["cuda", "cuda:3"]))
def test_devices_that_are_not_here(tmp_path: Path, tiny_checkpoint: Path, capsys, device: str) -> None:
    _refused([*TRAIN, "--device", device, "--out", str(tmp_path / "m.safetensors")], capsys, tmp_path / "m.safetensors", "device")
    _refused(_evaluate(tiny_checkpoint, tmp_path / "res", "--device", device), capsys, tmp_path / "res", "device")
    (tmp_path / "grid.toml").write_text("[train]\nepochs = 1\n")
    _refused(["sweep", str(tmp_path / "grid.toml"), "--device", device, "--out", str(tmp_path / "sw"), "--quiet"], capsys, tmp_path / "sw", "device")


def test_negative_seeds_are_seeds(tmp_path: Path) -> None:
    from splitleak._validate import torch_seed
    from splitleak.data import DataConfig

    assert torch_seed("seed", -(2**63)) == -(2**63) and DataConfig(split_seed=-5).split_seed == -5
    assert torch.Generator().manual_seed(-(2**63)).initial_seed() == 2**63  # torch takes them (as their two's complement)


@pytest.mark.parametrize("seed", [str(2**64), str(-(2**63) - 1), "9" * 40])
def test_seeds_beyond_64_bits(tmp_path: Path, tiny_checkpoint: Path, capsys, seed: str) -> None:
    _refused([*TRAIN, "--seed", seed, "--out", str(tmp_path / "m.safetensors")], capsys, tmp_path / "m.safetensors", "-2**63 to 2**64 - 1")
    _refused([*TRAIN, "--split-seed", seed, "--out", str(tmp_path / "m.safetensors")], capsys, tmp_path / "m.safetensors", "-2**63 to 2**64 - 1")
    _refused(_evaluate(tiny_checkpoint, tmp_path / "res", "--seed", seed), capsys, tmp_path / "res", "-2**63 to 2**64 - 1")


# --- offline downloads -------------------------------------------------------------------------


def _offline(*args, **kwargs):
    raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))


@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_download_when_offline(tmp_path: Path, monkeypatch, capsys, dataset: str) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", _offline)  # what torchvision fetches with
    out = tmp_path / "m.safetensors"
    _refused(["train", "--dataset", dataset, "--download", "--data-dir", str(tmp_path / "data"), "--out", str(out), "--quiet"], capsys, out, "name resolution")
    assert [p for p in (tmp_path / "data").rglob("*") if p.is_file()] == []  # nothing fetched


# --- interrupts --------------------------------------------------------------------------------


class _InterruptImport:
    """A meta-path finder that raises KeyboardInterrupt when `name` is imported, as Ctrl-C would."""

    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(self, fullname: str, path=None, target=None):
        if fullname == self.name:
            raise KeyboardInterrupt
        return None


def test_ctrl_c_while_importing_the_command_line(monkeypatch, capsys) -> None:
    import sys

    from splitleak import _entry

    monkeypatch.delitem(sys.modules, "splitleak.cli")
    monkeypatch.setattr(sys, "meta_path", [_InterruptImport("splitleak.cli"), *sys.meta_path])
    assert _entry.main() == 130
    assert capsys.readouterr().err.strip().splitlines() == ["splitleak: interrupted"]


def test_ctrl_c_while_a_command_imports_its_modules(tmp_path: Path, monkeypatch, capsys) -> None:
    import sys

    monkeypatch.delitem(sys.modules, "splitleak.reports.document", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_InterruptImport("splitleak.reports.document"), *sys.meta_path])
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r.pdf")]) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["splitleak: interrupted"]
    assert list(tmp_path.iterdir()) == []


def test_the_installed_command_enters_through_the_guard() -> None:
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["scripts"]["splitleak"] == "splitleak._entry:main"


def test_ctrl_c_that_a_library_turns_into_another_error(tmp_path: Path, monkeypatch, capsys) -> None:
    import signal

    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is not Python's default handler here")

    def swallowed(*args, **kwargs):  # numpy's C extensions, interrupted while importing, raise ImportError
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass
        raise ImportError("Importing the numpy C-extensions failed")

    monkeypatch.setattr("splitleak.reports.document.write_report", swallowed)
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r.pdf")]) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["splitleak: interrupted"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    monkeypatch.setattr("splitleak.reports.document.write_report", lambda *a, **k: (_ for _ in ()).throw(ImportError("a real one")))
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r.pdf")]) == 1  # without an interrupt: a bug
    assert capsys.readouterr().err.startswith("splitleak: internal error: ImportError: a real one")


def test_ctrl_c_that_python_drops_in_a_callback(monkeypatch, capsys) -> None:
    import signal
    import weakref

    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is not Python's default handler here")

    class Target:
        pass

    def dropped(*args, **kwargs):  # Python ignores exceptions in weakref callbacks ("Exception ignored in ...")
        target = Target()
        ref = weakref.ref(target, lambda _: signal.raise_signal(signal.SIGINT))  # noqa: F841 - kept alive to fire
        del target
        return "| attack |"

    monkeypatch.setattr("splitleak.attacks._catalogue.markdown_table", dropped)
    assert main(["attacks", "--markdown"]) == 130  # the command finished, but the user asked to stop
    assert capsys.readouterr().err.strip().splitlines() == ["splitleak: interrupted"]


# --- a full disk (a real one: a tmpfs, mounted as root; skipped elsewhere) ---------------------


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs filled up to its last byte."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(disk)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        with open(disk / "filler", "wb", buffering=0) as handle:
            try:
                while handle.write(b"\0" * 4096):
                    pass
            except OSError:
                pass
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_full_disk(full_disk: Path, results_dir: Path, tiny_checkpoint: Path, capsys) -> None:
    out = full_disk / "res"
    assert main(_evaluate(tiny_checkpoint, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("splitleak: error:") and "No space left on device" in err[0], err
    assert [p.name for p in full_disk.iterdir() if p.name != "filler"] == ["res.partial"]  # kept for --resume (docs/trust.md)
    assert list(out.with_name("res.partial").iterdir()) == []  # with no half-written progress file
    shutil.rmtree(out.with_name("res.partial"))
    _refused([*TRAIN, "--out", str(full_disk / "m.safetensors")], capsys, full_disk / "m.safetensors", "No space left on device")
    policy = str(results_dir.parent / "policy.toml")
    _refused(["gate", str(results_dir), "--policy", policy, "--json", str(full_disk / "v.json")], capsys, full_disk / "v.json", "No space left on device")
    _refused(["report", str(results_dir), "--out", str(full_disk / "r.pdf")], capsys, full_disk / "r.pdf", "No space left on device")
    assert [p.name for p in full_disk.iterdir()] == ["filler"]  # nothing half-written
