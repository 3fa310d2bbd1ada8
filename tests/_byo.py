"""Helpers for the bring-your-own-model tests: models built outside splitleak, PNG folders, pickles."""

from __future__ import annotations

import pickle
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

SIZE = 16  # 16x16 grey images: SSIM's 11x11 window fits, small-cnn takes them, everything is fast


def encoder() -> nn.Module:
    """A client encoder written in plain torch, nothing from splitleak: [B, 1, 16, 16] -> [B, 4, 8, 8]."""
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))


def head(classes: int = 10) -> nn.Module:
    """A server head for `encoder`'s activations: [B, 4, 8, 8] -> [B, classes]."""
    return nn.Sequential(nn.Flatten(), nn.Linear(4 * 8 * 8, classes))


def trained_pair(seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """Encoder + head with seeded weights (training them is not the point here)."""
    torch.manual_seed(seed)
    return encoder().eval(), head().eval()


def save_torchscript(module: nn.Module, path: Path) -> Path:
    torch.jit.script(module).save(str(path))
    return path


def write_png_folder(root: Path, n: int = 40, *, labelled: bool = True, size: int = SIZE) -> Path:
    """`n` scikit-learn digits as 8-bit grey PNGs of size x size, in class subfolders or flat."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i in range(n):
        folder = root / str(digits.target[i]) if labelled else root
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (digits.images[i] * 255 / 16).astype(np.uint8)
        Image.fromarray(pixels).resize((size, size), Image.BILINEAR).save(folder / f"img{i:03d}.png")
    return root


def write_colour_folder(root: Path, n: int = 40, *, size: int = 32, classes: int = 4) -> Path:
    """`n` RGB PNGs of size x size in `classes` class subfolders: scikit-learn digits of the
    class tinted with the class's colour on a gradient background (structure an attacker can recover)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    tints = np.array([[1.0, 0.2, 0.2], [0.2, 1.0, 0.3], [0.3, 0.3, 1.0], [1.0, 0.9, 0.2], [0.9, 0.3, 1.0], [0.2, 1.0, 1.0]])
    ramp = np.linspace(0.0, 0.4, size, dtype=np.float32)
    picked = [i for i in range(len(digits.target)) if digits.target[i] < classes][:n]
    for i in picked:
        label = int(digits.target[i])
        glyph = np.asarray(Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)).resize((size, size), Image.BILINEAR), dtype=np.float32) / 255
        background = np.stack([ramp[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1), np.full((size, size), 0.2, np.float32)], axis=-1)
        rgb = np.clip(background * (1 - glyph[..., None]) + glyph[..., None] * tints[label % len(tints)], 0, 1)
        folder = root / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rgb * 255).astype(np.uint8)).save(folder / f"img{i:04d}.png")
    return root


FACTORY_SOURCE = '''
import torch
from torch import nn


def encoder():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))


def head():
    return nn.Sequential(nn.Flatten(), nn.Linear(4 * 8 * 8, 10))


def broken():
    raise RuntimeError("the factory is broken")


def not_a_module():
    return 42
'''


def write_factory_module(directory: Path) -> str:
    """A factory module in `directory` (put it on sys.path); returns its unique module name."""
    name = f"byo_factory_{uuid.uuid4().hex[:8]}"
    (directory / f"{name}.py").write_text(FACTORY_SOURCE)
    return name


class RunsCode:
    """Unpickling this creates `marker`: proof that a loader executed code from a file."""

    marker = ""

    def __reduce__(self):
        return (Path.touch, (Path(RunsCode.marker),))


def malicious_pickle(path: Path, marker: Path, *, writer: str = "pickle") -> Path:
    RunsCode.marker = str(marker)
    if writer == "pickle":
        path.write_bytes(pickle.dumps({"state_dict": RunsCode()}))
    else:
        torch.save({"weight": RunsCode()}, path)
    return path


@pytest.fixture(scope="session")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A labelled folder of 40 PNGs (shared by the BYO and robustness tests)."""
    return write_png_folder(tmp_path_factory.mktemp("pngs") / "digits", n=40)


@pytest.fixture(scope="session")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A trained foreign encoder and head saved as TorchScript files."""
    encoder, head = trained_pair()
    root = tmp_path_factory.mktemp("ts")
    return save_torchscript(encoder, root / "encoder.pt"), save_torchscript(head, root / "head.pt")
