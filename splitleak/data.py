"""Datasets and the train / aux (attacker) / test splits.

A dataset is a :class:`DatasetSource` in the :data:`DATASETS` registry: it knows its input
shape and how to load its raw training and test parts (numpy arrays). :func:`load_splits` turns
a :class:`DataConfig` into three disjoint, deterministic :class:`ArraySplit` parts:

* ``aux``   -- images the attacker owns (drawn from the source's training part),
* ``train`` -- the rest of the source's training part, used to train the split model,
* ``test``  -- the source's test part, the images whose activations are attacked.

Files are looked for in the roots returned by :func:`resolve_roots` (explicit ``data_dir``,
``$SPLITLEAK_DATA_DIR``, ``~/.cache/splitleak/data``; Fashion-MNIST also Debian's
``/usr/share/datasets/fashion-mnist``). Nothing is downloaded unless ``download=True``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from splitleak import cifar
from splitleak.dataspec import (
    LOCATION_FIELDS,
    DataConfig,
    DataError,
    InputSpec,
    _is_int,
    without_locations,
)
from splitleak.registry import Registry

log = logging.getLogger(__name__)

ENV_DATA_DIR = "SPLITLEAK_DATA_DIR"
"""Environment variable naming an extra data root (searched after an explicit ``data_dir``)."""

DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package installs the four IDX ``.gz`` files."""

DIGITS_TEST_SIZE = 360
DIGITS_TEST_SEED = 20_200_817
"""Fixed seed for carving digits' test part: the same test images for every ``split_seed``."""

IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}



def standard_layout(t: torch.Tensor) -> torch.Tensor:
    """`t` with row-major strides (a copy only when needed). A tensor with a size-1 dimension
    can be "contiguous" yet channels-last (grey [N, 1, H, W] stacked from [N, H, W]): convolutions
    then return channels-last activations and a user's ``z.view(-1, k)`` fails."""
    if t.stride() == torch.empty(t.shape, device="meta").stride():
        return t
    return t.clone(memory_format=torch.contiguous_format)


@dataclass(frozen=True, eq=False)
class ArraySplit:
    """One part of a dataset: images ``x`` float32 [N, C, H, W] in [0, 1] with standard row-major
    strides (see :func:`standard_layout`), labels ``y`` int64 [N], and ``indices`` int64 [N],
    the rows of the source part each image came from."""

    x: torch.Tensor
    y: torch.Tensor
    indices: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.dtype != torch.float32 or self.x.ndim != 4:
            raise DataError(f"ArraySplit.x must be float32 [N, C, H, W], got {self.x.dtype} {tuple(self.x.shape)}")
        for name in ("y", "indices"):
            t = getattr(self, name)
            if t.dtype != torch.int64 or t.ndim != 1:
                raise DataError(f"ArraySplit.{name} must be int64 [N], got {t.dtype} {tuple(t.shape)}")
            if len(t) != len(self.x):
                raise DataError(f"ArraySplit.{name} has {len(t)} rows but x has {len(self.x)}")
        object.__setattr__(self, "x", standard_layout(self.x))

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def head(self, n: int) -> ArraySplit:
        """The first ``n`` samples (views sharing storage). Raises ValueError if n > len."""
        if not _is_int(n) or n < 0:
            raise ValueError(f"head(n) needs a non-negative int, got {n!r}")
        if n > len(self):
            raise ValueError(f"head({n}) asked for more samples than the split holds ({len(self)})")
        return ArraySplit(self.x[:n], self.y[:n], self.indices[:n])


