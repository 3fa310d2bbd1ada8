"""Tests for splitleak.data: registry, file discovery, IDX parsing, splits. Never hits the network."""

from __future__ import annotations

import dataclasses
import gzip
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from splitleak import data
from splitleak.data import (
    DATASETS,
    ArraySplit,
    DataConfig,
    DataError,
    InputSpec,
    load_splits,
    read_idx,
    resolve_defaults,
    resolve_roots,
)

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

# tiny synthetic IDX dataset: 40 train / 12 test images of 28x28
N_TRAIN, N_TEST = 40, 12


# --------------------------------------------------------------------------------------------
# helpers and fixtures
# --------------------------------------------------------------------------------------------


def idx_bytes(arr: np.ndarray) -> bytes:
    """Serialise ``arr`` (uint8) as an IDX file: magic 0x0000 08 ndim, big-endian dims, data."""
    assert arr.dtype == np.uint8
    header = bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    return header + arr.tobytes()


def write_idx(path: Path, arr: np.ndarray, gz: bool = True) -> Path:
    """Write a valid IDX file (gzipped when ``gz``); returns the path written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = idx_bytes(arr)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(blob, mtime=0))
    else:
        path.write_bytes(blob)
    return path


def synthetic_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train_x": rng.integers(0, 256, size=(N_TRAIN, 28, 28), dtype=np.uint8),
        "train_y": rng.integers(0, 10, size=N_TRAIN, dtype=np.uint8),
        "test_x": rng.integers(0, 256, size=(N_TEST, 28, 28), dtype=np.uint8),
        "test_y": rng.integers(0, 10, size=N_TEST, dtype=np.uint8),
    }


def write_idx_set(directory: Path, gz: bool = True, seed: int = 0) -> dict[str, np.ndarray]:
    arrays = synthetic_arrays(seed)
    for key, stem in data.IDX_FILES.items():
        write_idx(directory / stem, arrays[key], gz=gz)
    return arrays


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No user cache, no env var, Debian dir pointed at an empty tmp path."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv(data.ENV_DATA_DIR, raising=False)
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-debian")
    return tmp_path


def small_cfg(**kw: object) -> DataConfig:
    base: dict[str, object] = {"dataset": "fashion-mnist", "aux_pool": 10}
    base.update(kw)
    return DataConfig(**base)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# digits (bundled, offline)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> data.Splits:
    return load_splits(DataConfig(dataset="digits", split_seed=3))


def test_digits_shapes_and_ranges(digits: data.Splits) -> None:
    assert digits.sizes() == {"train": 1797 - 360 - 500, "aux": 500, "test": 360}
    assert digits.spec == InputSpec(shape=(1, 28, 28))
    assert digits.num_classes == 10 and digits.dataset == "digits"
    for part in (digits.train, digits.aux, digits.test):
        assert part.x.dtype == torch.float32 and part.x.shape[1:] == (1, 28, 28)
        assert part.y.dtype == torch.int64 and part.indices.dtype == torch.int64
        assert float(part.x.min()) == 0.0 and float(part.x.max()) == 1.0
        assert set(part.y.tolist()) == set(range(10))
    # stratified test part: every class 35..37 times
    counts = torch.bincount(digits.test.y, minlength=10)
    assert int(counts.min()) >= 35 and int(counts.max()) <= 37


def test_digits_resize_matches_bilinear_of_sklearn() -> None:
    from sklearn.datasets import load_digits

    raw = data.DATASETS["digits"].load(None, False)
    imgs = torch.from_numpy(load_digits().images.astype(np.float32) / 16)[:, None]
    ref = torch.nn.functional.interpolate(imgs, size=(28, 28), mode="bilinear", align_corners=False)
    all_x = np.concatenate([raw.train_x, raw.test_x])
    assert all_x.shape == (1797, 1, 28, 28)
    # train + test hold exactly the resized sklearn images (as a multiset, bit for bit)
    assert sorted(r.tobytes() for r in all_x) == sorted(r.tobytes() for r in ref.numpy())


def test_digits_deterministic(digits: data.Splits) -> None:
    again = load_splits(DataConfig(dataset="digits", split_seed=3))
    for name in ("train", "aux", "test"):
        a, b = getattr(digits, name), getattr(again, name)
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.indices, b.indices)


def test_config_is_resolved_and_reproduces(digits: data.Splits) -> None:
    assert digits.config == DataConfig(dataset="digits", split_seed=3, aux_pool=500, aux_size=500)
    again = load_splits(digits.config)
    assert torch.equal(again.train.indices, digits.train.indices)
    assert torch.equal(again.aux.indices, digits.aux.indices)


def test_digits_seeds_differ_but_test_is_fixed(digits: data.Splits) -> None:
    other = load_splits(DataConfig(dataset="digits", split_seed=4))
    assert not torch.equal(digits.train.indices, other.train.indices)
    assert not torch.equal(digits.aux.indices, other.aux.indices)
    assert torch.equal(digits.test.x, other.test.x) and torch.equal(digits.test.y, other.test.y)


def test_digits_disjoint(digits: data.Splits) -> None:
    tr, ax = set(digits.train.indices.tolist()), set(digits.aux.indices.tolist())
    assert len(tr) == len(digits.train) and len(ax) == len(digits.aux)
    assert not tr & ax
    assert tr | ax == set(range(1797 - 360))  # together they cover the training part
    # no test image appears (pixel-identical) in train or aux
    test_keys = {row.tobytes() for row in digits.test.x.numpy()}
    train_keys = {row.tobytes() for row in torch.cat([digits.train.x, digits.aux.x]).numpy()}
    assert not test_keys & train_keys


def test_aux_size_nests_and_leaves_train_unchanged() -> None:
    small = load_splits(DataConfig(dataset="digits", aux_size=50, limit_train=100))
    big = load_splits(DataConfig(dataset="digits", aux_size=200, limit_train=300))
    assert len(small.aux) == 50 and len(big.aux) == 200
    assert torch.equal(small.aux.indices, big.aux.indices[:50])
    assert torch.equal(small.train.indices, big.train.indices[:100])
    assert len(small.test) == 360


# --------------------------------------------------------------------------------------------
# Fashion-MNIST: Debian dir, torchvision layout, plain files, env var
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason=f"{DEBIAN_DIR} absent (apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_from_debian_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # ignore the user's cache
    monkeypatch.delenv(data.ENV_DATA_DIR, raising=False)
    s = load_splits(DataConfig(limit_test=500))
    assert s.sizes() == {"train": 50_000, "aux": 10_000, "test": 500}
    assert s.origin == str(DEBIAN_DIR)
    assert s.train.x.shape == (50_000, 1, 28, 28)
    assert float(s.train.x.min()) == 0.0 and float(s.train.x.max()) == 1.0
    assert torch.bincount(torch.cat([s.train.y, s.aux.y])).tolist() == [6000] * 10
    assert torch.equal(s.test.indices, torch.arange(500))
    assert not set(s.train.indices.tolist()) & set(s.aux.indices.tolist())


def _check_synthetic(s: data.Splits, arrays: dict[str, np.ndarray]) -> None:
    """Every split row equals the source row its ``indices`` point at, scaled by 1/255."""
    src_x = torch.from_numpy(arrays["train_x"]).float().div(255)[:, None]
    src_y = torch.from_numpy(arrays["train_y"]).long()
    for part in (s.train, s.aux):
        assert torch.equal(part.x, src_x[part.indices]) and torch.equal(part.y, src_y[part.indices])
    assert torch.equal(s.test.x, torch.from_numpy(arrays["test_x"]).float().div(255)[:, None])
    assert torch.equal(s.test.y, torch.from_numpy(arrays["test_y"]).long())


def test_torchvision_layout_gz(isolated: Path) -> None:
    root = isolated / "root"
    arrays = write_idx_set(root / "FashionMNIST" / "raw", gz=True)
    s = load_splits(small_cfg(data_dir=str(root)))
    assert s.sizes() == {"train": N_TRAIN - 10, "aux": 10, "test": N_TEST}
    assert s.origin == str(root / "FashionMNIST" / "raw")
    _check_synthetic(s, arrays)


def test_flat_layout_unzipped(isolated: Path) -> None:
    root = isolated / "flat"
    arrays = write_idx_set(root, gz=False, seed=1)
    s = load_splits(small_cfg(data_dir=str(root)))
    assert s.origin == str(root)
    _check_synthetic(s, arrays)


def test_mnist_uses_its_own_folder(isolated: Path) -> None:
    root = isolated / "root"
    write_idx_set(root / "FashionMNIST" / "raw", seed=0)
    arrays = write_idx_set(root / "MNIST" / "raw", seed=5)
    s = load_splits(DataConfig(dataset="mnist", data_dir=str(root), aux_pool=10))
    assert s.origin == str(root / "MNIST" / "raw")
    _check_synthetic(s, arrays)


def test_env_var_honoured(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = isolated / "env-root"
    arrays = write_idx_set(root / "FashionMNIST" / "raw", seed=2)
    monkeypatch.setenv(data.ENV_DATA_DIR, str(root))
    s = load_splits(small_cfg())
    assert s.origin == str(root / "FashionMNIST" / "raw")
    _check_synthetic(s, arrays)


def test_search_order(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit, env = isolated / "explicit", isolated / "env"
    cache = Path(str(isolated / "home")) / ".cache" / "splitleak" / "data"
    monkeypatch.setenv(data.ENV_DATA_DIR, str(env))
    assert resolve_roots(explicit) == [explicit, env, cache]
    assert resolve_roots(None) == [env, cache]
    assert resolve_roots(env) == [env, cache]  # duplicates dropped
    # data_dir wins over the env var, which wins over the cache, which wins over Debian;
    # within a root the torchvision layout (FashionMNIST/raw) wins over files in the root itself
    debian = isolated / "debian"
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", debian)
    for i, d in enumerate([debian, cache, env, env / "FashionMNIST" / "raw", explicit]):
        write_idx_set(d, seed=10 + i)
        assert load_splits(small_cfg(data_dir=str(explicit))).origin == str(d)


def test_incomplete_dir_is_skipped_and_reported(isolated: Path) -> None:
    root = isolated / "partial"
    write_idx(root / data.IDX_FILES["train_x"], synthetic_arrays()["train_x"])
    with pytest.raises(DataError, match=r"incomplete: missing .*t10k-labels-idx1-ubyte"):
        load_splits(small_cfg(data_dir=str(root)))


def test_download_uses_torchvision_into_first_writable_root(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Wiring only: a fake torchvision 'downloads' by writing synthetic files; no network."""
    calls: list[tuple[str, bool, bool]] = []
    arrays = synthetic_arrays(seed=7)

    class FakeFashionMNIST:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, train, download))
            raw = Path(root) / "FashionMNIST" / "raw"
            for key, stem in data.IDX_FILES.items():
                write_idx(raw / stem, arrays[key], gz=False)

    fake = types.SimpleNamespace(datasets=types.SimpleNamespace(FashionMNIST=FakeFashionMNIST))
    monkeypatch.setattr("splitleak._compat.import_torchvision", lambda: fake)
    target = isolated / "new-root"
    s = load_splits(small_cfg(data_dir=str(target), download=True))
    assert calls == [(str(target), True, True), (str(target), False, True)]
    _check_synthetic(s, arrays)


