"""photo-patches: 32x32 colour patches of the ten photographs bundled with scikit-image and
scikit-learn, labelled by the photograph they come from; real colour data that works offline.

Each photograph's left three quarters (by columns) give the training patches, its right quarter
the test patches, so no test pixel was seen in training. Patches sit on a grid of stride
``STRIDE``; flat ones (pixel standard deviation below ``MIN_STD``) are left out; each photograph gives ``TRAIN_PER_PHOTO`` training and ``TEST_PER_PHOTO`` test
patches, drawn from its grid with the fixed ``ORDER_SEED``. The test part interleaves the
photographs and spreads each one's patches over its region, so any prefix (``limit_test``) is
balanced and spatially spread. Neighbouring grid positions overlap: the patches of one
photograph are not independent samples.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

PATCH = 32
STRIDE = 4
TRAIN_PER_PHOTO = 2000
TEST_PER_PHOTO = 1000
TRAIN_FRACTION = 0.75  # of each photograph's columns
MIN_STD = 8.0  # uint8 levels: flat patches (sky, black background) are left out
ORDER_SEED = 20_261_130

# (where, name): skimage's bundled files are read from its data folder without its fetcher;
# scikit-learn's two sample images come from load_sample_images()
PHOTOS = (
    ("skimage", "astronaut.png"),
    ("skimage", "chelsea.png"),
    ("skimage", "coffee.png"),
    ("skimage", "hubble_deep_field.jpg"),
    ("skimage", "ihc.png"),
    ("skimage", "motorcycle_left.png"),
    ("skimage", "retina.jpg"),
    ("skimage", "rocket.jpg"),
    ("sklearn", "china.jpg"),
    ("sklearn", "flower.jpg"),
)
NUM_CLASSES = len(PHOTOS)


def _read(where: str, name: str) -> np.ndarray:
    """One photograph as uint8 [H, W, 3]."""
    if where == "sklearn":
        from sklearn.datasets import load_sample_image

        return np.asarray(load_sample_image(name), dtype=np.uint8)
    import skimage
    from skimage import io

    return np.asarray(io.imread(Path(skimage.__file__).parent / "data" / name), dtype=np.uint8)[..., :3]


def _patches(image: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` distinct PATCH x PATCH patches of `image` [H, W, 3] from its stride grid, among
    those that are not flat (pixel standard deviation >= MIN_STD), in the order `rng` draws
    them, as uint8 [count, 3, PATCH, PATCH]."""
    windows = np.lib.stride_tricks.sliding_window_view(image, (PATCH, PATCH), axis=(0, 1))[::STRIDE, ::STRIDE]  # [R, C, 3, P, P]
    n = 3 * PATCH * PATCH
    mean, mean_sq = (_window_sums(image.astype(np.float64) ** power)[: windows.shape[0], : windows.shape[1]] / n for power in (1, 2))
    textured = np.flatnonzero(np.sqrt(np.maximum(mean_sq - mean**2, 0.0)) >= MIN_STD)
    if len(textured) < count:
        raise RuntimeError(f"a {image.shape[:2]} region holds {len(textured)} textured grid patches, fewer than {count}")
    picks = rng.choice(textured, size=count, replace=False)
    rows, cols = np.divmod(picks, windows.shape[1])
    return np.ascontiguousarray(windows[rows, cols])


def _window_sums(values: np.ndarray) -> np.ndarray:
    """Sums of `values` [H, W, 3] over every PATCH x PATCH window on the STRIDE grid (all channels)."""
    table = np.pad(values.sum(axis=2).cumsum(axis=0).cumsum(axis=1), ((1, 0), (1, 0)))
    sums = table[PATCH:, PATCH:] - table[:-PATCH, PATCH:] - table[PATCH:, :-PATCH] + table[:-PATCH, :-PATCH]
    return sums[::STRIDE, ::STRIDE]


@functools.cache
def photo_patches() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_x, train_y, test_x, test_y): uint8 [N, 3, 32, 32] and int64 labels; the same
    arrays on every machine with the same bundled files."""
    rng = np.random.default_rng(ORDER_SEED)
    train, test = [], []
    for where, name in PHOTOS:
        image = _read(where, name)
        split = int(image.shape[1] * TRAIN_FRACTION)
        train.append(_patches(image[:, :split], TRAIN_PER_PHOTO, rng))
        test.append(_patches(image[:, split:], TEST_PER_PHOTO, rng))
    train_x = np.concatenate(train)
    train_y = np.repeat(np.arange(NUM_CLASSES, dtype=np.int64), TRAIN_PER_PHOTO)
    test_x = np.stack(test, axis=1).reshape(-1, 3, PATCH, PATCH)  # photo-interleaved: patch k of every photo, then k + 1
    test_y = np.tile(np.arange(NUM_CLASSES, dtype=np.int64), TEST_PER_PHOTO)
    for array in (train_x, train_y, test_x, test_y):
        array.setflags(write=False)
    return train_x, train_y, test_x, test_y
