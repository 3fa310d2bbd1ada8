"""Helpers shared by the optimisation attacks (rmle, unsplit) and the architecture-only ones.

* `total_variation`: the smoothness prior both rMLE and UnSplit add to their objective.
* `InputOptimiser`: Adam on a batch of inputs kept inside the spec's value range, started from
  mid-range grey. Gradients are taken with `torch.autograd.grad` with respect to the inputs
  only, so a victim encoder the objective runs through never gets `.grad` written into it.
* `RunningMeans`: an objective's per-row means over every `reconstruct` call since `fit`
  (evaluate reconstructs a streamed test set chunk by chunk).
* `chunks`: split a batch of activations into fixed-size chunks (memory bound, not a per-sample
  loop).
* `fresh_client`: a freshly initialised encoder of the victim's (public) architecture and cut,
  wrapped so that it takes inputs in the spec's value range, for attacks without the weights.
* `attack_generator`: the generator of one of an attack's random streams.
* `frozen`: a gradient-free eval-mode copy of a module the attacker must not modify (the head).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from splitleak._random import build, generator
from splitleak.attacks.base import Access, ThreatModelError, TrainingServer
from splitleak.data import InputSpec
from splitleak.errors import InputError
from splitleak.models.architectures import activation_shape, get_architecture
from splitleak.models.split import SplitModel


def total_variation(x: Tensor) -> Tensor:
    """Anisotropic total variation per sample: mean |horizontal| + mean |vertical| differences.

    `x` is [B, C, H, W]; returns [B]. Means (not sums) keep the weight comparable across sizes.
    """
    dh = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().flatten(1).mean(1)
    dw = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().flatten(1).mean(1)
    return dh + dw


def per_sample_mse(a: Tensor, b: Tensor) -> Tensor:
    """Mean squared difference per sample: [B, ...] x [B, ...] -> [B]."""
    return (a - b).pow(2).flatten(1).mean(1)


def chunks(z: Tensor, size: int) -> Iterator[Tensor]:
    """Consecutive slices of `z` along the batch axis, `size` rows each (the last may be shorter)."""
    for i in range(0, len(z), size):
        yield z[i : i + size]


class RunningMeans:
    """Sums of per-row objective values (e.g. at the first and the last step) and the rows they
    came from, over several `reconstruct` calls; `means()` is what one call on all rows reports."""

    def __init__(self, size: int) -> None:
        self.sums, self.rows = [0.0] * size, 0

    def add(self, sums: list[float], rows: int) -> list[float]:
        """Add one call's sums over `rows` rows; returns the means so far."""
        self.sums = [a + b for a, b in zip(self.sums, sums)]
        self.rows += rows
        return self.means()

    def means(self) -> list[float]:
        return [s / max(self.rows, 1) for s in self.sums]


class InputOptimiser:
    """Adam over a batch of inputs, projected back into `spec.value_range` after every step.

    Starts from the middle of the value range (0.5 grey for [0, 1] images, as He et al. and
    UnSplit do). `step(objective)` takes a function of the inputs returning one loss per sample
    [B] and minimises their sum: Adam normalises each coordinate, so every sample follows
    the same path it would alone and the batch is only a speed-up.
    """

    def __init__(self, shape: tuple[int, ...], spec: InputSpec, lr: float, device: str | torch.device = "cpu") -> None:
        self.low, self.high = spec.value_range
        self.x = torch.full(shape, (self.low + self.high) / 2, device=device, requires_grad=True)
        self.optimiser = torch.optim.Adam([self.x], lr=lr)

    def step(self, objective: Callable[[Tensor], Tensor]) -> Tensor:
        """One Adam step on `objective(x).sum()`; returns the per-sample losses (detached).
        Gradients are on even where the caller turned them off (`reconstruct` under no_grad)."""
        with torch.enable_grad():
            losses = objective(self.x)
            (grad,) = torch.autograd.grad(losses.sum(), [self.x])
        self.x.grad = grad
        self.optimiser.step()
        with torch.no_grad():
            self.x.clamp_(self.low, self.high)
        return losses.detach()

    def result(self) -> Tensor:
        """The current inputs, detached, in the value range."""
        return self.x.detach().clone()


