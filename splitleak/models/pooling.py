"""2x2 max-pooling that gives exactly `nn.MaxPool2d(2)`'s values and gradients, faster on the CPU.

torch's CPU max_pool2d on NCHW tensors is slow for a 2x2 window: 16.5 ms forward at [256, 16,
28, 28] on one thread, where three elementwise maxima of the window's four strided views take 2.5
ms (`python -m benchmarks --only pool`: 6-7x forward, 1.3x forward + backward; a quick demo's
stages ran ~10% faster, with bitwise the same results). `MaxPool2x2` computes the values that
way; when a gradient is needed it also derives the argmax the way max_pool2d picks it (the
first maximum in row-major order within the window, so ties, such as the flat background of an
image, go where max_pool2d sends them) and hands the backward to torch's own max_pool2d backward. Values, indices and gradients are bitwise those of
`F.max_pool2d(x, 2)` for finite inputs (tests/models/test_pooling.py); where a NaN is in a window
the value is NaN as well, and the gradient may go to another NaN of the window. Elsewhere (CUDA,
TorchScript, torch.export, not 4-D) it is `F.max_pool2d`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _corners(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The window's four positions as strided views, in row-major order (odd last rows/columns dropped, as max_pool2d does)."""
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    return x[..., 0:h:2, 0:w:2], x[..., 0:h:2, 1:w:2], x[..., 1:h:2, 0:w:2], x[..., 1:h:2, 1:w:2]


def max_pool_values(x: Tensor) -> Tensor:
    """`F.max_pool2d(x, 2)`'s values (no gradient bookkeeping)."""
    a, b, c, d = _corners(x)
    return torch.maximum(torch.maximum(a, b), torch.maximum(c, d))


def max_pool_with_indices(x: Tensor) -> tuple[Tensor, Tensor]:
    """`F.max_pool2d(x, 2, return_indices=True)`: values and flat indices into each H x W plane."""
    a, b, c, d = _corners(x)
    upper, lower = torch.maximum(a, b), torch.maximum(c, d)
    width = x.shape[-1]
    rows, cols = upper.shape[-2:]
    base = torch.arange(0, 2 * rows * width, 2 * width, device=x.device).view(rows, 1) + torch.arange(0, 2 * cols, 2, device=x.device)
    # first maximum in row-major order: a before b, the upper pair before the lower one
    offset = torch.where(lower > upper, (d > c).to(torch.int64) + width, (b > a).to(torch.int64))
    return torch.maximum(upper, lower), offset.add_(base)


class _MaxPool2x2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        values, indices = max_pool_with_indices(x)
        ctx.save_for_backward(x, indices)
        return values

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        x, indices = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(grad.contiguous(), x, [2, 2], [2, 2], [0, 0], [1, 1], False, indices)


class MaxPool2x2(nn.MaxPool2d):
    """`nn.MaxPool2d(2)` (same module type, no state), computed by `max_pool_values` /
    `max_pool_with_indices` on CPU 4-D tensors."""

    def __init__(self) -> None:
        super().__init__(2)

    def forward(self, x: Tensor) -> Tensor:
        if torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling() or x.device.type != "cpu" or x.dim() != 4:
            return F.max_pool2d(x, 2)
        return self._fast(x)

    @torch.jit.unused
    def _fast(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return _MaxPool2x2.apply(x)
        return max_pool_values(x)
