"""Explicit randomness: seeds become `torch.Generator`s that are passed down; torch's global
generator is never seeded and never drawn from by splitleak's own code.

* `derive_seed(seed, *names)` / `generator(seed, *names)`: one independent, named stream per
  component ("train/init", "attack/shadow/order", ...), all determined by one user seed. Names
  keep components apart: an attack that builds the victim's architecture does not start from
  the victim's own initial weights just because both were given seed 0.
* `init_module(module, generator)`: re-draws the parameters of every Linear / Conv / norm /
  Embedding layer from `generator`, with the distributions of PyTorch's own `reset_parameters`
  (so an initialisation is the one PyTorch would make from that generator's state).
* `build(factory, generator)`: call a module constructor, then `init_module`. Constructors draw
  their default weights from the global generator; `build` runs them inside `torch.random.
  fork_rng`, started from a seed drawn from `generator`, so the caller's global state is left as
  it was and any parameter `init_module` does not know (a user's custom layer) is reproducible
  too. The fork only confines a side effect: every known weight comes from `generator`.
* `Stochastic`: base of modules that draw in `forward` (the noise and dropout defenses); they
  draw from their own generator, which `drawing_from(model, generator)` swaps for a caller's
  stream for the duration of a block.

Generators here live on the CPU; draws for tensors on another device are made on the CPU and
moved, so a seed gives the same numbers on every device.

What is left on the global generator: layers of a user's own model that draw at forward time
(`nn.Dropout` in a factory clone trained by the shadow attack) -- splitleak cannot reach them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch
from torch import Tensor, nn

M = TypeVar("M")

_SEED_BITS = 63


def derive_seed(seed: int, *names: str) -> int:
    """A seed for the stream `names` of a run seeded with `seed` (SHA-256; 63 bits)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be a whole number, got {seed!r}")
    digest = hashlib.sha256(f"splitleak:{seed}:{'/'.join(names)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**_SEED_BITS - 1)


def generator(seed: int, *names: str) -> torch.Generator:
    """A fresh CPU generator for the stream `names` of a run seeded with `seed`."""
    return torch.Generator().manual_seed(derive_seed(seed, *names))


def _draw_seed(source: torch.Generator) -> int:
    return int(torch.randint(0, 2**_SEED_BITS - 1, (), generator=source, device=source.device))


def _fill(tensor: Tensor, gen: torch.Generator, fill: Callable[[Tensor], object]) -> None:
    """Apply an in-place random `fill` (which draws from `gen`) to `tensor`, on `gen`'s device."""
    if tensor.device == gen.device:
        fill(tensor)
        return
    staging = torch.empty(tensor.shape, dtype=tensor.dtype, device=gen.device)
    fill(staging)
    tensor.copy_(staging)


def _reset_linear_or_conv(layer: nn.Module, gen: torch.Generator) -> None:
    """`nn.Linear.reset_parameters` / `_ConvNd.reset_parameters`, drawing from `gen`."""
    weight, bias = layer.weight, layer.bias
    _fill(weight, gen, lambda t: nn.init.kaiming_uniform_(t, a=math.sqrt(5), generator=gen))
    if bias is None:
        return
    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(weight)
    if fan_in == 0 and not isinstance(layer, nn.Linear):  # as PyTorch: a conv then keeps its bias
        return
    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    _fill(bias, gen, lambda t: nn.init.uniform_(t, -bound, bound, generator=gen))


_DETERMINISTIC_RESETS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


@torch.no_grad()
def init_module(module: M, gen: torch.Generator) -> M:
    """Re-initialise `module`'s layers in place from `gen` with PyTorch's default distributions.

    Linear and Conv/ConvTranspose (any dimension): weights kaiming_uniform_(a=sqrt(5)), biases
    uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)); Embedding: N(0, 1) with the padding row zeroed;
    BatchNorm / InstanceNorm / LayerNorm / GroupNorm: their own (draw-free) reset. Modules are
    visited in `module.modules()` order, weight before bias, so the result depends only on
    `gen`'s state. Parameters of other layer types are left as they are. Returns `module`.
    """
    assert isinstance(module, nn.Module)
    for layer in module.modules():
        if any(nn.parameter.is_lazy(p) for p in layer.parameters(recurse=False)):
            continue  # a lazy layer draws when it first sees an input
        if isinstance(layer, (nn.Linear, nn.modules.conv._ConvNd)):
            _reset_linear_or_conv(layer, gen)
        elif isinstance(layer, nn.Bilinear):
            bound = 1 / math.sqrt(layer.weight.size(1))
            _fill(layer.weight, gen, lambda t: nn.init.uniform_(t, -bound, bound, generator=gen))
            if layer.bias is not None:
                _fill(layer.bias, gen, lambda t: nn.init.uniform_(t, -bound, bound, generator=gen))
        elif isinstance(layer, nn.Embedding):
            _fill(layer.weight, gen, lambda t: nn.init.normal_(t, generator=gen))
            if layer.padding_idx is not None:
                layer.weight[layer.padding_idx].fill_(0)
        elif isinstance(layer, _DETERMINISTIC_RESETS):
            layer.reset_parameters()
    return module


@contextmanager
def _global_confined(seed: int | None) -> Iterator[None]:
    """Run a block that draws from torch's global generator without changing the caller's state;
    with `seed`, the block's draws start from it."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        if seed is not None:
            torch.set_rng_state(torch.Generator().manual_seed(seed).get_state())
        yield


def build(factory: Callable[[], M], gen: torch.Generator) -> M:
    """`factory()` (a module constructor), initialised from `gen` (see the module docstring).

    `gen` advances by one draw (the confined constructor's seed) and then by `init_module`'s.
    """
    seed = _draw_seed(gen)
    with _global_confined(seed):
        module = factory()
    return init_module(module, gen)


def constructed(factory: Callable[[], M]) -> M:
    """`factory()` whose weights are about to be overwritten (a checkpoint's): the default draws
    its constructors make are confined, leaving torch's global generator as it was."""
    with _global_confined(None):
        return factory()


class Stochastic(nn.Module):
    """A module that draws random numbers in `forward`, from `self.generator` only.

    Without a generator it gets its own, seeded 0: a model built without one (a checkpoint
    loaded for inference) is reproducible. `drawing_from` lends it a caller's stream.
    """

    def __init__(self, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)

    def rand(self, shape: torch.Size | tuple[int, ...], *, dtype: torch.dtype, device: torch.device) -> Tensor:
        """Uniform [0, 1) draws of `shape` (contiguous) on `device`."""
        gen = self.generator
        return torch.rand(shape, dtype=dtype, device=gen.device, generator=gen).to(device)

    def randn(self, shape: torch.Size | tuple[int, ...], *, dtype: torch.dtype, device: torch.device) -> Tensor:
        """Standard normal draws of `shape` (contiguous) on `device`."""
        gen = self.generator
        return torch.randn(shape, dtype=dtype, device=gen.device, generator=gen).to(device)


def without_draws(module: nn.Module) -> nn.Module:
    """`module` without the layers that draw: a `Stochastic` layer becomes the identity, an
    `nn.Sequential` keeps its other layers (shared, not copied); any other module holding a
    `Stochastic` layer is dropped whole (the identity). What an attacker who knows a defense can
    compute of its transform: dp-noise's clipping without its noise."""
    if isinstance(module, Stochastic):
        return nn.Identity()
    if not any(isinstance(m, Stochastic) for m in module.modules()):
        return module
    if isinstance(module, nn.Sequential):
        return nn.Sequential(*(without_draws(m) for m in module))
    return nn.Identity()


@contextmanager
def drawing_from(module: nn.Module, gen: torch.Generator) -> Iterator[None]:
    """Within the block, every `Stochastic` layer of `module` draws from `gen` (then its own again)."""
    layers = [m for m in module.modules() if isinstance(m, Stochastic)]
    saved = [m.generator for m in layers]
    for m in layers:
        m.generator = gen
    try:
        yield
    finally:
        for m, own in zip(layers, saved):
            m.generator = own


__all__ = ["Stochastic", "build", "constructed", "derive_seed", "drawing_from", "generator", "init_module", "without_draws"]
