"""Bring your own model, end to end through the CLI: encoders built outside splitleak, PNG folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from splitleak.cli import main
from splitleak.results import Results
from tests._byo import SIZE, folder, scripted, save_torchscript, trained_pair, write_factory_module, write_png_folder  # noqa: F401 (fixtures)

FAST = ["--limit", "20", "--lpips", "none", "--semantic-epochs", "0", "--attack-param", "decoder.epochs=1", "--attack-param", "rmle.steps=3", "--quiet"]



def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("splitleak: error:"), err
    return err[0]


def test_torchscript_encoder_and_head_on_a_png_folder(tmp_path: Path, folder: Path, scripted, capsys) -> None:
    encoder, head = scripted
    out = tmp_path / "res"
    argv = ["evaluate", str(encoder), "--head", str(head), "--image-folder", str(folder), "--allow-code", "--attacks", "decoder,rmle", "--out", str(out), *FAST]
    assert main([*argv, "--semantic-epochs", "1"]) == 0, capsys.readouterr().err
    results = Results.load(out)
    table = results.table
    assert set(table.attack) == {"", "decoder", "rmle", "worst"}
    assert len(table.query("attack == 'rmle' and metric == 'ssim'")) == 20
    assert {"accuracy", "dcor", "semantic_reference"} <= set(table.query("attack == ''").metric)
    assert set(table.arch) == {"torchscript"} and set(table.dataset) == {"folder:digits"}
    model = results.provenance.only.model
    assert model["loader"] == "torchscript" and [f["role"] for f in model["files"]] == ["encoder", "head"]
    from splitleak._io import sha256_file

    assert model["files"][0]["sha256"] == sha256_file(encoder)
    assert results.provenance.only.task_accuracy == {"reported": True}
    data = results.provenance.only.data
    assert data["dataset"] == "image-folder" and data["aux_size"] == 20 and data["test_size"] == 20 and "sha256" in data["origin"]
    assert not (tmp_path / "res.partial").exists()


def test_without_a_head_accuracy_is_skipped_and_shadow_refused(tmp_path: Path, folder: Path, scripted, capsys) -> None:
    encoder, _ = scripted
    out = tmp_path / "res"
    assert main(["evaluate", str(encoder), "--image-folder", str(folder), "--allow-code", "--out", str(out), *FAST]) == 0
    assert "no task accuracy: no server head" in capsys.readouterr().err
    results = Results.load(out)
    assert "accuracy" not in set(results.table.metric)
    assert results.provenance.only.task_accuracy["reported"] is False
    assert "no server head" in results.provenance.only.task_accuracy["reason"]
    for attacks, message in (("shadow", "needs the server head"), ("unsplit", "architecture and cut")):
        assert main(["evaluate", str(encoder), "--image-folder", str(folder), "--allow-code", "--attacks", attacks, "--out", str(tmp_path / "x"), *FAST]) == 2
        assert message in _one_error_line(capsys)
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()


def test_factory_and_weights_give_a_clone_for_unsplit_and_shadow(tmp_path: Path, folder: Path, monkeypatch, capsys) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    module = write_factory_module(tmp_path)
    encoder, head = trained_pair(seed=1)
    save_file(encoder.state_dict(), str(tmp_path / "encoder.safetensors"))
    torch.save(head.state_dict(), tmp_path / "head.pt")  # read back with torch.load(weights_only=True)
    out = tmp_path / "res"
    argv = [
        "evaluate", str(tmp_path / "encoder.safetensors"), "--factory", f"{module}:encoder", "--head", str(tmp_path / "head.pt"),
        "--head-factory", f"{module}:head", "--allow-code", "--image-folder", str(folder), "--attacks", "unsplit,shadow",
        "--attack-param", "unsplit.outer_steps=1", "--attack-param", "unsplit.input_steps=2", "--attack-param", "unsplit.model_steps=2",
        "--attack-param", "shadow.shadow_epochs=1", "--attack-param", "shadow.decoder_epochs=1", "--out", str(out), *FAST,
    ]
    assert main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()  # its notes (data caveat) are not the refusal below
    results = Results.load(out)
    assert {"unsplit", "shadow"} <= set(results.table.attack)
    assert set(results.table.arch) == {f"factory:{module}:encoder"}
    files = results.provenance.only.model["files"]
    assert files[0]["factory"] == f"{module}:encoder" and files[0]["factory_source"].endswith(f"{module}.py")
    assert results.provenance.only.model["clone"] == "fresh model from the factory"
    # the factory without --allow-code: refused before anything is imported or read
    assert main([a for a in argv if a != "--allow-code"]) == 2
    assert "--allow-code" in _one_error_line(capsys)


def test_input_spec_toml_with_normalisation(tmp_path: Path, folder: Path, scripted, capsys) -> None:
    encoder, head = scripted
    spec = tmp_path / "spec.toml"
    spec.write_text(f'shape = [1, 16, 16]\nvalue_range = [0.0, 1.0]\nmean = [0.5]\nstd = [0.25]\nimage_folder = "{folder}"\naux_pool = 16\nsplit_seed = 3\n')
    out = tmp_path / "res"
    assert main(["evaluate", str(encoder), "--head", str(head), "--input-spec", str(spec), "--allow-code", "--out", str(out), *FAST]) == 0
    capsys.readouterr()  # its notes (data caveat) are not the refusal below
    results = Results.load(out)
    assert results.provenance.only.meta.input_spec.to_dict() == {"shape": [1, 16, 16], "value_range": [0.0, 1.0], "mean": [0.5], "std": [0.25]}
    assert results.provenance.only.data["aux_pool"] == 16 and results.provenance.only.data["split_seed"] == 3
    # the command line overrides the file
    assert main(["evaluate", str(encoder), "--input-spec", str(spec), "--shape", "1,28,28", "--allow-code", "--out", str(tmp_path / "r2"), *FAST]) == 2
    assert "16x16 pixels but the input spec wants 28x28" in _one_error_line(capsys)


def test_unlabelled_folder_skips_label_metrics(tmp_path: Path, scripted) -> None:
    encoder, head = scripted
    flat = write_png_folder(tmp_path / "flat", n=40, labelled=False)
    out = tmp_path / "res"
    assert main(["evaluate", str(encoder), "--head", str(head), "--image-folder", str(flat), "--allow-code", "--out", str(out), *FAST, "--semantic-epochs", "1"]) == 0
    results = Results.load(out)
    assert not ({"accuracy", "semantic_reference", "semantic_accuracy"} & set(results.table.metric))
    assert results.provenance.only.task_accuracy["reason"] == "the images have no labels"
    assert results.provenance.only.semantic_classifier["reason"] == "the images have no labels"


def test_registered_dataset_for_a_foreign_encoder(tmp_path: Path, capsys) -> None:
    encoder = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    path = save_torchscript(encoder, tmp_path / "enc.pt")
    out = tmp_path / "res"
    assert main(["evaluate", str(path), "--dataset", "digits", "--aux-pool", "100", "--allow-code", "--out", str(out), *FAST]) == 0
    results = Results.load(out)
    assert set(results.table.dataset) == {"digits"} and results.provenance.only.data["aux_size"] == 100
    # the model may have been trained on the attacker's images: the log and the report's notes say so
    caveat = "the attacker's 100 auxiliary images are drawn from digits's training part: a model trained elsewhere on the whole training set may have seen them"
    assert f"note: {caveat}" in capsys.readouterr().err
    assert caveat in results.provenance.only.model["data_caveat"] and "test images come from the test part and are unaffected" in results.provenance.only.model["data_caveat"]
    from splitleak.reports.notes import method_notes
    from splitleak.reports.runs import collect_runs

    assert any(caveat in block.text for block in method_notes(collect_runs(out)))


def test_splitleak_checkpoints_refuse_foreign_options(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    assert main(["evaluate", str(tiny_checkpoint), "--shape", "1,28,28", "--out", str(tmp_path / "r"), *FAST]) == 2
    assert "records its architecture, input spec and data split" in _one_error_line(capsys)


def test_a_headless_run_still_summarises(tmp_path: Path, folder: Path, scripted) -> None:
    """Reports read only the table: a run without a head has no accuracy row, and that is fine."""
    encoder, _ = scripted
    out = tmp_path / "res"
    assert main(["evaluate", str(encoder), "--image-folder", str(folder), "--allow-code", "--out", str(out), *FAST]) == 0
    summary = Results.load(out).summary()
    assert set(summary.attack) == {"", "decoder", "worst"}
    assert Results.load(out).provenance.only.model["head"] is False


SDAR_FORA = ["--attacks", "sdar,fora", "--attack-param", "sdar.iterations=2", "--attack-param", "sdar.batch_size=8", "--attack-param", "fora.substitute_steps=2",
             "--attack-param", "fora.decoder_epochs=1", "--attack-param", "fora.batch_size=8"]


def _colour_folder(root: Path, n: int = 40) -> Path:
    """`n` RGB PNGs of 16x16 in class subfolders: digits tinted per class."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i in range(n):
        label = int(digits.target[i])
        grey = digits.images[i] / 16
        tint = np.array([(label % 3) / 2, ((label // 3) % 3) / 2, 1.0])
        pixels = (255 * grey[..., None] * (0.3 + 0.7 * tint)).astype(np.uint8)
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, "RGB").resize((SIZE, SIZE), Image.BILINEAR).save(root / str(label) / f"img{i:03d}.png")
    return root


@pytest.mark.parametrize("channels", [1, 3])
def test_the_new_passive_attacks_run_on_a_foreign_torchscript_encoder(tmp_path: Path, folder: Path, channels: int, capsys) -> None:
    """sdar and fora need no architecture: a TorchScript encoder (sdar's generic simulator) on grey and RGB folders."""
    torch.manual_seed(channels)
    encoder = nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)).eval()
    head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 8 * 8, 10)).eval()
    images = folder if channels == 1 else _colour_folder(tmp_path / "colour")
    enc, hd = save_torchscript(encoder, tmp_path / "enc.pt"), save_torchscript(head, tmp_path / "head.pt")
    out = tmp_path / "res"
    argv = ["evaluate", str(enc), "--head", str(hd), "--image-folder", str(images), "--allow-code", *SDAR_FORA, "--out", str(out), *FAST]
    assert main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()  # its notes (data caveat) are not the refusal below
    results = Results.load(out)
    assert {"sdar", "fora", "worst"} <= set(results.table.attack)
    assert results.reconstructions["attack/sdar"].shape[1] == channels == results.reconstructions["attack/fora"].shape[1]
    assert main([*argv[:-len(FAST) - 2], "--attacks", "fsha", "--out", str(tmp_path / "x"), *FAST]) == 2  # not trained by the fsha server
    assert "trained by the 'fsha' server" in _one_error_line(capsys)