@dataclass(frozen=True)
class RawData:
    """A dataset's source parts as numpy arrays: images [N, C, H, W] (uint8 0..255 or float32
    in [0, 1]) and integer labels [N]. ``origin`` says where they were read from."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    origin: str = ""
    num_classes: int | None = None  # set by sources whose classes come from the files (image folders)

    def __post_init__(self) -> None:
        for part in ("train", "test"):
            x, y = getattr(self, f"{part}_x"), getattr(self, f"{part}_y")
            if x.ndim != 4:
                raise DataError(f"RawData.{part}_x must be [N, C, H, W], got shape {x.shape}")
            if x.dtype != np.uint8 and x.dtype != np.float32:
                raise DataError(f"RawData.{part}_x must be uint8 or float32, got {x.dtype}")
            if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
                raise DataError(f"RawData.{part}_y must be integer [N], got {y.dtype} {y.shape}")
            if len(x) != len(y):
                raise DataError(f"RawData {part} part: {len(x)} images but {len(y)} labels")
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise DataError(f"train and test image shapes differ: {self.train_x.shape[1:]} vs {self.test_x.shape[1:]}")


@dataclass(frozen=True)
class DatasetSource:
    """A registry entry: static facts about a dataset and a ``load(root, download)`` callable.

    ``root`` is the user's explicit data directory (or None); the loader searches it and the
    default roots itself. ``how_to_get`` is shown when the files cannot be found. A source whose
    ``shape`` / ``num_classes`` are None learns them from the files (``RawData``).
    """

    name: str
    shape: tuple[int, int, int] | None  # None: read from the files (an image folder)
    num_classes: int | None  # None: read from the files
    default_aux_pool: int | float  # a float in (0, 1): that fraction of the source's training part
    description: str
    load: Callable[[Path | None, bool], RawData] = field(repr=False)
    how_to_get: str = ""


@dataclass(frozen=True, eq=False)
class Splits:
    """The three disjoint parts plus what a model needs to know about the input.

    ``config`` is the resolved config (dataset defaults for ``aux_pool`` / ``aux_size`` filled
    in), so ``load_splits(splits.config)`` reproduces the same splits (registry datasets; an
    image folder is read again with :func:`splitleak.image_folder.load_image_folder`).
    ``labelled`` is False when the images carry no labels (``y`` is then all -1 and
    ``num_classes`` 0): accuracy, semantic leakage and label-using attacks are skipped.
    """

    train: ArraySplit
    aux: ArraySplit
    test: ArraySplit
    spec: InputSpec
    num_classes: int
    dataset: str
    config: DataConfig
    origin: str = ""
    labelled: bool = True  # False for an image folder without class subfolders: ``y`` is meaningless

    def sizes(self) -> dict[str, int]:
        """Number of samples per part, e.g. for provenance."""
        return {"train": len(self.train), "aux": len(self.aux), "test": len(self.test)}


# --------------------------------------------------------------------------------------------
# Where to look
# --------------------------------------------------------------------------------------------


def resolve_roots(data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Data roots in search order: ``data_dir`` (if given), ``$SPLITLEAK_DATA_DIR`` (if set),
    ``~/.cache/splitleak/data``. Duplicates are dropped; paths need not exist."""
    candidates: list[Path] = []
    if data_dir is not None and os.fspath(data_dir) != "":
        candidates.append(Path(data_dir).expanduser())
    env = os.environ.get(ENV_DATA_DIR, "")
    if env:
        candidates.append(Path(env).expanduser())
    candidates.append(Path.home() / ".cache" / "splitleak" / "data")
    roots: list[Path] = []
    for p in candidates:
        p = p.absolute()
        if p not in roots:
            roots.append(p)
    return roots


def _first_writable_root(roots: Sequence[Path]) -> Path:
    """The first root that exists (or can be created) and is writable, for downloads."""
    problems = []
    for root in roots:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            problems.append(f"{root}: {err}")
            continue
        if os.access(root, os.W_OK):
            return root
        problems.append(f"{root}: not writable")
    raise DataError("no writable data root to download into:\n  " + "\n  ".join(problems))


# --------------------------------------------------------------------------------------------
# IDX files (MNIST, Fashion-MNIST)
# --------------------------------------------------------------------------------------------

