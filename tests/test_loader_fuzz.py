"""Property-based fuzzing of the loaders: random bytes, truncated files, random input specs -> clean errors."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from splitleak.byo import InputConfig, parse_input_spec
from splitleak.data import DataError
from splitleak.errors import InputError
from splitleak.models import CheckpointError, load_checkpoint
from splitleak.models.foreign import ModelSource, detect, load_foreign, read_state_dict
from splitleak.resume import AttackProgress, ProgressError, TrainProgress

FUZZ = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _write(data: bytes) -> Path:
    handle = tempfile.NamedTemporaryFile(prefix="splitleak-fuzz-", suffix=".bin", delete=False)
    with handle:
        handle.write(data)
    return Path(handle.name)


PREFIXES = st.sampled_from([b"", b"\x80\x04", b"PK\x03\x04", b"\x20\x00\x00\x00\x00\x00\x00\x00{", b"{\"", b"\x89PNG"])


@FUZZ
@given(prefix=PREFIXES, body=st.binary(max_size=300))
def test_random_bytes_are_refused_cleanly(prefix: bytes, body: bytes) -> None:
    path = _write(prefix + body)
    try:
        try:
            kind = detect(path)
        except CheckpointError:
            kind = None
        with pytest.raises(CheckpointError):
            load_checkpoint(path)
        with pytest.raises(CheckpointError):
            load_foreign(ModelSource(encoder=str(path), allow_code=True), InputConfig().input_spec((1, 16, 16)))
        if kind is not None:
            with pytest.raises(CheckpointError):
                read_state_dict(path)
    finally:
        path.unlink()


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> dict[str, bytes]:
    from safetensors.torch import save_file

    from tests._byo import save_torchscript, trained_pair

    root = tmp_path_factory.mktemp("valid")
    enc, _ = trained_pair()
    save_file(enc.state_dict(), str(root / "w.safetensors"))
    return {
        "checkpoint": tiny_checkpoint.read_bytes(),
        "weights": (root / "w.safetensors").read_bytes(),
        "torchscript": save_torchscript(enc, root / "enc.pt").read_bytes(),
    }


@FUZZ
@given(which=st.sampled_from(["checkpoint", "weights", "torchscript"]), fraction=st.floats(0.0, 0.999))
def test_truncated_files_are_refused_cleanly(valid_files: dict[str, bytes], which: str, fraction: float) -> None:
    data = valid_files[which]
    path = _write(data[: int(len(data) * fraction)])
    try:
        with pytest.raises(CheckpointError):
            if which == "checkpoint":
                load_checkpoint(path)
            elif which == "weights":
                read_state_dict(path)
            else:
                load_foreign(ModelSource(encoder=str(path), allow_code=True), InputConfig().input_spec((1, 16, 16)))
    finally:
        path.unlink()


@FUZZ
@given(fraction=st.floats(0.0, 0.999), which=st.sampled_from(["train", "attack"]))
def test_truncated_progress_files_are_refused_cleanly(tmp_path: Path, fraction: float, which: str) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    if which == "train":
        progress = TrainProgress(folder / "state", {"k": 1})
        model = torch.nn.Linear(3, 2)
        optimiser = torch.optim.Adam(model.parameters())
        model(torch.ones(1, 3)).sum().backward()
        optimiser.step()
        progress.save(1, {"model": model, "client_optimiser": optimiser}, {"order": torch.Generator().manual_seed(0), "transform": torch.Generator().manual_seed(1)}, [{"epoch": 1}])
        path = progress.path
    else:
        import pandas as pd

        progress = AttackProgress(folder, resume=True)
        progress.bind(checkpoint_sha256="0" * 64, evaluation={"seed": 0}, data={}, lpips={})
        rows = pd.DataFrame({"attack": ["a"], "metric": ["ssim"], "value": [0.5], "sample": pd.array([3], dtype="Int64"), "n": [1], "ci_low": [float("nan")], "ci_high": [float("nan")]})
        path = progress.save("decoder", rows, {"attack/decoder": torch.zeros(1, 1, 4, 4)}, {"budget": {}})
        assert progress.load("decoder") is not None
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ProgressError):
        progress.load() if which == "train" else progress.load("decoder")


TOML_SCALARS = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.text(max_size=10)
)
TOML_VALUES = st.one_of(TOML_SCALARS, st.lists(TOML_SCALARS, max_size=5))
KEYS = st.sampled_from(["shape", "value_range", "mean", "std", "num_classes", "dataset", "image_folder", "split_seed", "aux_pool", "colour"])


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"inf": "inf", "-inf": "-inf", "nan": "nan"}.get(repr(value), repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + "".join(c if c.isalnum() or c in " .-_/" else "_" for c in value) + '"'
    return "[" + ", ".join(_toml(v) for v in value) + "]"  # type: ignore[attr-defined]


@FUZZ
@given(st.dictionaries(KEYS, TOML_VALUES, max_size=6))
def test_random_input_specs_parse_or_fail_with_input_error(values: dict[str, object]) -> None:
    text = "\n".join(f"{key} = {_toml(value)}" for key, value in values.items())
    try:
        config = parse_input_spec(text)
    except InputError as err:
        assert str(err)
        return
    assert isinstance(config, InputConfig)
    if config.shape is not None:
        try:
            spec = config.input_spec(config.shape)
        except DataError:  # mean/std length checked against the channels
            return
        assert spec.shape == config.shape


@FUZZ
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_random_text_is_not_a_crash(raw: bytes | str) -> None:
    try:
        parse_input_spec(raw)
    except InputError:
        pass
