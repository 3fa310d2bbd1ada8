"""Foreign models: kinds read from bytes, what runs code is refused without --allow-code, no pickle runs."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from splitleak.cli import main
from splitleak.data import InputSpec
from splitleak.models import CheckpointError
from splitleak.models.foreign import (
    EXPORT,
    PICKLE,
    SAFETENSORS,
    SPLITLEAK,
    TORCH_SAVE,
    TORCHSCRIPT,
    ModelSource,
    detect,
    load_foreign,
    read_state_dict,
)
from tests._byo import RunsCode, encoder, malicious_pickle, save_torchscript, trained_pair, write_factory_module, write_png_folder

SPEC = InputSpec(shape=(1, 16, 16))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    enc, head = trained_pair()
    save_file(enc.state_dict(), str(root / "w.safetensors"))
    torch.save(enc.state_dict(), root / "w.pt")
    return {
        "ts": save_torchscript(enc, root / "enc.pt"),
        "head": save_torchscript(head, root / "head.pt"),
        "safetensors": root / "w.safetensors",
        "torch.save": root / "w.pt",
        "folder": write_png_folder(root / "imgs", n=40),
    }


def test_kinds_are_read_from_the_bytes(files, tiny_checkpoint: Path, tmp_path: Path) -> None:
    assert detect(files["ts"]) == TORCHSCRIPT
    assert detect(files["safetensors"]) == SAFETENSORS
    assert detect(files["torch.save"]) == TORCH_SAVE
    assert detect(tiny_checkpoint) == SPLITLEAK
    renamed = tmp_path / "model.safetensors"  # the name says safetensors, the bytes say TorchScript
    renamed.write_bytes(files["ts"].read_bytes())
    assert detect(renamed) == TORCHSCRIPT
    (tmp_path / "p.bin").write_bytes(pickle.dumps({"a": 1}))
    assert detect(tmp_path / "p.bin") == PICKLE


def test_torchscript_is_loaded_only_with_allow_code(files) -> None:
    with pytest.raises(CheckpointError, match="TorchScript program.*torch.from_file.*--allow-code"):
        load_foreign(ModelSource(encoder=str(files["ts"])), SPEC, 10)
    loaded = load_foreign(ModelSource(encoder=str(files["ts"]), head=str(files["head"]), allow_code=True), SPEC, 10)
    x = torch.rand(3, *SPEC.shape)
    enc, head = trained_pair()
    logits, z = loaded.model(x)
    torch.testing.assert_close(z, enc(x))
    torch.testing.assert_close(logits, head(enc(x)))
    assert loaded.has_head and loaded.architecture == (None, None, None)
    assert loaded.meta.arch == "torchscript" and loaded.meta.num_classes == 10
    loaded.model.train()  # the foreign program's own mode is fixed; SplitModel.train() must not fail
    assert len(loaded.sha256) == 64


def test_the_run_id_covers_contents_and_input_spec_not_paths(files, tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere.pt"
    copy.write_bytes(files["ts"].read_bytes())
    a = load_foreign(ModelSource(encoder=str(files["ts"]), allow_code=True), SPEC)
    b = load_foreign(ModelSource(encoder=str(copy), allow_code=True), SPEC)
    c = load_foreign(ModelSource(encoder=str(copy), allow_code=True), InputSpec(shape=(1, 16, 16), mean=(0.5,), std=(0.5,)))
    assert a.sha256 == b.sha256 != c.sha256
    assert not a.has_head and a.describe()["files"][0]["sha256"] == b.describe()["files"][0]["sha256"]


def test_export_programs_need_allow_code(tmp_path: Path) -> None:
    """torch.export.load unpickles with full pickle: refused outright without --allow-code."""
    batch = torch.export.Dim("batch")
    program = torch.export.export(encoder().eval(), (torch.zeros(2, *SPEC.shape),), dynamic_shapes={"input": {0: batch}})
    path = tmp_path / "enc.pt2"
    torch.export.save(program, str(path))
    assert detect(path) == EXPORT
    with pytest.raises(CheckpointError, match="torch.export program.*full pickle.*--allow-code"):
        load_foreign(ModelSource(encoder=str(path)), SPEC)
    loaded = load_foreign(ModelSource(encoder=str(path), allow_code=True), SPEC)
    x = torch.rand(5, *SPEC.shape)
    assert loaded.model.client(x).shape == (5, 4, 8, 8)
    loaded.model.eval()  # exported modules refuse .eval(); the wrapper keeps their mode


def test_factory_clone_is_fresh_and_seeded(files, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    module = write_factory_module(tmp_path)
    loaded = load_foreign(ModelSource(encoder=str(files["torch.save"]), factory=f"{module}:encoder", allow_code=True), SPEC, 10)
    enc, _ = trained_pair()
    x = torch.rand(2, *SPEC.shape)
    torch.testing.assert_close(loaded.model.client(x), enc(x))  # the weights were loaded
    _, _, clone = loaded.architecture
    assert clone is not None
    torch.manual_seed(5)
    first = clone()
    torch.manual_seed(5)
    again = clone()
    assert torch.equal(first.encoder[0].weight, again.encoder[0].weight)
    assert not torch.equal(first.encoder[0].weight, loaded.model.encoder[0].weight)  # fresh, not the victim's


def test_bad_factory_specs() -> None:
    for spec in ("no_colon", "pkg.mod:", ":fn", "pkg..mod:fn", "pkg.mod:fn; rm -rf /"):
        with pytest.raises(CheckpointError, match="package.module:function"):
            ModelSource(encoder="x", factory=spec)
    with pytest.raises(CheckpointError, match="--head-factory needs --head"):
        ModelSource(encoder="x", head_factory="a.b:c")


# --- malicious pickles: refused on every path, nothing runs -----------------------------------


def _torchscript_with_evil_member(src: Path, dst: Path, member: str, marker: Path) -> Path:
    RunsCode.marker = str(marker)
    with zipfile.ZipFile(src) as archive, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as out:
        for info in archive.infolist():
            data = archive.read(info.filename)
            if info.filename.endswith(member):
                data = pickle.dumps(RunsCode(), protocol=2)
            out.writestr(info, data)
    return dst


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("splitleak: error:"), err
    return err[0]


def test_malicious_pickles_are_refused_on_every_model_path(files, tmp_path: Path, monkeypatch, capsys) -> None:
    marker = tmp_path / "pwned"
    monkeypatch.syspath_prepend(str(tmp_path))
    module = write_factory_module(tmp_path)
    out = tmp_path / "res"
    base = ["--image-folder", str(files["folder"]), "--out", str(out), "--limit", "20", "--lpips", "none", "--quiet"]
    evil_pickle = malicious_pickle(tmp_path / "evil.pkl", marker, writer="pickle")
    evil_save = malicious_pickle(tmp_path / "evil.pt", marker, writer="torch.save")
    cases = [
        # the model file, without options: a pickle is never unpickled, a torch.save archive is not opened
        ([str(evil_pickle)], "never unpickles"),
        ([str(evil_save)], "bare weights"),
        ([str(evil_pickle), "--allow-code"], "never unpickles"),
        # as weights of a factory: only torch.load(weights_only=True), which refuses the global
        ([str(evil_pickle), "--factory", f"{module}:encoder", "--allow-code"], "weights_only=True"),
        ([str(evil_save), "--factory", f"{module}:encoder", "--allow-code"], "weights_only=True"),
        # the head, in the same forms
        ([str(files["ts"]), "--allow-code", "--head", str(evil_pickle)], "never unpickles"),
        ([str(files["ts"]), "--allow-code", "--head", str(evil_save), "--head-factory", f"{module}:head"], "weights_only=True"),
        # TorchScript whose pickled members were replaced: torch.jit.load's unpickler knows no Python globals
        ([str(_torchscript_with_evil_member(files["ts"], tmp_path / "evil_data.pt", "/data.pkl", marker)), "--allow-code"], "not a loadable torchscript"),
        ([str(_torchscript_with_evil_member(files["ts"], tmp_path / "evil_const.pt", "/constants.pkl", marker)), "--allow-code"], "not a loadable torchscript"),
    ]
    for argv, message in cases:
        assert main(["evaluate", *argv, *base]) == 2, argv
        assert message in _one_line(capsys), argv
        assert not marker.exists(), argv
        assert not out.exists()
    # a pickle posing as a PNG in the image folder is only ever handed to Pillow
    folder = write_png_folder(tmp_path / "imgs", n=40)
    malicious_pickle(next(folder.rglob("*.png")), marker, writer="pickle")
    assert main(["evaluate", str(files["ts"]), "--allow-code", *base, "--image-folder", str(folder)]) == 2
    assert "cannot read image" in _one_line(capsys) and not marker.exists()


def test_read_state_dict(files, tmp_path: Path) -> None:
    enc, _ = trained_pair()
    for key in ("safetensors", "torch.save"):
        tensors = read_state_dict(files[key])
        assert tensors.keys() == enc.state_dict().keys()
    torch.save({"state_dict": enc.state_dict(), "epoch": 3}, tmp_path / "nested.pt")
    assert read_state_dict(tmp_path / "nested.pt").keys() == enc.state_dict().keys()
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="does not hold a state dict"):
        read_state_dict(tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not a state dict"):
        read_state_dict(files["ts"])


class _FlatViewHead(torch.nn.Module):
    """He et al.'s published heads flatten with `view`, which fails on channels-last activations."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z.view(-1, 4 * 8 * 8)[:, :10]


def test_the_pre_flight_runs_on_the_sample_given(files, tmp_path: Path) -> None:
    """The check feeds the real first batch: a layout the model cannot take fails there, naming the head."""
    head = save_torchscript(_FlatViewHead(), tmp_path / "viewhead.pt")
    source = ModelSource(encoder=str(files["ts"]), head=str(head), allow_code=True)
    standard = torch.rand(2, 1, 16, 16)
    assert load_foreign(source, SPEC, 10, sample=standard).has_head
    channels_last = standard.contiguous(memory_format=torch.channels_last).as_strided(standard.shape, (256, 1, 16, 1))
    with pytest.raises(CheckpointError, match=f"the head {head} does not take"):
        load_foreign(source, SPEC, 10, sample=channels_last)
    assert load_foreign(source, SPEC, 10).has_head  # without a sample: two mid-range inputs, as before