_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Parse an IDX file (``.gz`` or plain) into a read-only numpy array.

    Raises :class:`DataError` naming the file if it is unreadable, corrupt or truncated.
    Results are cached per (path, mtime, size), so a changed file is read again.
    """
    p = Path(path)
    try:
        st = p.stat()
    except OSError as err:
        raise DataError(f"cannot read IDX file {p}: {err}") from err
    return _read_idx_cached(str(p), st.st_mtime_ns, st.st_size)


def _gunzip(blob: bytes) -> bytes:
    """Decompress (possibly multi-member) gzip data; zlib directly is ~2x faster than gzip."""
    members = []
    while blob:
        d = zlib.decompressobj(wbits=31)
        members.append(d.decompress(blob))
        if not d.eof:
            raise EOFError("compressed stream ends early (truncated download?)")
        blob = d.unused_data.lstrip(b"\x00")  # tolerate zero padding between members
    return b"".join(members)


@functools.lru_cache(maxsize=8)
def _read_idx_cached(path: str, mtime_ns: int, size: int) -> np.ndarray:
    del mtime_ns, size  # cache key only
    try:
        with open(path, "rb") as fh:
            blob = fh.read()
        if path.endswith(".gz"):
            blob = _gunzip(blob)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"corrupt or truncated IDX file {path}: {err}") from err
    if len(blob) < 4:
        raise DataError(f"corrupt IDX file {path}: only {len(blob)} bytes")
    zero, code, ndim = blob[0:2], blob[2], blob[3]
    if zero != b"\x00\x00" or code not in _IDX_DTYPES or ndim == 0:
        raise DataError(
            f"corrupt IDX file {path}: bad magic number 0x{blob[:4].hex()} "
            "(expected 0x0000 + a type code + the number of dimensions)"
        )
    header = 4 + 4 * ndim
    if len(blob) < header:
        raise DataError(f"truncated IDX file {path}: header needs {header} bytes, file has {len(blob)}")
    dims = tuple(int(d) for d in np.frombuffer(blob, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(blob) - header != expected:
        raise DataError(
            f"truncated or corrupt IDX file {path}: dims {dims} need {expected} data bytes, "
            f"found {len(blob) - header}"
        )
    arr = np.frombuffer(blob, dtype=dtype, offset=header).reshape(dims)
    if not dtype.isnative and dtype.itemsize > 1:
        arr = arr.astype(dtype.newbyteorder("="))
    arr.setflags(write=False)
    return arr


def _find_file(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        p = directory / name
        if p.is_file():
            return p
    return None


def _idx_candidate_dirs(roots: Sequence[Path], folder: str) -> list[Path]:
    dirs: list[Path] = []
    for root in roots:
        for d in (root / folder / "raw", root):
            if d not in dirs:
                dirs.append(d)
    return dirs


def _find_idx_dir(dirs: Sequence[Path]) -> tuple[dict[str, Path] | None, list[str]]:
    """First directory holding all four IDX files, plus notes on the ones that did not."""
    notes = []
    for d in dirs:
        found = {key: _find_file(d, stem) for key, stem in IDX_FILES.items()}
        if all(found.values()):
            return {k: v for k, v in found.items() if v is not None}, notes
        have = [k for k, v in found.items() if v is not None]
        if not d.is_dir():
            notes.append(f"{d} (no such directory)")
        elif have:
            missing = [IDX_FILES[k] for k, v in found.items() if v is None]
            notes.append(f"{d} (incomplete: missing {', '.join(missing)}[.gz])")
        else:
            notes.append(f"{d} (no IDX files)")
    return None, notes


def _parse_idx_set(files: Mapping[str, Path], shape: tuple[int, int, int], num_classes: int) -> RawData:
    arrays = {key: read_idx(path) for key, path in files.items()}
    parts: dict[str, np.ndarray] = {}
    for part in ("train", "test"):
        x, y = arrays[f"{part}_x"], arrays[f"{part}_y"]
        xf, yf = files[f"{part}_x"], files[f"{part}_y"]
        if x.ndim != 3 or x.shape[1:] != shape[1:] or x.dtype != np.uint8:
            raise DataError(f"{xf}: expected uint8 images [N, {shape[1]}, {shape[2]}], got {x.dtype} {x.shape}")
        if y.ndim != 1:
            raise DataError(f"{yf}: expected a 1-d label file, got shape {y.shape}")
        if len(x) != len(y):
            raise DataError(f"{xf} holds {len(x)} images but {yf} holds {len(y)} labels")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise DataError(f"{yf}: labels must lie in [0, {num_classes}), got [{y.min()}, {y.max()}]")
        parts[f"{part}_x"] = x[:, None]  # -> [N, 1, H, W], still a read-only view
        parts[f"{part}_y"] = y
    return RawData(**parts, origin=str(files["train_x"].parent))


def _load_idx_dataset(
    root: Path | None,
    download: bool,
    *,
    name: str,
    folder: str,
    tv_class: str,
    shape: tuple[int, int, int],
    num_classes: int,
    extra_roots: Sequence[Path],
    how_to_get: str,
) -> RawData:
    roots = resolve_roots(root)
    dirs = _idx_candidate_dirs(roots, folder) + [d for d in extra_roots if d not in roots]
    files, notes = _find_idx_dir(dirs)
    if files is None and download:
        target = _first_writable_root(roots)
        log.info("%s not found locally; downloading with torchvision into %s", name, target)
        from splitleak._compat import import_torchvision

        tv = import_torchvision()
        dataset_cls = getattr(tv.datasets, tv_class)
        try:
            for train in (True, False):
                dataset_cls(root=str(target), train=train, download=True)
        except (OSError, RuntimeError) as err:  # offline: torchvision tries each mirror, then raises RuntimeError
            raise DataError(f"downloading {name} into {target} failed ({' '.join(str(err).split())[:300]})") from None
        files, more = _find_idx_dir([target / folder / "raw"])
        notes += more
    if files is None:
        raise DataError(
            f"dataset {name!r} not found. Looked in:\n  "
            + "\n  ".join(notes)
            + f"\nfor the files {', '.join(IDX_FILES.values())} (plain or .gz).\n{how_to_get}"
        )
    t0 = time.perf_counter()
    raw = _parse_idx_set(files, shape, num_classes)
    log.info("loaded %s from %s in %.2f s", name, raw.origin, time.perf_counter() - t0)
    return raw


def _load_fashion_mnist(root: Path | None, download: bool) -> RawData:
    """Fashion-MNIST from IDX files; Debian's directory is looked up at call time."""
    return _load_idx_dataset(
        root, download, name="fashion-mnist", folder="FashionMNIST", tv_class="FashionMNIST",
        shape=(1, 28, 28), num_classes=10, extra_roots=(DEBIAN_FASHION_MNIST_DIR,),
        how_to_get=_HOW_TO_GET_FASHION,
    )