# --------------------------------------------------------------------------------------------
# IDX parsing errors
# --------------------------------------------------------------------------------------------


def test_read_idx_roundtrip_and_cache_invalidation(tmp_path: Path) -> None:
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    p = write_idx(tmp_path / "a-idx3-ubyte", arr)
    out = read_idx(p)
    assert np.array_equal(out, arr) and not out.flags.writeable
    arr2 = arr[:1] + 100
    write_idx(tmp_path / "a-idx3-ubyte", arr2)  # rewritten: size and mtime change
    assert np.array_equal(read_idx(p), arr2)


def test_read_idx_big_endian_int32(tmp_path: Path) -> None:
    arr = np.array([1, -2, 70000], dtype=">i4")
    p = tmp_path / "x-idx1"
    p.write_bytes(bytes([0, 0, 0x0C, 1]) + np.array([3], ">u4").tobytes() + arr.tobytes())
    assert read_idx(p).tolist() == [1, -2, 70000]


def _corruptions(arrays: dict[str, np.ndarray]) -> dict[str, bytes]:
    good = idx_bytes(arrays["train_x"])
    gz = gzip.compress(good, mtime=0)
    return {
        "bad magic": b"\x12\x34" + good[2:],
        "unknown type code": good[:2] + b"\x42" + good[3:],
        "truncated payload": good[:-100],
        "trailing bytes": good + b"\x00" * 7,
        "truncated header": good[:6],
        "truncated gzip": gz[: len(gz) // 2],
        "not gzip": b"this is not gzip data at all",
    }


@pytest.mark.parametrize("kind", list(_corruptions(synthetic_arrays())))
def test_corrupt_idx_names_the_file(isolated: Path, kind: str) -> None:
    root = isolated / "root"
    arrays = write_idx_set(root)
    bad = root / (data.IDX_FILES["train_x"] + ".gz")
    blob = _corruptions(arrays)[kind]
    bad.write_bytes(blob if kind in ("truncated gzip", "not gzip") else gzip.compress(blob, mtime=0))
    with pytest.raises(DataError, match="IDX file") as info:
        load_splits(small_cfg(data_dir=str(root)))
    assert str(bad) in str(info.value)
    expected_reason = {
        "truncated gzip": "compressed stream ends early",
        "truncated payload": "need 31360 data bytes, found 31260",
        "trailing bytes": "need 31360 data bytes, found 31367",
        "bad magic": "bad magic number 0x1234",
    }.get(kind, "")
    assert expected_reason in str(info.value)


def test_label_count_mismatch(isolated: Path) -> None:
    root = isolated / "root"
    arrays = write_idx_set(root)
    write_idx(root / data.IDX_FILES["test_y"], arrays["test_y"][:-1])
    with pytest.raises(DataError, match=r"holds 12 images but .*t10k-labels.* holds 11 labels"):
        load_splits(small_cfg(data_dir=str(root)))


def test_wrong_image_dims(isolated: Path) -> None:
    root = isolated / "root"
    write_idx_set(root)
    write_idx(root / data.IDX_FILES["test_x"], np.zeros((N_TEST, 32, 32), np.uint8))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: expected uint8 images \[N, 28, 28\]"):
        load_splits(small_cfg(data_dir=str(root)))


def test_labels_out_of_range(isolated: Path) -> None:
    root = isolated / "root"
    arrays = write_idx_set(root)
    write_idx(root / data.IDX_FILES["train_y"], np.full_like(arrays["train_y"], 10))
    with pytest.raises(DataError, match=r"labels must lie in \[0, 10\)"):
        load_splits(small_cfg(data_dir=str(root)))


# --------------------------------------------------------------------------------------------
# missing datasets, unknown names, bad limits
# --------------------------------------------------------------------------------------------


def test_missing_fashion_mnist_explains_where_and_how(isolated: Path) -> None:
    explicit = isolated / "nowhere"
    with pytest.raises(DataError) as info:
        load_splits(DataConfig(data_dir=str(explicit)))
    msg = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "--data-dir" in msg and "--download" in msg
    for looked in (explicit, explicit / "FashionMNIST" / "raw", isolated / "no-debian",
                   isolated / "home" / ".cache" / "splitleak" / "data"):
        assert str(looked) in msg
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_missing_other_datasets(isolated: Path, name: str) -> None:
    before = "torchvision" in sys.modules
    with pytest.raises(DataError, match=rf"dataset '{name}' not found(.|\n)*--data-dir"):
        load_splits(DataConfig(dataset=name))
    assert ("torchvision" in sys.modules) == before  # nothing to try, so torchvision stays unimported


def test_unknown_dataset_lists_names() -> None:
    with pytest.raises(DataError, match="unknown dataset 'imagenet'; valid names: cifar10, digits, fashion-mnist, image-folder, mnist, photo-patches"):
        load_splits(DataConfig(dataset="imagenet"))
    assert set(DATASETS) == {"cifar10", "digits", "fashion-mnist", "image-folder", "mnist", "photo-patches"}


@pytest.mark.parametrize(
    ("kw", "pattern"),
    [
        ({"limit_train": 0}, "limit_train must be >= 1"),
        ({"limit_test": -3}, "limit_test must be >= 1"),
        ({"aux_pool": -1}, "aux_pool must be >= 0"),
        ({"aux_pool": 5, "aux_size": 6}, r"aux_size \(6\) cannot exceed aux_pool \(5\)"),
        ({"split_seed": "1"}, "split_seed must be an int"),
        ({"limit_train": True}, "limit_train must be an int"),
        ({"download": "yes"}, "download must be a bool"),
    ],
)
def test_bad_config_values(kw: dict[str, object], pattern: str) -> None:
    with pytest.raises(DataError, match=pattern):
        DataConfig(dataset="digits", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "pattern"),
    [
        ({"aux_pool": 1437}, r"aux_pool=1437 leaves no training images.*1437 images"),
        ({"aux_size": 501}, "aux_size=501 is larger than the 500 images available"),
        ({"limit_train": 938}, "limit_train=938 is larger than the 937 images available"),
        ({"limit_test": 361}, "limit_test=361 is larger than the 360 images available"),
    ],
)
def test_limits_beyond_available(kw: dict[str, object], pattern: str) -> None:
    with pytest.raises(DataError, match=pattern):
        load_splits(DataConfig(dataset="digits", **kw))  # type: ignore[arg-type]


