"""A folder of images (PNG / JPEG) as evaluation data: the attacker's aux part and the test part.

Layout: either class subfolders (``root/<class>/*.png``; labels are the subfolders in sorted
order, as torchvision's ImageFolder numbers them) or images directly in ``root`` (no labels).
Only PNG and JPEG are read, recognised by their first bytes (never by the file name) and handed
to Pillow's PNG or JPEG plugin alone; any other content is refused before Pillow sees it. The
size is read from the header and bounded (`MAX_PIXELS`, and the input spec's height and width)
before a pixel is decoded. Images are decoded to grey (1 channel) or RGB (3 channels) and mapped
from [0, 1] (8 bits / 255, 16 bits / 65535) linearly onto the spec's value range.

The folder is sorted (class, then path), permuted with ``split_seed``; the first ``aux_pool``
images are the attacker's, the rest (in folder order, the first ``limit_test``) are attacked.
There is no training part (the model was trained elsewhere). Same folder and seed, same splits.

To train on a folder (`splitleak train --image-folder DIR`, the registered dataset
"image-folder"), `read_training_folder` gives it a training and a test part like any dataset:
a fixed fifth of the images (`TEST_FRACTION`, drawn with `TEST_SEED`, independent of
``split_seed``) is the test part, and `splitleak.data.load_splits` carves the attacker's pool
from the rest. Every image must have the first one's size and colour kind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from splitleak._io import sha256_file
from splitleak.data import ArraySplit, DataConfig, DataError, InputSpec, RawData, Splits, capped
from splitleak.dataspec import MAX_PIXELS  # the largest width x height read (a lower `PIL.Image.MAX_IMAGE_PIXELS` wins)

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
"""Which files of a folder are listed as images; what they hold is decided from their bytes."""
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"))
_PLUGIN_FORMATS = {"PNG": ("PNG",), "JPEG": ("JPEG", "MPO")}  # MPO: multi-picture JPEG, decoded by the JPEG plugin
_LOOKS_LIKE = (
    (b"GIF8", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"%!PS", "PostScript / EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"), (b"RIFF", "RIFF (WebP?)"), (b"\x00\x00\x00\x0cjP", "JPEG 2000"), (b"\x80", "a Python pickle"),
    (b"PK\x03\x04", "a zip archive"),
)
FOLDER_DATASET = "image-folder"
"""`DataConfig.dataset` of an image folder (its path is `DataConfig.data_dir`)."""
TEST_FRACTION = 0.2
"""Share of a training folder's images held out as its test part (at least one image)."""
TEST_SEED = 20_261_130
"""Seed of the test part's draw: the same test images for every ``split_seed``."""


@dataclasses.dataclass(frozen=True)
class FolderListing:
    """The image files of a folder in a fixed order, their labels and class names."""

    root: Path
    files: tuple[Path, ...]
    labels: tuple[int, ...]
    classes: tuple[str, ...]  # empty: unlabelled

    @property
    def labelled(self) -> bool:
        return bool(self.classes)