def attack_generator(seed: int, attack: str, stream: str) -> torch.Generator:
    """A fresh generator for `attack`'s `stream` ("init", "order", ...) under the evaluation's `seed`.

    Named streams (splitleak._random.derive_seed), not `seed` itself: the trainer initialises the
    victim from its "train/init" stream, and an attack that drew from the same stream while
    building the same architecture would start from the victim's exact initial weights --
    which, a few epochs later, are close to its final ones (at cut 1 a random-looking "shadow"
    then already classified 91% of the tiny digits). A new generator on every call: fitting
    twice draws the same numbers, and nothing the caller holds is advanced.
    """
    return generator(seed, "attack", attack, stream)


def fresh_client(access: Access, attack: str, summary: str, init: torch.Generator) -> SplitModel:
    """A freshly initialised copy of the victim's architecture up to its cut (random weights).

    Uses only public knowledge: `access.arch`, `access.cut` and the input spec (plus
    `access.num_classes`, which the encoder's blocks do not depend on). Returned as a
    SplitModel without transform whose `client(x)` normalises like the victim and whose head
    is the architecture's (untrained) head. Raises ThreatModelError when the architecture is
    unknown to the attacker, ValueError when it does not produce `access.activation_shape`.
    Weights are drawn from `init` (splitleak._random.build), never from torch's global generator.

    With `access.clone` (a client from a user's model factory) the clone is whatever that
    builder returns, re-initialised from `init`, instead of a registered architecture.
    """
    if access.clone is not None:
        clone = build(access.clone, init)
        training = clone.training
        got = activation_shape(clone.eval().client, access.spec.shape)  # eval: BatchNorm takes one sample
        clone.train(training)
        if tuple(got) != tuple(access.activation_shape):
            raise InputError(
                f"attack {attack!r}: a fresh model from the factory gives activations {got}, "
                f"but the observed ones are {tuple(access.activation_shape)}"
            )
        return clone.to(access.device)
    if access.arch is None or access.cut is None:
        raise ThreatModelError(
            f"attack {attack!r} ({summary}) needs the client's architecture and cut (Access.arch, Access.cut)"
        )
    arch, cut = get_architecture(access.arch), access.cut

    def fresh() -> SplitModel:
        encoder, head = arch.build(access.spec.shape, access.num_classes or 2, cut)
        return SplitModel(encoder, head, access.spec, arch=arch.name, cut=cut)

    model = build(fresh, init)
    got = activation_shape(model.encoder, access.spec.shape)
    if tuple(got) != tuple(access.activation_shape):
        raise InputError(
            f"attack {attack!r}: {access.arch} cut {access.cut} gives activations {got}, "
            f"but the observed ones are {tuple(access.activation_shape)}"
        )
    return model.to(access.device)


def server_copy(model: SplitModel, init: torch.Generator, server: str, what: str) -> SplitModel:
    """A freshly initialised copy of `model`'s architecture up to its cut, for a training-time
    server's own network (FSHA's pilot, SDAR's simulator); its head is never used."""
    if model.arch is None or model.cut is None:
        raise InputError(f"server {server!r} needs a registered architecture to build its {what}")
    arch = get_architecture(model.arch)
    # the copy's head is never used; its size does not change the encoder
    return build(lambda: SplitModel(*arch.build(model.spec.shape, 2, model.cut), model.spec, arch=arch.name, cut=model.cut), init)


def load_server_module(attack: str, module: nn.Module, server: TrainingServer, prefix: str, shape: tuple[int, ...]) -> nn.Module:
    """`module` with the weights a training-time server kept under `prefix.` in the checkpoint
    (strict: a module that does not fit them is the checkpoint's problem, one line)."""
    state = {k[len(prefix) + 1 :]: v for k, v in server.state.items() if k.startswith(prefix + ".")}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise InputError(f"attack {attack!r}: the checkpoint's server {prefix} does not fit activations {shape}: {str(err).splitlines()[0]}") from None
    return module


def frozen(module: nn.Module) -> nn.Module:
    """Detached copy of `module` in eval mode with gradients off (the original is untouched)."""
    clone = copy.deepcopy(module).eval()
    for p in clone.parameters():
        if p.is_leaf:
            p.requires_grad_(False)
        else:  # a deep-copied TorchScript module's parameters are not leaves
            p.detach_()
    return clone
