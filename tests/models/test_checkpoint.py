import dataclasses
import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from splitleak.models import CheckpointError, load_checkpoint, save_checkpoint
from splitleak.records import CheckpointMeta


def test_round_trip_keeps_weights_and_metadata(tiny_checkpoint: Path, tiny_splits) -> None:
    loaded = load_checkpoint(tiny_checkpoint)
    meta = loaded.meta
    assert meta.arch == "small-cnn" and meta.cut == 1 and meta.defense.name == "none"
    assert meta.data["dataset"] == "digits" and len(meta.log) == 1
    assert meta.test_accuracy is not None and 0.0 <= meta.test_accuracy <= 1.0 and len(loaded.sha256) == 64
    assert CheckpointMeta.from_dict(json.loads(json.dumps(meta.to_dict()))) == meta  # JSON-able, read back equal
    again = save_checkpoint(tiny_checkpoint.parent / "copy.safetensors", loaded.model, meta)
    reloaded = load_checkpoint(again)
    x = tiny_splits.test.x[:8]
    torch.testing.assert_close(reloaded.model(x)[0], loaded.model(x)[0])
    assert reloaded.sha256 == loaded.sha256  # deterministic bytes for the same weights and metadata


class _RunsCode:
    def __reduce__(self):
        return (Path.touch, (Path(_RunsCode.marker),))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_a_malicious_pickle_is_refused_and_runs_nothing(tmp_path: Path, writer: str) -> None:
    _RunsCode.marker = str(tmp_path / "pwned")
    path = tmp_path / "evil.safetensors"
    if writer == "pickle":
        path.write_bytes(pickle.dumps({"state_dict": _RunsCode()}))
    else:
        torch.save({"state_dict": _RunsCode()}, path)
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def test_truncated_checkpoint_is_refused(tiny_checkpoint: Path, tmp_path: Path) -> None:
    data = tiny_checkpoint.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(cut)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"garbage bytes that are not a header", "not a readable"), (None, "does not exist")],
)
def test_junk_files_are_refused(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "junk.safetensors"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def _rewrite(src: Path, dst: Path, *, meta=None, tensors=None) -> Path:
    from safetensors import safe_open

    with safe_open(str(src), framework="pt") as handle:
        header = handle.metadata()
        weights = {k: handle.get_tensor(k) for k in handle.keys()}
    if meta is not None:
        header = {"splitleak": meta(json.loads(header["splitleak"]))}
    if tensors is not None:
        weights = tensors(weights)
    save_file(weights, str(dst), metadata=header)
    return dst


def test_foreign_safetensors_and_bad_metadata_are_refused(tiny_checkpoint: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(CheckpointError, match="without splitleak metadata"):
        load_checkpoint(plain)
    broken = _rewrite(tiny_checkpoint, tmp_path / "b.safetensors", meta=lambda m: "{not json")
    with pytest.raises(CheckpointError, match="corrupt metadata"):
        load_checkpoint(broken)
    wrong_cut = _rewrite(tiny_checkpoint, tmp_path / "c.safetensors", meta=lambda m: json.dumps({**m, "cut": 3}))
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(wrong_cut)
    bad_arch = _rewrite(tiny_checkpoint, tmp_path / "d.safetensors", meta=lambda m: json.dumps({**m, "arch": "nope"}))
    with pytest.raises(CheckpointError, match="unknown architecture"):
        load_checkpoint(bad_arch)


def test_non_finite_weights_are_refused(tiny_checkpoint: Path, tmp_path: Path) -> None:
    def poison(weights):
        key = sorted(weights)[0]
        weights[key] = weights[key].clone()
        weights[key].view(-1)[0] = float("nan")
        return weights

    path = _rewrite(tiny_checkpoint, tmp_path / "nan.safetensors", tensors=poison)
    with pytest.raises(CheckpointError, match="non-finite"):
        load_checkpoint(path)


def test_a_header_length_ending_in_0x80_is_not_mistaken_for_a_pickle(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """A safetensors file starts with its header's length: low byte 0x80 is also a pickle's first
    byte. Checkpoints, model files and progress files are told apart by their whole layout."""
    from splitleak.models.foreign import SPLITLEAK, detect

    loaded = load_checkpoint(tiny_checkpoint)
    for pad in range(300):
        path = save_checkpoint(tmp_path / f"c{pad}.safetensors", loaded.model, dataclasses.replace(loaded.meta, splitleak_version="x" * pad))
        if path.read_bytes()[0] == 0x80:
            break
        path.unlink()
    else:
        pytest.fail("no padding gave a header length ending in 0x80")
    assert detect(path) == SPLITLEAK
    assert load_checkpoint(path).meta.splitleak_version == "x" * pad


def test_metadata_of_the_wrong_shape_is_one_error(tiny_checkpoint: Path, tmp_path: Path) -> None:
    for change, message in [({"cut": "1"}, "cut must be a whole number"), ({"defense": ["none"]}, "defense must be a table"),
                            ({"log": {"a": 1}}, "log must be a list"), ({"input_spec": {"shape": [1]}}, "input_spec")]:
        bad = _rewrite(tiny_checkpoint, tmp_path / "bad.safetensors", meta=lambda m: json.dumps({**m, **change}))
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(bad)
    lacking = _rewrite(tiny_checkpoint, tmp_path / "lacking.safetensors", meta=lambda m: json.dumps({k: v for k, v in m.items() if k != "arch"}))
    with pytest.raises(CheckpointError, match=r"lacks \['arch'\]"):
        load_checkpoint(lacking)


def test_unknown_metadata_keys_of_a_later_release_are_ignored(tiny_checkpoint: Path, tmp_path: Path) -> None:
    later = _rewrite(tiny_checkpoint, tmp_path / "later.safetensors", meta=lambda m: json.dumps({**m, "new_field": {"x": 1}}))
    assert load_checkpoint(later).meta == load_checkpoint(tiny_checkpoint).meta


def test_retraining_with_the_same_seed_gives_the_same_run_id(tiny_splits, tmp_path: Path) -> None:
    from splitleak.training import TrainConfig, train

    config = TrainConfig(cut=3, epochs=1, batch_size=128, seed=3)
    torch.set_num_threads(1)  # tiny models: two threads only wait on each other on a busy machine
    paths = []
    for name in ("a", "b"):
        trained = train(config, tiny_splits)
        log = tuple({**e, "seconds": e["seconds"] + len(name) * len(paths), "images_per_second": 1.0 + len(paths)} for e in trained.meta.log)
        paths.append(save_checkpoint(tmp_path / f"{name}.safetensors", trained.model, dataclasses.replace(trained.meta, log=log)))
    a, b = (load_checkpoint(p) for p in paths)
    assert a.file_sha256 != b.file_sha256  # the timings differ, so the files do
    assert a.sha256 == b.sha256  # the run id (and checkpoint_sha256) does not
    assert a.describe()["files"][0]["sha256"] == a.file_sha256


def test_the_run_id_follows_the_weights_and_the_identifying_metadata(tiny_checkpoint: Path, tmp_path: Path) -> None:
    base = load_checkpoint(tiny_checkpoint).sha256
    retimed = _rewrite(tiny_checkpoint, tmp_path / "t.safetensors", meta=lambda m: json.dumps({**m, "log": [{**e, "seconds": 1e9} for e in m["log"]]}))
    assert load_checkpoint(retimed).sha256 == base
    accuracy = _rewrite(tiny_checkpoint, tmp_path / "m.safetensors", meta=lambda m: json.dumps({**m, "test_accuracy": 0.123}))
    loss = _rewrite(tiny_checkpoint, tmp_path / "l.safetensors", meta=lambda m: json.dumps({**m, "log": [{**e, "loss": 9.0} for e in m["log"]]}))

    def nudged(weights):
        key = next(k for k, v in weights.items() if v.is_floating_point())
        return {**weights, key: weights[key] + 1e-6}

    weights = _rewrite(tiny_checkpoint, tmp_path / "w.safetensors", tensors=nudged)
    assert len({base, *(load_checkpoint(p).sha256 for p in (accuracy, loss, weights))}) == 4
