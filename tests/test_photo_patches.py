"""photo-patches: real colour patches of the bundled photographs (splitleak.photo_patches)."""

from __future__ import annotations

import numpy as np
import torch

from splitleak import photo_patches as pp
from splitleak.data import DataConfig, load_splits


def test_shapes_labels_and_balance() -> None:
    train_x, train_y, test_x, test_y = pp.photo_patches()
    assert train_x.shape == (pp.NUM_CLASSES * pp.TRAIN_PER_PHOTO, 3, 32, 32) and train_x.dtype == np.uint8
    assert test_x.shape == (pp.NUM_CLASSES * pp.TEST_PER_PHOTO, 3, 32, 32) and test_x.dtype == np.uint8
    assert np.bincount(train_y).tolist() == [pp.TRAIN_PER_PHOTO] * pp.NUM_CLASSES
    # any prefix of the test part is balanced: the photographs are interleaved
    assert test_y[:20].tolist() == list(range(10)) * 2
    assert not train_x.flags.writeable  # the cached arrays cannot be changed by a caller


def test_patches_are_textured_colour_and_distinct() -> None:
    train_x, _, test_x, _ = pp.photo_patches()
    for x in (train_x, test_x):
        flat = x.reshape(len(x), -1).astype(np.float64)
        assert flat.std(axis=1).min() >= pp.MIN_STD
        assert len(np.unique(flat[:500], axis=0)) == 500
    channels = test_x[:200].astype(np.float64)
    assert np.abs(channels[:, 0] - channels[:, 2]).mean() > 5  # colour, not grey in three channels


def test_no_test_patch_appears_in_training() -> None:
    train_x, _, test_x, _ = pp.photo_patches()
    seen = {row.tobytes() for row in train_x.reshape(len(train_x), -1)}
    assert not any(row.tobytes() in seen for row in test_x[:2000].reshape(2000, -1))


def test_patches_are_the_photographs_pixels() -> None:
    """A patch drawn from a photograph is a window of it, on the stride grid, in its region."""
    image = pp._read(*pp.PHOTOS[1])
    split = int(image.shape[1] * pp.TRAIN_FRACTION)
    patches = pp._patches(image[:, split:], 3, np.random.default_rng(0))
    windows = np.lib.stride_tricks.sliding_window_view(image[:, split:], (32, 32), axis=(0, 1))
    for patch in patches:
        hits = np.argwhere((windows == patch).all(axis=(2, 3, 4)))
        assert len(hits) and all(r % pp.STRIDE == 0 and c % pp.STRIDE == 0 for r, c in hits)


def test_registered_and_split_like_any_dataset() -> None:
    splits = load_splits(DataConfig(dataset="photo-patches", limit_train=100, aux_size=50, limit_test=30))
    assert splits.spec.shape == (3, 32, 32) and splits.num_classes == 10
    assert splits.sizes() == {"train": 100, "aux": 50, "test": 30}
    assert splits.config.aux_pool == 5000
    assert torch.equal(splits.test.y[:10], torch.arange(10))
    assert 0.0 <= float(splits.train.x.min()) and float(splits.train.x.max()) <= 1.0
