"""The one split-model builder: an architecture from the registry, cut, input spec and defense
transform, initialised from a generator (training) or left for a checkpoint's weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from splitleak._random import build, constructed
from splitleak.cuts import Cut
from splitleak.data import InputSpec
from splitleak.defenses import make_defense
from splitleak.models.architectures import get_architecture
from splitleak.models.split import SplitModel


def make_split_model(
    *,
    arch: str,
    cut: Cut,
    spec: InputSpec,
    num_classes: int,
    defense: str = "none",
    defense_params: Mapping[str, Any] | None = None,
    init: torch.Generator | None = None,
    transform: torch.Generator | None = None,
) -> SplitModel:
    """A SplitModel of architecture ``arch`` cut at ``cut`` for ``spec``-shaped inputs.

    With ``init`` its weights are drawn from that generator (``splitleak._random.build``);
    without, they are about to be overwritten (a checkpoint's) and the constructors' default draws
    leave torch's global generator as it was (``constructed``). The defense's transform, if it
    draws (noise, dropout), draws from ``transform`` (default: its own generator, seeded 0).
    """
    architecture = get_architecture(arch)
    cut = architecture.resolve_cut(cut)
    layer = make_defense(defense, dict(defense_params or {})).transform(transform)

    def fresh() -> SplitModel:
        encoder, head = architecture.build(spec.shape, int(num_classes), cut)
        return SplitModel(encoder, head, spec, transform=layer, arch=architecture.name, cut=cut)

    return constructed(fresh) if init is None else build(fresh, init)
