"""Split architectures: a registry of block stacks, each cut after one of its cut points.

A cut point is a whole number K (small-cnn, cifar-cnn: the client's encoder is blocks 1..K and the
server's head the rest, so a larger K is a deeper cut) or a name (resnet18: "stem", "layer1"..
"layer4", cut after that stage). The i-th cut point of `cuts` puts the first i blocks on the
client. Shapes in the comments are for the default input of each architecture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from splitleak.cuts import Cut, parse_cut
from splitleak.errors import InputError
from splitleak.models.pooling import MaxPool2x2
from splitleak.models.resnet import RESNET18_CUTS, resnet18_blocks
from splitleak.registry import Registry


def _conv(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    """3x3 conv + ReLU, after a 2x2 max-pool when `pool` (pooling first keeps convs cheap)."""
    layers: list[nn.Module] = [MaxPool2x2()] if pool else []  # nn.MaxPool2d(2), faster on the CPU (splitleak.models.pooling)
    return nn.Sequential(*layers, nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU())


def _dense(d_in: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(d_in, d_out), nn.ReLU())


def small_cnn_blocks(shape: tuple[int, int, int], num_classes: int) -> list[nn.Module]:
    """Four-block CNN for 28x28 grey images (C in {1, 3}, H and W divisible by 4)."""
    c, h, w = shape
    return [
        _conv(c, 16, pool=False),  # -> [B, 16, 28, 28]
        _conv(16, 32, pool=True),  # -> [B, 32, 14, 14]
        _conv(32, 64, pool=True),  # -> [B, 64, 7, 7]
        _dense(64 * (h // 4) * (w // 4), 128),  # -> [B, 128]
        nn.Linear(128, num_classes),  # -> [B, classes]
    ]


def cifar_cnn_blocks(shape: tuple[int, int, int], num_classes: int) -> list[nn.Module]:
    """Five-block VGG-style CNN for 32x32 colour images (H, W divisible by 8)."""
    c, h, w = shape
    return [
        _conv(c, 32, pool=False),  # -> [B, 32, 32, 32]
        _conv(32, 64, pool=True),  # -> [B, 64, 16, 16]
        _conv(64, 128, pool=True),  # -> [B, 128, 8, 8]
        _conv(128, 128, pool=True),  # -> [B, 128, 4, 4]
        _dense(128 * (h // 8) * (w // 8), 256),  # -> [B, 256]
        nn.Linear(256, num_classes),  # -> [B, classes]
    ]


@dataclass(frozen=True)
class Architecture:
    """A registered split architecture: its blocks, the inputs it takes and its cut points."""

    name: str
    description: str
    blocks: Callable[[tuple[int, int, int], int], list[nn.Module]]
    cuts: tuple[Cut, ...]
    default_cut: Cut
    channels: tuple[int, ...]
    spatial_multiple: int

    def resolve_cut(self, cut: object) -> Cut:
        """`cut` (a number, a name, or its text) as one of `cuts`; InputError listing them otherwise."""
        parsed = parse_cut(cut) if cut is not None else None
        if parsed not in self.cuts:
            raise InputError(f"architecture {self.name!r} has cuts {list(self.cuts)}, got {cut!r}")
        return parsed

    def depth(self, cut: Cut) -> int:
        """How many blocks the client holds when cut at `cut` (1 for the first cut point)."""
        return self.cuts.index(self.resolve_cut(cut)) + 1

    def check(self, shape: tuple[int, int, int], cut: Cut) -> None:
        """Raise InputError if this architecture cannot take `shape` or be cut at `cut`."""
        c, h, w = shape
        if c not in self.channels:
            raise InputError(f"architecture {self.name!r} takes {self.channels} channel(s), got {c}")
        if h % self.spatial_multiple or w % self.spatial_multiple or h < 8 or w < 8:
            raise InputError(
                f"architecture {self.name!r} needs height and width divisible by "
                f"{self.spatial_multiple}, got {h}x{w}"
            )
        self.resolve_cut(cut)

    def build(self, shape: tuple[int, int, int], num_classes: int, cut: Cut) -> tuple[nn.Sequential, nn.Sequential]:
        """Return freshly initialised (encoder, head) for a cut at cut point `cut`."""
        self.check(shape, cut)
        blocks, k = self.blocks(shape, num_classes), self.depth(cut)
        return nn.Sequential(*blocks[:k]), nn.Sequential(*blocks[k:])


ARCHITECTURES: Registry[Architecture] = Registry("architecture", group="splitleak.architectures")
"""Split architectures by name; other packages add theirs with an entry point (docs/architecture.md)."""

for _arch in (
        Architecture(
            name="small-cnn",
            description="4 blocks (conv16, pool+conv32, pool+conv64, fc128) for 28x28 images",
            blocks=small_cnn_blocks,
            cuts=(1, 2, 3, 4),
            default_cut=2,
            channels=(1, 3),
            spatial_multiple=4,
        ),
        Architecture(
            name="cifar-cnn",
            description="5 blocks (conv32, pool+conv64, pool+conv128, pool+conv128, fc256) for 32x32 images",
            blocks=cifar_cnn_blocks,
            cuts=(1, 2, 3, 4, 5),
            default_cut=2,
            channels=(1, 3),
            spatial_multiple=8,
        ),
        Architecture(
            name="resnet18",
            description=(
                "torchvision's ResNet-18 (BasicBlocks [2, 2, 2, 2], BatchNorm) with named cuts stem, layer1..layer4; "
                "3x3 stride-1 stem without max-pool up to 64x64, the 7x7 stride-2 stem and max-pool above"
            ),
            blocks=resnet18_blocks,
            cuts=RESNET18_CUTS,
            default_cut="layer2",
            channels=(1, 3),
            spatial_multiple=4,  # strided convs round odd sizes up (28 -> 14 -> 7 -> 4); the head pools adaptively
        ),
):
    ARCHITECTURES.register(_arch)


def get_architecture(name: str) -> Architecture:
    """Look an architecture up by name, with a clear error listing the known ones."""
    return ARCHITECTURES.get_entry(name)


def classifier_architecture(shape: tuple[int, int, int], preferred: str | None = None) -> Architecture | None:
    """`preferred` if it is registered and takes `shape`, else the first registered one that does."""
    candidates = ([ARCHITECTURES[preferred]] if preferred in ARCHITECTURES else []) + list(ARCHITECTURES.values())
    for arch in candidates:
        try:
            arch.check(tuple(shape), arch.default_cut)
        except ValueError:
            continue
        return arch
    return None


def activation_shape(encoder: nn.Module | Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, int, int]) -> tuple[int, ...]:
    """The shape of one sample's activation (without the batch axis), from a zero input: on the
    module's own device (a plain function such as a model's `client` gets a CPU input)."""
    param = next(iter(encoder.parameters()), None) if isinstance(encoder, nn.Module) else None
    with torch.no_grad():
        return tuple(encoder(torch.zeros(1, *shape, device=param.device if param is not None else None)).shape[1:])
