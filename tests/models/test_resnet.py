"""resnet18: torchvision's ResNet-18 built from splitleak's blocks, cut at named stages."""

from __future__ import annotations

import pytest
import torch

from splitleak._random import build, generator
from splitleak.data import InputSpec
from splitleak.errors import InputError
from splitleak.models import activation_shape, get_architecture, load_checkpoint, make_split_model, save_checkpoint
from splitleak.models.resnet import BasicBlock
from splitleak.records import CheckpointMeta, DefenseRecord
from splitleak.training import TrainConfig

ARCH = get_architecture("resnet18")


def test_registered_with_named_cuts_and_default() -> None:
    assert ARCH.cuts == ("stem", "layer1", "layer2", "layer3", "layer4") and ARCH.default_cut == "layer2"
    assert [ARCH.depth(c) for c in ARCH.cuts] == [1, 2, 3, 4, 5]
    assert TrainConfig(arch="resnet18").cut == "layer2" and TrainConfig(arch="resnet18", cut="layer3").cut == "layer3"


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((3, 32, 32), {"stem": (64, 32, 32), "layer1": (64, 32, 32), "layer2": (128, 16, 16), "layer3": (256, 8, 8), "layer4": (512, 4, 4)}),
        ((3, 64, 64), {"stem": (64, 64, 64), "layer2": (128, 32, 32), "layer4": (512, 8, 8)}),  # small stem up to 64x64
        ((1, 96, 96), {"stem": (64, 24, 24), "layer4": (512, 3, 3)}),  # ImageNet stem: 7x7 stride 2 + max-pool
        ((1, 28, 28), {"layer2": (128, 14, 14), "layer4": (512, 4, 4)}),  # Fashion-MNIST's size
    ],
)
def test_activation_shapes_per_cut(shape: tuple[int, int, int], expected: dict[str, tuple[int, ...]]) -> None:
    blocks, seen = ARCH.blocks(shape, 10), {}
    x = torch.zeros(1, *shape)
    with torch.no_grad():
        for cut, block in zip((*ARCH.cuts, "head"), blocks):
            x = block(x)
            seen[cut] = tuple(x.shape[1:])
    assert {cut: seen[cut] for cut in expected} == expected and seen["head"] == (10,)


def test_build_splits_blocks_at_the_cut() -> None:
    encoder, head = ARCH.build((3, 32, 32), 10, "layer2")
    assert len(encoder) == 3 and len(head) == 3 and activation_shape(encoder, (3, 32, 32)) == (128, 16, 16)
    with torch.no_grad():
        assert head(encoder(torch.zeros(2, 3, 32, 32))).shape == (2, 10)


def test_torchvision_layout_and_size() -> None:
    encoder, head = ARCH.build((3, 32, 32), 10, "layer4")
    blocks = [m for m in encoder.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 8 and sum(isinstance(b.downsample, torch.nn.Sequential) for b in blocks) == 3
    params = sum(p.numel() for p in (*encoder.parameters(), *head.parameters()))
    assert params == 11_173_962  # torchvision resnet18(num_classes=10) with the 3x3 stem: 11,173,962


@pytest.mark.parametrize("bad", [2, "layer5", "fc", "2"])
def test_unknown_cuts_name_the_known_ones(bad: object) -> None:
    with pytest.raises(InputError, match=r"architecture 'resnet18' has cuts \['stem', 'layer1', 'layer2', 'layer3', 'layer4'\]"):
        TrainConfig(arch="resnet18", cut=bad)


def test_number_cuts_still_take_text_and_refuse_names() -> None:
    assert TrainConfig(arch="small-cnn", cut="3").cut == 3
    with pytest.raises(InputError, match="has cuts"):
        TrainConfig(arch="small-cnn", cut="layer2")


def test_checkpoint_records_a_named_cut(tmp_path) -> None:  # noqa: ANN001
    spec = InputSpec(shape=(3, 16, 16))
    model = make_split_model(arch="resnet18", cut="layer1", spec=spec, num_classes=3, init=generator(0, "test"))
    meta = CheckpointMeta(arch="resnet18", cut="layer1", num_classes=3, input_spec=spec, defense=DefenseRecord("none", {}))
    loaded = load_checkpoint(save_checkpoint(tmp_path / "r.safetensors", model, meta))
    assert loaded.meta.cut == "layer1" and loaded.model.cut == "layer1" and loaded.architecture[:2] == ("resnet18", "layer1")
    x = torch.rand(2, 3, 16, 16)
    model.eval()
    assert torch.equal(loaded.model.client(x), model.client(x))


def test_weights_come_from_the_generator() -> None:
    def fresh() -> torch.nn.Module:
        return torch.nn.Sequential(*ARCH.build((3, 16, 16), 2, "stem"))

    a, b = build(fresh, generator(1, "x")), build(fresh, generator(1, "x"))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
