"""Image folders as data: labels from subfolders, a seeded disjoint aux / test split, value ranges."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from splitleak.data import DataError, InputSpec
from splitleak.image_folder import infer_shape, list_folder, load_image_folder
from tests._byo import write_png_folder

GREY = InputSpec(shape=(1, 16, 16))


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_png_folder(tmp_path_factory.mktemp("imgs") / "digits", n=40)


def test_labels_come_from_sorted_subfolders(labelled: Path) -> None:
    listing = list_folder(labelled)
    assert listing.classes == tuple(sorted(p.name for p in labelled.iterdir()))
    assert len(listing.files) == 40 and set(listing.labels) == set(range(len(listing.classes)))
    for path, label in zip(listing.files, listing.labels):
        assert path.parent.name == listing.classes[label]


def test_splits_are_disjoint_seeded_and_scaled(labelled: Path) -> None:
    splits = load_image_folder(labelled, GREY, split_seed=1, aux_pool=15)
    assert len(splits.aux) == 15 and len(splits.test) == 25 and len(splits.train) == 0
    assert set(splits.aux.indices.tolist()).isdisjoint(splits.test.indices.tolist())
    assert splits.test.indices.tolist() == sorted(splits.test.indices.tolist())
    again = load_image_folder(labelled, GREY, split_seed=1, aux_pool=15)
    assert torch.equal(again.aux.indices, splits.aux.indices) and torch.equal(again.test.x, splits.test.x)
    other = load_image_folder(labelled, GREY, split_seed=2, aux_pool=15)
    assert not torch.equal(other.aux.indices, splits.aux.indices)
    assert splits.labelled and splits.num_classes == len(list_folder(labelled).classes)
    assert splits.config.dataset == "image-folder" and splits.config.aux_size == 15
    assert 0.0 <= splits.test.x.min() and splits.test.x.max() <= 1.0 and splits.test.x.max() > 0.5
    wide = load_image_folder(labelled, InputSpec(shape=(1, 16, 16), value_range=(-1.0, 1.0)), split_seed=1, aux_pool=15)
    torch.testing.assert_close(wide.test.x, splits.test.x * 2 - 1)
    # the pixels are the PNG's, /255
    first = list_folder(labelled).files[int(splits.test.indices[0])]
    expected = np.asarray(Image.open(first), dtype=np.float32) / 255
    np.testing.assert_allclose(splits.test.x[0, 0].numpy(), expected)


def test_defaults_half_for_the_attacker(labelled: Path) -> None:
    splits = load_image_folder(labelled, GREY)
    assert len(splits.aux) == 20 and len(splits.test) == 20
    assert len(load_image_folder(labelled, GREY, aux_size=5, limit_test=7).aux) == 5


def test_unlabelled_rgb_and_16_bit_images(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (12, 14, 3), dtype=np.uint8)).save(flat / f"{i}.jpg" if i % 2 else flat / f"{i}.png")
    assert infer_shape(list_folder(flat)) == (3, 12, 14)
    splits = load_image_folder(flat, InputSpec(shape=(3, 12, 14)), aux_pool=2)
    assert not splits.labelled and splits.num_classes == 0 and (splits.test.y == -1).all()
    assert splits.test.x.shape == (4, 3, 12, 14)
    deep = tmp_path / "deep"
    deep.mkdir()
    for i in range(3):
        Image.fromarray(np.full((12, 12), 65535 * i // 2, dtype=np.uint16)).save(deep / f"{i}.png")
    assert infer_shape(list_folder(deep)) == (1, 12, 12)
    x = load_image_folder(deep, InputSpec(shape=(1, 12, 12)), aux_pool=0).test.x
    assert sorted(x.flatten(1).mean(1).tolist()) == pytest.approx([0.0, 32767 / 65535, 1.0])


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("mixed", "mixes images"),
        ("empty", "holds no images"),
        ("missing", "does not exist"),
        ("wrong size", "is 16x16 pixels but the input spec wants 20x20"),
        ("four channels", r"1 \(grey\) or 3 \(RGB\) channels"),
        ("too many classes", "num_classes=2 but"),
    ],
)
def test_bad_folders(tmp_path: Path, labelled: Path, layout: str, message: str) -> None:
    root, spec, kwargs = labelled, GREY, {}
    if layout == "mixed":
        root = write_png_folder(tmp_path / "mixed", n=12)
        Image.fromarray(np.zeros((16, 16), dtype=np.uint8)).save(root / "stray.png")
    elif layout == "empty":
        root = tmp_path / "empty"
        (root / "a").mkdir(parents=True)
        (root / "readme.txt").write_text("hi")
    elif layout == "missing":
        root = tmp_path / "nope"
    elif layout == "wrong size":
        spec = InputSpec(shape=(1, 20, 20))
    elif layout == "four channels":
        spec = InputSpec(shape=(4, 16, 16))
    else:
        kwargs = {"num_classes": 2}
    with pytest.raises(DataError, match=message):
        load_image_folder(root, spec, **kwargs)