def test_limits_at_boundary_work() -> None:
    s = load_splits(DataConfig(dataset="digits", aux_pool=1436, limit_test=360))
    assert s.sizes() == {"train": 1, "aux": 1436, "test": 360}
    none = load_splits(DataConfig(dataset="digits", aux_pool=0))  # attackers without data
    assert none.sizes() == {"train": 1437, "aux": 0, "test": 360} and none.aux.x.shape == (0, 1, 28, 28)


# --------------------------------------------------------------------------------------------
# config / spec / ArraySplit
# --------------------------------------------------------------------------------------------


def test_dataconfig_dict_roundtrip_and_unknown_keys() -> None:
    cfg = DataConfig(dataset="digits", split_seed=9, aux_pool=100, aux_size=20, limit_test=5)
    assert DataConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert DataConfig.from_dict({}) == DataConfig()
    with pytest.raises(DataError, match=r"unknown DataConfig key\(s\) \['auxpool'\]"):
        DataConfig.from_dict({"dataset": "digits", "auxpool": 3})


def test_dataconfig_accepts_pathlike(tmp_path: Path) -> None:
    assert DataConfig(data_dir=tmp_path).data_dir == str(tmp_path)  # type: ignore[arg-type]


def test_inputspec_roundtrip_and_validation() -> None:
    spec = InputSpec(shape=(3, 32, 32), value_range=(0.0, 1.0), mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.25))
    d = json.loads(json.dumps(spec.to_dict()))
    assert isinstance(d["shape"], list)
    back = InputSpec.from_dict(d)
    assert back == spec and isinstance(back.shape, tuple) and isinstance(back.mean, tuple)
    assert InputSpec.from_dict({"shape": [1, 28, 28]}) == InputSpec(shape=(1, 28, 28))
    with pytest.raises(DataError, match="unknown InputSpec key"):
        InputSpec.from_dict({"shape": [1, 28, 28], "channels": 1})
    with pytest.raises(DataError, match="needs 3 values"):
        InputSpec(shape=(3, 32, 32), mean=(0.5,), std=(0.2,))
    with pytest.raises(DataError, match="three positive ints"):
        InputSpec(shape=(1, 0, 28))
    with pytest.raises(DataError, match="low < high"):
        InputSpec(shape=(1, 28, 28), value_range=(1.0, 0.0))
    with pytest.raises(DataError, match="given together"):
        InputSpec(shape=(1, 28, 28), mean=(0.5,))