def _load_mnist(root: Path | None, download: bool) -> RawData:
    """MNIST from IDX files (no Debian package: get it with --download or --data-dir)."""
    return _load_idx_dataset(
        root, download, name="mnist", folder="MNIST", tv_class="MNIST",
        shape=(1, 28, 28), num_classes=10, extra_roots=(), how_to_get=_HOW_TO_GET_MNIST,
    )


# --------------------------------------------------------------------------------------------
# CIFAR-10 (restricted unpickler, splitleak.cifar) and digits (bundled with scikit-learn)
# --------------------------------------------------------------------------------------------

def _download_cifar10(root: Path) -> None:
    """Fetch and unpack cifar-10-python.tar.gz into `root` with torchvision's downloader (checked
    against torchvision's MD5); the batches are then read by splitleak.cifar, never unpickled."""
    from splitleak._compat import import_torchvision

    tv = import_torchvision()
    known = tv.datasets.CIFAR10
    tv.datasets.utils.download_and_extract_archive(known.url, str(root), filename=known.filename, md5=known.tgz_md5)


def _load_cifar10(root: Path | None, download: bool) -> RawData:
    """CIFAR-10 from the first root holding all of ``cifar-10-batches-py/`` (splitleak.cifar);
    with ``download``, fetched into the first writable root when none does."""
    roots = resolve_roots(root)
    notes = []
    for r in roots:
        folder = r / cifar.FOLDER
        missing = cifar.missing_files(folder)
        if not missing:
            return _read_cifar10(folder)
        notes.append(f"{folder} (no such directory)" if not folder.is_dir() else f"{folder} (missing {', '.join(missing)})")
    if download:
        target = _first_writable_root(roots)
        log.info("cifar10 not found locally; downloading with torchvision into %s", target)
        _download_cifar10(target)
        return _read_cifar10(target / cifar.FOLDER)
    raise DataError(
        "dataset 'cifar10' not found. Looked in:\n  " + "\n  ".join(notes) + f"\n{_HOW_TO_GET_CIFAR}"
    )


