"""The attacker's independent classifier for semantic leakage (evaluation layer).

The attacker trains its own classifier on its auxiliary images and their labels (never the
target model, never the test set); the semantic scorer (splitleak.scoring) applies it to the
reconstructions with the pure metrics of splitleak.metrics.semantic. Training lives here, not in
splitleak.metrics: metrics are pure functions and import neither data nor models.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from splitleak._random import build, generator
from splitleak.data import ArraySplit, InputSpec
from splitleak.errors import InputError
from splitleak.models.architectures import get_architecture
from splitleak.progress import ProgressFactory, silent

STREAM = "semantic-classifier"
"""The classifier's own named streams of the seed ("semantic-classifier/init", ".../order")."""


def train_classifier(
    aux: ArraySplit,
    spec: InputSpec,
    num_classes: int,
    *,
    arch: str = "small-cnn",
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    device: str = "cpu",
    progress: ProgressFactory = silent,
) -> nn.Module:
    """A whole (unsplit) `arch` network trained on the attacker's auxiliary data, in eval mode."""
    if len(aux) < 2:
        raise InputError("the semantic classifier needs at least 2 auxiliary images")
    # Its own named streams of `seed`: drawing from the trainer's "train/init" stream, the same
    # architecture would start from the victim's own initial weights, and the "independent"
    # classifier would not be independent.
    order = generator(seed, STREAM, "order")
    blocks = get_architecture(arch).blocks
    low, high = spec.value_range
    net = build(lambda: _Scaled(nn.Sequential(*blocks(spec.shape, num_classes)), low, high), generator(seed, STREAM, "init")).to(device)
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    with progress(total=epochs * len(aux), desc="semantic classifier: fit") as bar:
        for _ in range(epochs):
            perm = torch.randperm(len(aux), generator=order)
            for i in range(0, len(aux), batch_size):
                idx = perm[i : i + batch_size]
                loss = F.cross_entropy(net(aux.x[idx].to(device)), aux.y[idx].to(device))
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                bar.update(len(idx))
    return net.eval()


_SHARED: OrderedDict[str, nn.Module] = OrderedDict()
SHARED_SIZE = 4
"""Classifiers `shared_classifier` keeps per process (the most recently used ones)."""


def shared_classifier(
    aux: ArraySplit, spec: InputSpec, num_classes: int, *, arch: str, epochs: int, seed: int = 0, device: str = "cpu", progress: ProgressFactory = silent
) -> nn.Module:
    """`train_classifier`, trained once per process for the same auxiliary images, labels and
    settings: the classifier depends on the attacker's data, not on the model attacked, so the
    models of a study (the demo's seven) share one. Keyed by the images' and labels' bytes."""
    key = _fingerprint(aux, spec, num_classes, arch, epochs, seed, device)
    if key in _SHARED:
        _SHARED.move_to_end(key)
        return _SHARED[key]
    net = train_classifier(aux, spec, num_classes, arch=arch, epochs=epochs, seed=seed, device=device, progress=progress)
    _SHARED[key] = net
    while len(_SHARED) > SHARED_SIZE:
        _SHARED.popitem(last=False)
    return net


def _fingerprint(aux: ArraySplit, *settings: object) -> str:
    digest = hashlib.sha256(repr(settings).encode())
    for tensor in (aux.x, aux.y):
        digest.update(str((tensor.dtype, tuple(tensor.shape))).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class _Scaled(nn.Module):
    """Maps inputs from the spec's value range to [0, 1] before the classifier."""

    def __init__(self, net: nn.Module, low: float, high: float) -> None:
        super().__init__()
        self.net, self.low, self.high = net, low, high

    def forward(self, x: Tensor) -> Tensor:
        return self.net((x - self.low) / (self.high - self.low))


__all__ = ["STREAM", "shared_classifier", "train_classifier"]