def test_sdar_uses_a_factory_encoder_as_its_simulator(tmp_path: Path, folder: Path, monkeypatch, capsys) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    module = write_factory_module(tmp_path)
    encoder, head = trained_pair(seed=2)
    save_file(encoder.state_dict(), str(tmp_path / "encoder.safetensors"))
    torch.save(head.state_dict(), tmp_path / "head.pt")
    out = tmp_path / "res"
    argv = [
        "evaluate", str(tmp_path / "encoder.safetensors"), "--factory", f"{module}:encoder", "--head", str(tmp_path / "head.pt"),
        "--head-factory", f"{module}:head", "--allow-code", "--image-folder", str(folder), *SDAR_FORA, "--out", str(out), *FAST,
    ]
    assert main(argv) == 0, capsys.readouterr().err
    assert {"sdar", "fora"} <= set(Results.load(out).table.attack)


def test_a_head_that_flattens_with_view_runs_on_grey_idx_data(tmp_path: Path, monkeypatch, capsys) -> None:
    """Grey IDX data (Fashion-MNIST's format) reaches a user's `view`-flattening head in a layout it can take."""
    from tests.test_data import write_idx_set

    class ViewHead(nn.Module):
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return z.view(-1, 4 * 14 * 14)[:, :10]

    write_idx_set(tmp_path / "data" / "FashionMNIST" / "raw")
    monkeypatch.setattr("splitleak.data.DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-debian")
    encoder = save_torchscript(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)), tmp_path / "enc.pt")
    head = save_torchscript(ViewHead(), tmp_path / "head.pt")
    out = tmp_path / "res"
    args = ["evaluate", str(encoder), "--head", str(head), "--dataset", "fashion-mnist", "--data-dir", str(tmp_path / "data"), "--aux-pool", "20", "--allow-code"]
    assert main([*args, "--out", str(out), *FAST, "--limit", "10", "--attacks", "decoder"]) == 0, capsys.readouterr().err


def test_the_default_limit_adapts_to_a_small_folder_an_explicit_one_is_refused(tmp_path: Path, folder: Path, scripted, capsys) -> None:
    """40 images: 20 for the attacker, 20 to attack; the default --limit (1000) uses those 20 and says so."""
    encoder, head = scripted
    quick = [a for a in FAST if a not in ("--limit", "20")]
    args = ["evaluate", str(encoder), "--head", str(head), "--image-folder", str(folder), "--allow-code", *quick, "--attacks", "decoder"]
    assert main([*args, "--out", str(tmp_path / "res")]) == 0
    assert "note: attacked all 20 test images the data has (fewer than the default --limit-test 1000)" in capsys.readouterr().err
    assert Results.load(tmp_path / "res").provenance.only.data["test_size"] == 20
    assert main([*args, "--out", str(tmp_path / "res2"), "--limit", "21"]) == 2
    assert "limit_test=21 is larger than the 20 test images left" in _one_error_line(capsys)
    assert main([*args, "--out", str(tmp_path / "res3"), "--dcor-samples", "21"]) == 2
    assert "--dcor-samples 21 is larger than the 20 test images" in _one_error_line(capsys)
    assert not (tmp_path / "res2").exists() and not (tmp_path / "res3").exists()