def _read_cifar10(folder: Path) -> RawData:
    train_x, train_y = cifar.read_batches(folder, cifar.TRAIN_FILES)
    test_x, test_y = cifar.read_batches(folder, cifar.TEST_FILES)
    return RawData(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, origin=str(folder))


def _load_digits(root: Path | None, download: bool) -> RawData:
    """scikit-learn's 8x8 digits, scaled to [0, 1] and bilinearly resized to 1x28x28.

    There is no official test split: a stratified test part of ``DIGITS_TEST_SIZE`` images is
    carved with the fixed ``DIGITS_TEST_SEED`` (independent of ``split_seed``). Both parts keep
    the original row order of ``load_digits``.
    """
    del root, download  # bundled with scikit-learn: nothing to find or fetch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)[:, None]  # -> [N, 1, 8, 8]
    images = F.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False)  # -> [N, 1, 28, 28]
    x = images.clamp_(0.0, 1.0).numpy()
    y = bunch.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(y)), test_size=DIGITS_TEST_SIZE, stratify=y, random_state=DIGITS_TEST_SEED
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return RawData(
        train_x=x[train_idx], train_y=y[train_idx], test_x=x[test_idx], test_y=y[test_idx],
        origin="sklearn.datasets.load_digits",
    )


def _load_photo_patches(root: Path | None, download: bool) -> RawData:
    """32x32 colour patches of the photographs bundled with scikit-image and scikit-learn
    (splitleak.photo_patches)."""
    del root, download  # bundled: nothing to find or fetch
    from splitleak.photo_patches import photo_patches

    train_x, train_y, test_x, test_y = photo_patches()
    return RawData(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, origin="splitleak.photo_patches (scikit-image and scikit-learn sample photographs)")


def _load_image_folder(root: Path | None, download: bool) -> RawData:
    """A folder of class subfolders (splitleak.image_folder) as a training source."""
    del download  # a user's own images: nothing to fetch
    if root is None:
        raise DataError("dataset 'image-folder' reads the folder given as --image-folder DIR (DataConfig.data_dir)")
    from splitleak.image_folder import read_training_folder

    return read_training_folder(root)


_WHERE = (
    "Pass --data-dir DIR (or DataConfig.data_dir), set ${env}, or put the files under "
    "~/.cache/splitleak/data."
).format(env=ENV_DATA_DIR)

_HOW_TO_GET_FASHION = (
    "How to get it: offline on Debian/Ubuntu, `apt-get install dataset-fashion-mnist` (installs "
    f"the four .gz files into {DEBIAN_FASHION_MNIST_DIR}); online, pass --download "
    "(DataConfig.download=True) and torchvision fetches it into the first writable data root; "
    "or copy the four IDX files (plain or .gz), directly or under FashionMNIST/raw/, into a "
    "data root. " + _WHERE
)
_HOW_TO_GET_MNIST = (
    "How to get it: there is no Debian package; online, pass --download (DataConfig.download=True) "
    "and torchvision fetches it into the first writable data root; or copy the four IDX files "
    "(plain or .gz), directly or under MNIST/raw/, into a data root. " + _WHERE
)
_HOW_TO_GET_CIFAR = (
    "How to get it: online, pass --download (DataConfig.download=True) and torchvision fetches "
    "it into the first writable data root; or unpack cifar-10-python.tar.gz so that a data root "
    "holds cifar-10-batches-py/ (data_batch_1..5, test_batch; read without unpickling code). " + _WHERE
)

DATASETS: Registry[DatasetSource] = Registry("dataset", group="splitleak.datasets")
"""Registry of known datasets, keyed by name; other packages add theirs with an entry point."""