def _is_image(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def list_folder(root: str | os.PathLike[str]) -> FolderListing:
    """The images under `root`: class subfolders (labelled) or images directly inside (unlabelled)."""
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a folder")
    try:
        entries = sorted(root.iterdir())
    except OSError as err:
        raise DataError(f"cannot list image folder {root}: {err}") from None
    direct = [p for p in entries if _is_image(p)]
    subdirs = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
    class_files = {d.name: sorted(p for p in d.rglob("*") if _is_image(p)) for d in subdirs}
    class_files = {name: files for name, files in class_files.items() if files}
    if direct and class_files:
        raise DataError(
            f"image folder {root} mixes images ({direct[0].name}, ...) with class subfolders ({sorted(class_files)[:3]}); "
            "use either class subfolders (labelled) or images only (unlabelled)"
        )
    if class_files:
        empty = [d.name for d in subdirs if d.name not in class_files]
        if empty:
            log.warning("image folder %s: subfolders without images ignored: %s", root, empty[:5])
        classes = tuple(sorted(class_files))
        files = tuple(f for name in classes for f in class_files[name])
        labels = tuple(k for k, name in enumerate(classes) for _ in class_files[name])
        return FolderListing(root, files, labels, classes)
    if not direct:
        raise DataError(f"image folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)}), neither directly nor in class subfolders")
    return FolderListing(root, tuple(direct), (-1,) * len(direct), ())


def _image_format(path: Path, head: bytes) -> str:
    """'PNG' or 'JPEG' from a file's first bytes; DataError naming the file otherwise."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    looks = next((f"it looks like {name}" for magic, name in _LOOKS_LIKE if head.startswith(magic)), f"it starts with {head[:8]!r}")
    raise DataError(
        f"cannot read image {path}: its content is not PNG or JPEG ({looks}); image folders take PNG and JPEG files only, "
        "recognised by their bytes, not their name"
    )


@contextmanager
def _open_image(path: Path) -> Iterator:  # -> PIL.Image.Image, header read, nothing decoded yet
    """Open `path` with Pillow's PNG or JPEG plugin only, chosen from its bytes, its size bounded.

    Every failure is a DataError naming the file; Pillow's decompression-bomb warning and error
    are refusals. The image is lazy: decode it inside the `with` block.
    """
    from PIL import Image, JpegImagePlugin, PngImagePlugin  # noqa: F401 - registers the only two plugins used

    try:
        with open(path, "rb") as fp:
            kind = _image_format(path, fp.read(8))
            fp.seek(0)
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                try:
                    # a file object, not the name: Pillow picks no plugin from the suffix; formats= tries these alone
                    img = Image.open(fp, formats=[kind])
                except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
                    raise DataError(f"cannot read image {path}: refused before decoding: {' '.join(str(err).split())}") from None
            with img:
                if img.format not in _PLUGIN_FORMATS[kind]:  # defensive: formats= should make this impossible
                    raise DataError(f"cannot read image {path}: its bytes say {kind} but Pillow read it as {img.format}")
                w, h = img.size
                limit = MAX_PIXELS if Image.MAX_IMAGE_PIXELS is None else min(MAX_PIXELS, int(Image.MAX_IMAGE_PIXELS))
                if w * h > limit:
                    raise DataError(
                        f"cannot read image {path}: its header declares {h}x{w} pixels, more than the {limit} an image folder "
                        "reads (a decompression bomb?); refused before decoding"
                    )
                with warnings.catch_warnings():
                    warnings.simplefilter("error", Image.DecompressionBombWarning)
                    yield img
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DataError(f"cannot read image {path}: {type(err).__name__}: {' '.join(str(err).split())}") from None


def read_image(path: Path, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    """One image as float32 [C, H, W] in [0, 1]; DataError naming the file if it cannot be used."""
    if channels not in (1, 3):
        raise DataError(f"image folders give 1 (grey) or 3 (RGB) channels, the input spec asks for {channels}")
    with _open_image(path) as img:
        w, h = img.size
        if size is not None and (h, w) != tuple(size):
            raise DataError(f"{path} is {h}x{w} pixels but the input spec wants {size[0]}x{size[1]}; resize the images first")
        if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
            if channels != 1:
                raise DataError(f"{path} is a 16-bit grey image but the input spec wants {channels} channels")
            array = np.asarray(img, dtype=np.float32)[None] / 65535.0
        elif img.mode in ("I", "F"):
            raise DataError(f"{path}: 32-bit images (mode {img.mode}) are not supported; save 8- or 16-bit PNGs")
        else:
            array = np.asarray(img.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 255.0
            array = array[None] if channels == 1 else array.transpose(2, 0, 1)
    return np.ascontiguousarray(array, dtype=np.float32)


def infer_shape(listing: FolderListing) -> tuple[int, int, int]:
    """(C, H, W) of the folder's first image: C = 1 for grey modes, else 3."""
    first = listing.files[0]
    with _open_image(first) as img:
        w, h = img.size
        grey = img.mode in ("1", "L", "LA", "I", "F") or img.mode.startswith("I;16") or (img.mode == "P" and _palette_is_grey(img))
    return (1 if grey else 3, h, w)


def _palette_is_grey(img) -> bool:  # noqa: ANN001 - a PIL image
    rgb = np.asarray(img.convert("RGB"))
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def fingerprint(listing: FolderListing) -> str:
    """SHA-256 over every image's relative path, label and content hash."""
    digest = hashlib.sha256()
    for path, label in zip(listing.files, listing.labels):
        digest.update(f"{path.relative_to(listing.root).as_posix()}\0{label}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def load_image_folder(
    root: str | os.PathLike[str],
    spec: InputSpec,
    *,
    split_seed: int = 0,
    aux_pool: int | None = None,
    aux_size: int | None = None,
    limit_test: int | None = None,
    num_classes: int | None = None,
    cap_test: bool = False,
) -> Splits:
    """Read the folder at `root` and split it into the attacker's aux part and the test part.

    `aux_pool`: images reserved for the attacker (default: half, rounded down); `aux_size`: how
    many of them it gets (default: all); `limit_test`: attack the first N of the rest (default:
    all). `num_classes` (labelled folders): at least the number of class subfolders (default:
    that number). Values are mapped onto `spec.value_range`. `cap_test`: `limit_test` is a
    default, an upper bound: a folder with fewer test images uses them all (as load_splits).
    """
    listing = list_folder(root)
    n = len(listing.files)
    pool = n // 2 if aux_pool is None else aux_pool
    if pool < n:
        limit_test = capped(limit_test, n - pool, cap_test, str(listing.root))
    config = DataConfig(
        dataset=FOLDER_DATASET, data_dir=str(listing.root), split_seed=split_seed, aux_pool=pool, aux_size=aux_size, limit_test=limit_test
    )
    if pool >= n:
        raise DataError(f"aux_pool={pool} leaves no test images: {listing.root} holds {n} images (aux_pool must be < {n})")
    aux_n = pool if aux_size is None else aux_size
    if limit_test is not None and limit_test > n - pool:
        raise DataError(
            f"limit_test={limit_test} is larger than the {n - pool} test images left in {listing.root} after reserving "
            f"{pool} for the attacker; lower --limit-test (or --aux-pool)"
        )
    if listing.labelled:
        classes = len(listing.classes)
        if num_classes is not None and num_classes < classes:
            raise DataError(f"num_classes={num_classes} but {listing.root} has {classes} class subfolders")
        num_classes = classes if num_classes is None else num_classes
    c, h, w = spec.shape
    images = np.stack([read_image(path, c, (h, w)) for path in listing.files])  # -> [N, C, H, W] in [0, 1]
    low, high = spec.value_range
    x_all = torch.from_numpy(images).mul_(high - low).add_(low)
    y_all = torch.tensor(listing.labels, dtype=torch.int64)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    aux_idx = perm[:pool][:aux_n]
    test_idx = perm[pool:].sort().values[: limit_test if limit_test is not None else n]

    def part(idx: torch.Tensor) -> ArraySplit:
        return ArraySplit(x=x_all[idx].contiguous(), y=y_all[idx].clone(), indices=idx.clone())

    empty = torch.empty(0, dtype=torch.int64)
    splits = Splits(
        train=part(empty), aux=part(aux_idx), test=part(test_idx), spec=spec,
        num_classes=num_classes if listing.labelled else 0, dataset=f"folder:{listing.root.name}",
        config=dataclasses.replace(config, aux_size=aux_n),
        origin=f"{listing.root} ({n} images, {len(listing.classes) or 'no'} classes, sha256 {fingerprint(listing)})",
        labelled=listing.labelled,
    )
    log.info("image folder %s: %s", listing.root, splits.sizes())
    return splits


def read_training_folder(root: str | os.PathLike[str]) -> RawData:
    """A labelled folder as a dataset's source parts: a fixed `TEST_FRACTION` of the images
    (drawn with `TEST_SEED`) is the test part, the rest the training part, each in folder order."""
    listing = list_folder(root)
    if not listing.labelled:
        raise DataError(f"image folder {listing.root} has no class subfolders: training needs labelled images (root/<class>/*.png)")
    n = len(listing.files)
    if n < 2:
        raise DataError(f"image folder {listing.root} holds {n} image: training needs at least 2 (one for the test part)")
    c, h, w = infer_shape(listing)
    images = np.stack([read_image(path, c, (h, w)) for path in listing.files])  # -> [N, C, H, W] in [0, 1]
    labels = np.asarray(listing.labels, dtype=np.int64)
    n_test = min(n - 1, max(1, round(TEST_FRACTION * n)))
    held = torch.randperm(n, generator=torch.Generator().manual_seed(TEST_SEED))[:n_test].numpy()
    is_test = np.zeros(n, dtype=bool)
    is_test[held] = True
    return RawData(
        train_x=images[~is_test], train_y=labels[~is_test], test_x=images[is_test], test_y=labels[is_test],
        origin=f"{listing.root} ({n} images, {len(listing.classes)} classes, sha256 {fingerprint(listing)})",
        num_classes=len(listing.classes),
    )


__all__ = ["FOLDER_DATASET", "IMAGE_SUFFIXES", "MAX_PIXELS", "FolderListing", "fingerprint", "infer_shape", "list_folder", "load_image_folder", "read_image", "read_training_folder"]
