"""Image folders as data: labels from subfolders, a seeded disjoint aux / test split, value ranges."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from splitleak.cli import main
from splitleak.data import DataError, InputSpec
from splitleak.image_folder import infer_shape, list_folder, load_image_folder
from tests._byo import scripted, write_png_folder  # noqa: F401 (fixture)

GREY = InputSpec(shape=(1, 16, 16))
FAST = ["--limit", "8", "--lpips", "none", "--semantic-epochs", "0", "--attacks", "decoder", "--attack-param", "decoder.epochs=1", "--quiet"]


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


# --- hostile folders, through the CLI as a user runs it ------------------------------------------

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n%%EndComments\nnewpath 0 0 moveto 16 16 lineto stroke\nshowpage\n%%EOF\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_declaring(width: int, height: int) -> bytes:
    """A 1-bit grey PNG whose header declares width x height; its few bytes of pixel data decode to nothing."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 16)) + _chunk(b"IEND", b"")


def _foreign(kind: str) -> bytes:
    if kind == "eps":
        return EPS
    if kind == "not an image":
        return b"hello, I am a text file\n"
    buffer = io.BytesIO()
    Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)).save(buffer, format=kind.upper())
    return buffer.getvalue()


@pytest.fixture
def pillow_spy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records (and stops) every use of a Pillow plugin other than PNG / JPEG, and every decode of a huge image."""
    from PIL import BmpImagePlugin, EpsImagePlugin, GifImagePlugin, ImageFile, TiffImagePlugin

    calls: list[str] = []
    for cls in (EpsImagePlugin.EpsImageFile, GifImagePlugin.GifImageFile, BmpImagePlugin.BmpImageFile, TiffImagePlugin.TiffImageFile):

        def _open(self, name=cls.__name__):  # noqa: ANN001
            calls.append(name)
            raise SyntaxError(f"{name} must not be used")

        monkeypatch.setattr(cls, "_open", _open)
    load = ImageFile.ImageFile.load

    def guarded_load(self):  # noqa: ANN001
        if self.size[0] * self.size[1] > 10_000:
            calls.append(f"decoded {self.size[0]}x{self.size[1]}")
            raise AssertionError(f"a {self.size} image was decoded")
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", guarded_load)
    return calls


def _evaluate(encoder: Path, folder: Path, out: Path, *extra: str) -> int:
    return main(["evaluate", str(encoder), "--image-folder", str(folder), "--allow-code", "--out", str(out), *FAST, *extra])


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("splitleak: error:"), err
    return err[0]


@pytest.mark.parametrize("kind", ["eps", "gif", "bmp", "tiff", "not an image"])
@pytest.mark.parametrize("where", ["first", "later"])
def test_only_png_and_jpeg_bytes_reach_pillow(tmp_path: Path, scripted, pillow_spy: list[str], capsys, kind: str, where: str) -> None:
    """A file whose bytes are not PNG / JPEG is refused by its bytes, whatever its name, before Pillow sees it."""
    folder = write_png_folder(tmp_path / "imgs", n=20)
    files = sorted(folder.rglob("*.png"))
    # first: the shape is inferred from it (no --shape); later: read with the others against --shape
    victim = files[0] if where == "first" else files[-1]
    victim.write_bytes(_foreign(kind))
    extra = () if where == "first" else ("--shape", "1,16,16")
    assert _evaluate(scripted[0], folder, tmp_path / "res", *extra) == 2
    line = _one_error_line(capsys)
    assert str(victim) in line and "not PNG or JPEG" in line, line
    assert pillow_spy == []
    assert not (tmp_path / "res").exists()


@pytest.mark.parametrize("where", ["first", "later"])
@pytest.mark.parametrize("size", [(30000, 30000), (10000, 9000)])
def test_decompression_bombs_are_refused_from_the_header(tmp_path: Path, scripted, pillow_spy: list[str], capsys, monkeypatch, where: str, size) -> None:
    """A PNG declaring a huge size is one error line, before a pixel is decoded, even with Pillow's own limit off."""
    from PIL import Image as PILImage

    folder = write_png_folder(tmp_path / "imgs", n=20)
    files = sorted(folder.rglob("*.png"))
    victim = files[0] if where == "first" else files[-1]
    victim.write_bytes(_png_declaring(*size))
    extra = () if where == "first" else ("--shape", "1,16,16")
    for limit in (PILImage.MAX_IMAGE_PIXELS, None):
        monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", limit)
        assert _evaluate(scripted[0], folder, tmp_path / "res", *extra) == 2
        line = _one_error_line(capsys)
        assert str(victim) in line and "cannot read image" in line, line
        if where == "first" or limit is None:
            assert f"{size[1]}x{size[0]}" in line or "decompression bomb" in line, line
    assert pillow_spy == []