def test_arraysplit_head_and_validation() -> None:
    part = ArraySplit(x=torch.rand(5, 1, 4, 4), y=torch.arange(5), indices=torch.arange(10, 15))
    assert len(part) == 5
    h = part.head(2)
    assert len(h) == 2 and h.indices.tolist() == [10, 11] and torch.equal(h.x, part.x[:2])
    assert len(part.head(0)) == 0 and len(part.head(5)) == 5
    with pytest.raises(ValueError, match="more samples than the split holds"):
        part.head(6)
    with pytest.raises(ValueError):
        part.head(-1)
    with pytest.raises(DataError, match="float32"):
        ArraySplit(x=torch.rand(5, 1, 4, 4).double(), y=torch.arange(5), indices=torch.arange(5))
    with pytest.raises(DataError, match="has 4 rows"):
        ArraySplit(x=torch.rand(5, 1, 4, 4), y=torch.arange(4), indices=torch.arange(5))


def test_resolved_fills_the_split_defaults_once() -> None:
    """The one place aux_pool / aux_size defaults are resolved (load_splits, the sweep and its cost model use it)."""
    from splitleak.data import DataConfig

    assert resolve_defaults(DataConfig(dataset="digits")) == DataConfig(dataset="digits", aux_pool=500, aux_size=500)
    assert resolve_defaults(DataConfig(dataset="digits", aux_pool=40, aux_size=10)) == DataConfig(dataset="digits", aux_pool=40, aux_size=10)
    with pytest.raises(DataError, match="aux_size=501 is larger than the 500 images available"):
        resolve_defaults(DataConfig(dataset="digits", aux_size=501))


