"""The adaptive attacker of a stochastic defense: it knows the defense and its parameters
(Kerckhoffs) and sees each private image released more than once.

A defense that draws (activation noise, dropout) hides an activation behind a fresh draw on every
release. In split learning the client releases each training image once per epoch, every time
with a new draw, and an inference client may be queried with the same input again. An attacker
who knows the defense combines the `k` releases of one image with the defense's own estimator
(`estimate(releases)` on the defense class: the mean for Gaussian noise, the median for Laplace
noise, dropout's exact unmasking) and attacks that estimate; its query interface answers with
the same estimate over `k` fresh releases, so whatever it learns from queries (the decoder's
inverse network) is trained on what it will be asked to invert.

`EvalConfig.observations` sets `k`: a number, or "epochs" (the checkpoint's training epochs:
as many releases as training made of each image). One release is the non-adaptive attacker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from splitleak._random import Stochastic
from splitleak.defenses import DEFENSES, make_defense
from splitleak.errors import InputError

EPOCHS = "epochs"  # observations = "epochs": one release per training epoch
MAX_OBSERVATIONS = 1000
Estimator = Callable[[Tensor], Tensor]


def mean_of_releases(releases: Tensor) -> Tensor:
    """The mean over releases (dimension 0): the estimator for zero-mean additive noise."""
    return releases.mean(0)


@dataclass(frozen=True)
class Adaptive:
    """How one evaluation's attacker combines releases: `releases` per image, by `estimator`."""

    releases: int
    estimator: Estimator
    estimator_name: str

    def describe(self) -> dict[str, Any]:
        return {"releases": self.releases, "estimator": self.estimator_name}

    @torch.no_grad()
    def observe(self, client: Callable[[Tensor], Tensor], x: Tensor, first: Tensor | None = None, *, device: str = "cpu", batch: int = 256) -> Tensor:
        """The estimate from `releases` draws of `client(x)` per image, in batches of images.

        `first` (the release already made, e.g. the scored one) counts as each image's first
        draw; the others are drawn from the client in order, batch by batch (on `device`; the
        estimate comes back on the CPU).
        """
        out: Tensor | None = None  # preallocated: no second copy of the estimate
        for i in range(0, len(x), batch):
            chunk = x[i : i + batch].to(device)
            draws = [first[i : i + batch].to(device)] if first is not None else []
            draws += [client(chunk) for _ in range(self.releases - len(draws))]
            estimate = self.estimator(torch.stack(draws)).cpu()
            if out is None:
                out = torch.empty((len(x), *estimate.shape[1:]), dtype=estimate.dtype)
            out[i : i + batch] = estimate
        assert out is not None, "no images"
        return out

    def query(self, client: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
        """A query interface answering with the estimate over `releases` fresh draws per input."""
        return lambda x: self.estimator(torch.stack([client(x) for _ in range(self.releases)]))


def draws(model: nn.Module) -> bool:
    """Whether the model's release draws random numbers (a `Stochastic` layer anywhere in it)."""
    return any(isinstance(m, Stochastic) for m in model.modules())


def releases_for(observations: int | str, train: Mapping[str, Any] | None) -> int:
    """`observations` as a number: "epochs" is the checkpoint's recorded training epochs."""
    if observations != EPOCHS:
        return int(observations)
    epochs = (train or {}).get("epochs")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise InputError("observations = 'epochs' needs a checkpoint that records its training epochs; give a number of observations instead")
    return min(epochs, MAX_OBSERVATIONS)


def adaptive_for(observations: int | str, defense: str, params: Mapping[str, Any], train: Mapping[str, Any] | None, model: nn.Module) -> Adaptive | None:
    """The evaluation's adaptive attacker, or None when there is nothing to combine (one release,
    or a model that draws nothing, whose releases are all equal). A defense splitleak does not
    know (a foreign model's randomness) is estimated by the mean."""
    releases = releases_for(observations, train)
    if releases < 2 or not draws(model):
        return None
    if defense in DEFENSES:
        own = getattr(make_defense(defense, params), "estimate", None)
        if own is not None:
            return Adaptive(releases, own, f"{defense}.estimate")
    return Adaptive(releases, mean_of_releases, "mean")


def check_observations(value: Any) -> int | str:
    """A whole number in [1, MAX_OBSERVATIONS] or "epochs"."""
    if value == EPOCHS:
        return EPOCHS
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_OBSERVATIONS:
        raise InputError(f"observations must be a whole number from 1 to {MAX_OBSERVATIONS} or {EPOCHS!r}, got {value!r}")
    return value