def test_a_truncated_png_is_one_error_line(tmp_path: Path, scripted, capsys) -> None:
    folder = write_png_folder(tmp_path / "imgs", n=20)
    victim = sorted(folder.rglob("*.png"))[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: data.index(b"IDAT") + 12])
    assert _evaluate(scripted[0], folder, tmp_path / "res") == 2
    line = _one_error_line(capsys)
    assert str(victim) in line and "truncated" in line, line


def test_formats_come_from_the_bytes_not_the_name(tmp_path: Path, scripted, pillow_spy: list[str], capsys) -> None:
    """PNG bytes named .jpg and JPEG bytes named .png are read as what they are."""
    folder = write_png_folder(tmp_path / "imgs", n=40)
    files = sorted(folder.rglob("*.png"))
    png = files[0].rename(files[0].with_suffix(".jpg"))
    pixels = np.asarray(Image.open(files[1]))
    Image.fromarray(pixels).save(files[1], format="JPEG", quality=95)
    assert files[1].read_bytes()[:3] == b"\xff\xd8\xff"
    listing = list_folder(folder)
    assert png in listing.files and files[1] in listing.files
    splits = load_image_folder(folder, GREY, aux_pool=0)
    np.testing.assert_allclose(splits.test.x[listing.files.index(png), 0].numpy(), np.asarray(Image.open(png), dtype=np.float32) / 255)
    out = tmp_path / "res"
    assert _evaluate(scripted[0], folder, out) == 0, capsys.readouterr().err
    assert out.is_dir() and pillow_spy == []


# --- training on a folder (splitleak train --image-folder) ---------------------------------------


def test_a_training_folder_holds_out_a_fixed_test_part(labelled: Path) -> None:
    from splitleak.data import DataConfig, load_splits
    from splitleak.image_folder import read_training_folder

    raw = read_training_folder(labelled)
    assert len(raw.train_y) + len(raw.test_y) == 40 and len(raw.test_y) == 8 and raw.num_classes == len(list_folder(labelled).classes)
    a = load_splits(DataConfig(dataset="image-folder", data_dir=str(labelled), split_seed=0, aux_pool=8))
    b = load_splits(DataConfig(dataset="image-folder", data_dir=str(labelled), split_seed=1, aux_pool=8))
    assert torch.equal(a.test.x, b.test.x) and not torch.equal(a.aux.indices, b.aux.indices)  # the seed moves only the attacker's pool
    assert a.spec.shape == (1, 16, 16) and len(a.train) == 24 and len(a.aux) == 8
    assert load_splits(DataConfig(dataset="image-folder", data_dir=str(labelled))).config.aux_pool == 8  # a quarter of the 32


def test_training_needs_labels_and_a_folder(tmp_path: Path) -> None:
    from splitleak.data import DataConfig, load_splits

    flat = write_png_folder(tmp_path / "flat", n=6, labelled=False)
    with pytest.raises(DataError, match="no class subfolders: training needs labelled images"):
        load_splits(DataConfig(dataset="image-folder", data_dir=str(flat)))
    with pytest.raises(DataError, match="--image-folder DIR"):
        load_splits(DataConfig(dataset="image-folder"))


def test_train_and_evaluate_on_a_folder(labelled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "m.safetensors"
    argv = ["train", "--image-folder", str(labelled), "--epochs", "1", "--batch-size", "8", "--aux-pool", "16", "--out", str(model), "--quiet"]
    assert main(argv) == 0
    assert "small-cnn cut 2" in capsys.readouterr().out
    assert main(["evaluate", str(model), "--image-folder", str(labelled), "--out", str(tmp_path / "res"), *FAST]) == 0
    import pandas as pd

    table = pd.read_csv(tmp_path / "res" / "results.csv")
    assert set(table["dataset"]) == {"image-folder"} and ((table["metric"] == "ssim") & (table["attack"] == "decoder")).sum() == 8
    assert main(["train", "--image-folder", str(labelled), "--dataset", "mnist", "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "drop --dataset" in capsys.readouterr().err and not (tmp_path / "x.safetensors").exists()