# --------------------------------------------------------------------------------------------
# memory layout: every loader hands out standard row-major tensors
# --------------------------------------------------------------------------------------------


def _assert_standard(s: data.Splits) -> None:
    """Row-major strides, and a convolution's output can be `view`ed flat (He et al.'s heads)."""
    for part in (s.train, s.aux, s.test):
        x = part.x
        assert x.stride() == torch.empty(x.shape).stride(), x.stride()
        if len(x):
            z = torch.nn.Conv2d(x.shape[1], 2, 3)(x[:2])
            z.view(len(z), -1)  # raises for channels-last activations


def test_idx_datasets_give_standard_strides(isolated: Path) -> None:
    """Grey [N, H, W] IDX images stacked to [N, 1, H, W] came out channels-last (784, 1, 28, 1)."""
    root = isolated / "root"
    write_idx_set(root / "FashionMNIST" / "raw")
    write_idx_set(root / "MNIST" / "raw", seed=2)
    _assert_standard(load_splits(small_cfg(data_dir=str(root))))
    _assert_standard(load_splits(small_cfg(dataset="mnist", data_dir=str(root))))


def test_digits_and_image_folders_give_standard_strides(digits: data.Splits, tmp_path: Path) -> None:
    from splitleak.image_folder import load_image_folder
    from tests._byo import write_png_folder

    _assert_standard(digits)
    _assert_standard(load_image_folder(write_png_folder(tmp_path / "imgs", n=12), InputSpec(shape=(1, 16, 16))))


def test_arraysplit_copies_only_nonstandard_layouts() -> None:
    x = torch.rand(4, 1, 5, 5)
    assert data.standard_layout(x) is x
    channels_last = x.as_strided(x.shape, (25, 1, 5, 1))
    part = ArraySplit(x=channels_last, y=torch.arange(4), indices=torch.arange(4))
    assert part.x.stride() == (25, 25, 5, 1) and torch.equal(part.x, channels_last)


def test_a_default_test_limit_adapts_to_the_data_an_explicit_one_is_refused() -> None:
    """cap_test: the limit is a default (evaluate's 1000), so digits' 360 test images are all used."""
    cfg = DataConfig(dataset="digits", aux_pool=200, limit_train=10, limit_test=1000)
    with pytest.raises(DataError, match="limit_test=1000 is larger than the 360 images available"):
        load_splits(cfg)
    s = load_splits(cfg, cap_test=True)
    assert len(s.test) == 360 and s.config.limit_test == 360
    assert len(load_splits(dataclasses.replace(cfg, limit_test=50), cap_test=True).test) == 50
