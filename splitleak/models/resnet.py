"""ResNet-18 as a stack of split blocks: stem, layer1..layer4, then the classifier head.

torchvision's design (He et al. 2016; `torchvision.models.resnet18`): BasicBlocks [2, 2, 2, 2]
of 64, 128, 256 and 512 channels, BatchNorm after every conv, 1x1 projection shortcuts where the
shape changes. The stem depends on the input size: for images up to 64x64 the usual small-image
stem (3x3 conv, stride 1, no max-pool, as in CIFAR ResNets), for larger ones the ImageNet stem
(7x7 conv stride 2, then 3x3 max-pool stride 2). Weights take PyTorch's default initialisation
(splitleak._random draws them from a passed generator); nothing is downloaded.
"""

from __future__ import annotations

from torch import Tensor, nn

SMALL_STEM_MAX = 64
"""Largest height and width that get the small-image stem."""
STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))
"""(channels, stride of the first block) of layer1..layer4; two BasicBlocks each."""


class BasicBlock(nn.Module):
    """Two 3x3 conv + BatchNorm with a shortcut (a 1x1 conv + BatchNorm when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


def stem(c_in: int, height: int, width: int) -> nn.Sequential:
    """The small-image stem for inputs up to SMALL_STEM_MAX pixels a side, else ImageNet's."""
    if max(height, width) <= SMALL_STEM_MAX:
        return nn.Sequential(nn.Conv2d(c_in, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU())  # -> [B, 64, H, W]
    return nn.Sequential(
        nn.Conv2d(c_in, 64, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1),
    )  # -> [B, 64, H/4, W/4]


def resnet18_blocks(shape: tuple[int, int, int], num_classes: int) -> list[nn.Module]:
    """stem, layer1..layer4, head; shapes for 3x32x32 inputs."""
    c, h, w = shape
    blocks: list[nn.Module] = [stem(c, h, w)]  # -> [B, 64, 32, 32]
    c_in = 64
    for c_out, stride in STAGES:  # -> [B, 64, 32, 32], [B, 128, 16, 16], [B, 256, 8, 8], [B, 512, 4, 4]
        blocks.append(nn.Sequential(BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1)))
        c_in = c_out
    blocks.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes)))  # -> [B, classes]
    return blocks


RESNET18_CUTS = ("stem", "layer1", "layer2", "layer3", "layer4")
"""Named cut points: after the stem and after each stage."""

__all__ = ["RESNET18_CUTS", "SMALL_STEM_MAX", "BasicBlock", "resnet18_blocks", "stem"]
