import pytest
import torch

from splitleak.data import InputSpec
from splitleak.models import ARCHITECTURES, SplitModel, activation_shape, get_architecture


@pytest.mark.parametrize(("name", "shape"), [("small-cnn", (1, 28, 28)), ("cifar-cnn", (3, 32, 32))])
def test_every_cut_splits_the_same_network(name: str, shape: tuple[int, int, int]) -> None:
    arch = get_architecture(name)
    x = torch.rand(3, *shape)
    sizes = []
    for cut in arch.cuts:
        torch.manual_seed(0)
        encoder, head = arch.build(shape, 10, cut)
        logits = head(encoder(x))
        assert logits.shape == (3, 10)
        sizes.append(torch.tensor(activation_shape(encoder, shape)).prod().item())
        torch.manual_seed(0)
        full = torch.nn.Sequential(*arch.blocks(shape, 10))
        torch.testing.assert_close(logits, full(x))  # same weights, same function, whatever the cut
    assert len(sizes) == len(arch.cuts) >= 4


def test_small_cnn_shapes_match_the_comments() -> None:
    arch = get_architecture("small-cnn")
    expected = {1: (16, 28, 28), 2: (32, 14, 14), 3: (64, 7, 7), 4: (128,)}
    for cut, shape in expected.items():
        encoder, _ = arch.build((1, 28, 28), 10, cut)
        assert activation_shape(encoder, (1, 28, 28)) == shape


@pytest.mark.parametrize(
    ("name", "shape", "cut", "message"),
    [
        ("small-cnn", (1, 28, 28), 9, "has cuts"),
        ("small-cnn", (2, 28, 28), 1, "channel"),
        ("small-cnn", (1, 30, 30), 1, "divisible"),
        ("cifar-cnn", (3, 28, 28), 1, "divisible"),
    ],
)
def test_bad_shapes_and_cuts_are_refused(name, shape, cut, message) -> None:
    with pytest.raises(ValueError, match=message):
        ARCHITECTURES[name].build(shape, 10, cut)


def test_unknown_architecture_lists_known_ones() -> None:
    with pytest.raises(ValueError, match="small-cnn"):
        get_architecture("resnet-9000")


def test_split_model_normalises_inside_and_returns_what_the_server_sees() -> None:
    encoder, head = get_architecture("small-cnn").build((1, 28, 28), 10, 2)
    spec = InputSpec(shape=(1, 28, 28), mean=(0.5,), std=(0.25,))
    model = SplitModel(encoder, head, spec, arch="small-cnn", cut=2).eval()
    x = torch.rand(4, 1, 28, 28)
    logits, z = model(x)
    torch.testing.assert_close(z, encoder((x - 0.5) / 0.25))
    torch.testing.assert_close(logits, head(z))
    torch.testing.assert_close(model.predict(x, batch_size=3), logits)