for _source in (
        DatasetSource(
            name="fashion-mnist", shape=(1, 28, 28), num_classes=10, default_aux_pool=10_000,
            description="Fashion-MNIST: 60k train / 10k test 28x28 grey clothing images, 10 classes",
            load=_load_fashion_mnist, how_to_get=_HOW_TO_GET_FASHION,
        ),
        DatasetSource(
            name="mnist", shape=(1, 28, 28), num_classes=10, default_aux_pool=10_000,
            description="MNIST: 60k train / 10k test 28x28 grey handwritten digits, 10 classes",
            load=_load_mnist, how_to_get=_HOW_TO_GET_MNIST,
        ),
        DatasetSource(
            name="cifar10", shape=(3, 32, 32), num_classes=10, default_aux_pool=10_000,
            description="CIFAR-10: 50k train / 10k test 32x32 colour images, 10 classes",
            load=_load_cifar10, how_to_get=_HOW_TO_GET_CIFAR,
        ),
        DatasetSource(
            name="digits", shape=(1, 28, 28), num_classes=10, default_aux_pool=500,
            description=(
                "scikit-learn digits: 1,797 8x8 images (0..16) resized bilinearly to 28x28; "
                f"fixed {DIGITS_TEST_SIZE}-image test part; bundled, works offline"
            ),
            load=_load_digits, how_to_get="Bundled with scikit-learn; nothing to get.",
        ),
        DatasetSource(
            name="photo-patches", shape=(3, 32, 32), num_classes=10, default_aux_pool=5_000,
            description=(
                "32x32 colour patches of the 10 photographs bundled with scikit-image and scikit-learn, "
                "class = photograph; 20k train (left 3/4 of each photo) / 10k test (right 1/4); bundled, works offline"
            ),
            load=_load_photo_patches, how_to_get="Bundled with scikit-image and scikit-learn; nothing to get.",
        ),
        DatasetSource(
            name="image-folder", shape=None, num_classes=None, default_aux_pool=0.25,
            description=(
                "your own PNG/JPEG images in class subfolders (--image-folder DIR), any size (all alike), grey or RGB; "
                "a fixed fifth is the test part, a quarter of the rest the attacker's"
            ),
            load=_load_image_folder, how_to_get="Pass --image-folder DIR (DataConfig.data_dir): class subfolders of PNG/JPEG images.",
        ),
):
    DATASETS.register(_source)


def get_source(name: str) -> DatasetSource:
    """The registry entry for ``name``; :class:`DataError` listing valid names otherwise."""
    if not isinstance(name, str) or name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; valid names: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


# --------------------------------------------------------------------------------------------
# Splitting
# --------------------------------------------------------------------------------------------


def _to_split(x: np.ndarray, y: np.ndarray, idx: torch.Tensor) -> ArraySplit:
    """Gather rows ``idx`` and convert to float32 in [0, 1] (vectorised, copies)."""
    rows = idx.numpy()
    xt = torch.from_numpy(np.ascontiguousarray(x[rows]))
    if xt.dtype == torch.uint8:
        xt = xt.to(torch.float32).div_(255.0)
    else:
        xt = xt.to(torch.float32)
        if xt.numel() and (float(xt.min()) < 0.0 or float(xt.max()) > 1.0):
            raise DataError(f"float images must lie in [0, 1], got [{float(xt.min())}, {float(xt.max())}]")
    yt = torch.from_numpy(np.asarray(y[rows], dtype=np.int64))
    return ArraySplit(x=xt, y=yt, indices=idx.clone())


def resolve_defaults(config: DataConfig, n_source: int | None = None) -> DataConfig:
    """`config` with the split defaults filled in, as :func:`load_splits` records it in
    ``Splits.config``: ``aux_pool`` = the dataset's ``default_aux_pool`` when None (a fraction
    of the ``n_source`` training images when that default is a float; left None while
    ``n_source`` is unknown), ``aux_size`` = ``aux_pool`` when None. The one place these
    defaults are resolved. Raises :class:`DataError` for an unknown dataset or an ``aux_size``
    beyond the pool."""
    default = get_source(config.dataset).default_aux_pool
    if config.aux_pool is not None:
        pool: int | None = config.aux_pool
    elif isinstance(default, float):
        pool = None if n_source is None else int(default * n_source)
    else:
        pool = default
    if pool is None:
        return config
    return dataclasses.replace(config, aux_pool=pool, aux_size=_take("aux_size", config.aux_size, pool))


