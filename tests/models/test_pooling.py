import pytest
import torch
import torch.nn.functional as F
from torch import nn

from splitleak.models.pooling import MaxPool2x2, max_pool_values, max_pool_with_indices


def _inputs() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, 14, 12, generator=g)
    ties = (x * 2).round() / 2  # many equal values in a window
    flat = torch.relu(ties)  # runs of zeros, as after a ReLU over an image's background
    odd = torch.randn(3, 2, 7, 9, generator=g)  # max_pool2d drops the last row and column
    channels_last = flat.contiguous(memory_format=torch.channels_last)  # as mkldnn convolutions may return them
    return [x, ties, flat, odd, torch.full((2, 3, 4, 4), 0.25), channels_last]


@pytest.mark.parametrize("k", range(6))
def test_values_indices_and_gradients_are_bitwise_max_pool2d(k: int) -> None:
    x = _inputs()[k]
    values, indices = F.max_pool2d(x, 2, return_indices=True)
    ours, our_indices = max_pool_with_indices(x)
    assert torch.equal(ours, values) and torch.equal(our_indices, indices) and torch.equal(max_pool_values(x), values)
    upstream = torch.randn(values.shape, generator=torch.Generator().manual_seed(k))
    reference, mine = x.clone().requires_grad_(), x.clone().requires_grad_()
    F.max_pool2d(reference, 2).backward(upstream)
    MaxPool2x2()(mine).backward(upstream)
    assert torch.equal(mine.grad, reference.grad)


def test_a_network_trains_to_the_same_weights() -> None:
    def net(pool: nn.Module) -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), pool, nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))

    x = torch.rand(32, 1, 16, 16, generator=torch.Generator().manual_seed(1)).round()  # binary images: many ties
    y = torch.arange(32) % 3
    nets = [net(nn.MaxPool2d(2)), net(MaxPool2x2())]
    for model in nets:
        optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(5):
            optimiser.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimiser.step()
    assert all(torch.equal(p, q) for p, q in zip(nets[0].parameters(), nets[1].parameters()))


def test_it_is_still_a_max_pool_module_that_torchscript_and_export_take() -> None:
    pool = MaxPool2x2()
    assert isinstance(pool, nn.MaxPool2d) and pool.kernel_size == 2 and pool.stride == 2
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), pool)
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(torch.jit.script(model)(x), model(x))
    exported = torch.export.export(model.eval(), (x,))  # torch.export sees torch's own operator
    assert torch.equal(exported.module()(x), model(x)) and "max_pool2d" in str(exported.graph)
    assert torch.equal(pool(x[0]), F.max_pool2d(x[0], 2))  # 3-D input: torch's own path