def capped(limit: int | None, available: int, cap: bool, where: str) -> int | None:
    """`limit`, or `available` when `cap` (the limit is a default, not the user's) and the data
    holds fewer test images: a default adapts to the data, only an explicit value is refused."""
    if cap and limit is not None and limit > available:
        log.info("%s holds %d test images, fewer than the default limit %d: using all of them", where, available, limit)
        return available
    return limit


def _take(name: str, n: int | None, available: int) -> int:
    if n is None:
        return available
    if n > available:
        raise DataError(f"{name}={n} is larger than the {available} images available")
    return n


def load_splits(config: DataConfig, *, cap_test: bool = False) -> Splits:
    """Load ``config.dataset`` and split it into disjoint train / aux / test parts.

    The source's training part is permuted with ``torch.Generator().manual_seed(split_seed)``;
    the first ``aux_pool`` rows form the attacker's pool (``aux`` = its first ``aux_size``),
    the remaining rows form ``train`` (first ``limit_train``). ``test`` is the first
    ``limit_test`` rows of the source's test part. Same config, same splits.
    ``Splits.config`` is ``config`` with ``aux_pool`` / ``aux_size`` defaults resolved.
    ``cap_test``: ``limit_test`` is a default, an upper bound: fewer test images use what there
    is (``Splits.config`` records the number used); otherwise asking for more is a DataError.
    """
    source = get_source(config.dataset)
    raw = source.load(Path(config.data_dir) if config.data_dir else None, config.download)
    shape = tuple(int(d) for d in raw.train_x.shape[1:])
    if source.shape is not None and shape != source.shape:
        raise DataError(f"{source.name}: loader returned images of shape {shape}, expected {source.shape}")
    num_classes = source.num_classes if source.num_classes is not None else raw.num_classes
    if num_classes is None:
        raise DataError(f"{source.name}: its loader did not say how many classes the data has")

    n_source = len(raw.train_y)
    resolved = resolve_defaults(config, n_source)
    pool = resolved.aux_pool
    assert pool is not None and resolved.aux_size is not None
    if pool >= n_source:
        raise DataError(
            f"aux_pool={pool} leaves no training images: {source.name}'s training part holds "
            f"{n_source} images (aux_pool must be < {n_source})"
        )
    aux_n = resolved.aux_size
    train_n = _take("limit_train", config.limit_train, n_source - pool)
    test_n = _take("limit_test", capped(config.limit_test, len(raw.test_y), cap_test, source.name), len(raw.test_y))
    if test_n != config.limit_test and config.limit_test is not None:
        resolved = dataclasses.replace(resolved, limit_test=test_n)

    gen = torch.Generator().manual_seed(config.split_seed)
    perm = torch.randperm(n_source, generator=gen)
    aux_idx, train_idx = perm[:pool][:aux_n], perm[pool:][:train_n]
    test_idx = torch.arange(test_n, dtype=torch.int64)
    used = torch.bincount(torch.cat([aux_idx, train_idx]), minlength=n_source)
    if len(used) and int(used.max()) > 1:  # cannot happen: disjoint slices of a permutation
        raise RuntimeError("internal error: aux and train splits overlap")

    splits = Splits(
        train=_to_split(raw.train_x, raw.train_y, train_idx),
        aux=_to_split(raw.train_x, raw.train_y, aux_idx),
        test=_to_split(raw.test_x, raw.test_y, test_idx),
        spec=InputSpec(shape=shape),
        num_classes=num_classes,
        dataset=source.name,
        config=resolved,
        origin=raw.origin,
    )
    log.info("%s splits (seed %d): %s", source.name, config.split_seed, splits.sizes())
    return splits


__all__ = [
    "DATASETS",
    "DEBIAN_FASHION_MNIST_DIR",
    "ENV_DATA_DIR",
    "LOCATION_FIELDS",
    "ArraySplit",
    "DataConfig",
    "DataError",
    "DatasetSource",
    "InputSpec",
    "RawData",
    "Splits",
    "capped",
    "get_source",
    "load_splits",
    "read_idx",
    "resolve_roots",
    "standard_layout",
    "without_locations",
]
