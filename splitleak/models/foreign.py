"""Models trained outside splitleak: TorchScript, torch.export programs, Python factories + weights.

A file's kind is read from its bytes, never from its name (`detect`). What each kind may do when
loaded or run, and so which need `allow_code`, is the trust model of docs/trust.md:

* data, loaded without running anything: splitleak checkpoints and bare weights in safetensors;
  state dicts written by `torch.save`, read only with `torch.load(weights_only=True)` (a
  restricted unpickler that builds tensors and containers and refuses every other global);
* programs, loaded only with `allow_code`: TorchScript (no Python, but `torch.jit.load` runs the
  archive's `__setstate__` methods and its code may call any torch operator, including ones that
  create and write files, e.g. `torch.from_file(..., shared=True)`), torch.export programs
  (`torch.export.load` unpickles parts of a .pt2 archive with full pickle and may load compiled
  AOTInductor libraries) and model factories (`package.module:function`, imported and called).

`load_foreign` wraps the encoder (and the server head, when given) in a `SplitModel` with the
user's input spec and returns a `ForeignCheckpoint`, which `evaluate` takes like a splitleak
checkpoint. Its SHA-256 (the results' `run`) covers every file, the factories' source files and
the input spec.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import json
import os
import re
import struct
import sys
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from splitleak._io import MAX_SAFETENSORS_HEADER, is_safetensors_head, sha256_file
from splitleak._parse import loads_json
from splitleak._random import constructed
from splitleak.data import InputSpec
from splitleak.models.checkpoint import Checkpoint, CheckpointError, load_weights
from splitleak.models.split import SplitModel
from splitleak.records import CheckpointMeta, DefenseRecord

SPLITLEAK = "splitleak-checkpoint"
SAFETENSORS = "safetensors"
TORCH_SAVE = "torch.save"
PICKLE = "pickle"
TORCHSCRIPT = "torchscript"
EXPORT = "torch.export"
FACTORY = "factory"

RUNS_CODE: dict[str, str] = {
    TORCHSCRIPT: (
        "is a TorchScript program: torch.jit.load runs its __setstate__ methods and evaluating it runs its code, "
        "which cannot import Python but can call any torch operator, including ones that create and write files "
        "(torch.from_file(..., shared=True))"
    ),
    EXPORT: (
        "is a torch.export program: torch.export.load unpickles parts of a .pt2 archive with full pickle "
        "(torch's own documentation: never load one from an untrusted source) and can load compiled AOTInductor libraries"
    ),
    FACTORY: "names Python code that splitleak would import and call",
}
"""The kinds that run code, and why; each needs `allow_code`."""

_FACTORY_SPEC = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def detect(path: str | os.PathLike[str]) -> str:
    """The kind of model file at `path`, read from its bytes (nothing is loaded or run).

    One of SPLITLEAK, SAFETENSORS, TORCH_SAVE (a zip archive written by torch.save), PICKLE
    (a bare pickle, e.g. legacy torch.save), TORCHSCRIPT or EXPORT; CheckpointError for a file
    that is missing, empty, truncated or none of these.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file {path} does not exist or is not a file")
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if head[:1] == b"\x80" and not is_safetensors_head(head, size):
        return PICKLE
    if size < 8:
        raise CheckpointError(f"{path} is empty or truncated ({size} bytes)")
    if head[:4] == b"PK\x03\x04":
        return _zip_kind(path)
    (header_len,) = struct.unpack("<Q", head[:8])
    if 2 <= header_len <= MAX_SAFETENSORS_HEADER and head[8:9] == b"{":
        if header_len > size - 8:
            raise CheckpointError(f"{path} is a truncated safetensors file (its header wants {header_len} bytes, {size - 8} follow)")
        return _safetensors_kind(path, header_len)
    raise CheckpointError(
        f"{path} is not a model file splitleak knows (safetensors, TorchScript, torch.export .pt2, or a torch.save state dict)"
    )


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise CheckpointError(f"{path} is a truncated or corrupt zip archive ({err})") from None
    if any("/code/" in name for name in names) and any(name.endswith("/constants.pkl") for name in names):
        return TORCHSCRIPT
    if any(name.endswith("/archive_format") for name in names) or any("/models/" in name and name.endswith(".json") for name in names):
        return EXPORT
    if any(name.endswith("data.pkl") for name in names):
        return TORCH_SAVE
    raise CheckpointError(f"{path} is a zip archive but neither TorchScript, torch.export nor torch.save")


def _safetensors_kind(path: Path, header_len: int) -> str:
    with open(path, "rb") as handle:
        handle.seek(8)
        raw = handle.read(header_len)
    if len(raw) < header_len:
        raise CheckpointError(f"{path} is a truncated safetensors file")
    try:
        header = loads_json(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} has a corrupt safetensors header ({err})") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return SPLITLEAK if isinstance(meta, dict) and "splitleak" in meta else SAFETENSORS


# --------------------------------------------------------------------------------------------
# What to load
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSource:
    """Where a foreign client encoder (and optionally the server head) comes from.

    `encoder`: a TorchScript file, a torch.export .pt2, or, with `factory`, a weights file
    (safetensors or a torch.save state dict) for the module `factory()` returns. `head` and
    `head_factory` likewise for the server head (optional). `allow_code` opts in to the kinds
    that run code (RUNS_CODE).
    """

    encoder: str
    factory: str | None = None
    head: str | None = None
    head_factory: str | None = None
    allow_code: bool = False

    def __post_init__(self) -> None:
        for name in ("factory", "head_factory"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, str) and _FACTORY_SPEC.match(value)):
                raise CheckpointError(f"{name.replace('_', '-')} must look like package.module:function, got {value!r}")
        if self.head_factory is not None and self.head is None:
            raise CheckpointError("--head-factory needs --head, the weights file of the head it builds")


@dataclass(frozen=True)
class Part:
    """One loaded piece: its role, the loader kind, the file and its hash, the factory and its source hash."""

    role: str
    kind: str
    path: str
    sha256: str
    factory: str | None = None
    factory_source: str | None = None
    factory_source_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class Opaque(nn.Module):
    """A TorchScript or exported module with its train/eval mode fixed at load time.

    torch.export modules refuse `.train()` / `.eval()`, and a foreign program's mode is part of
    what was exported, so `SplitModel.eval()` must not reach inside.
    """

    def __init__(self, inner: nn.Module, kind: str) -> None:
        super().__init__()
        self.inner = inner
        self.kind = kind

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x)

    def train(self, mode: bool = True) -> "Opaque":
        self.training = mode
        return self


class NoHead(nn.Module):
    """Stands in for a server head that was not given: zero logits columns, never used for scores."""

    def forward(self, z: Tensor) -> Tensor:
        return z.new_zeros(z.shape[0], 0)


@dataclass(frozen=True)
class ForeignCheckpoint(Checkpoint):
    """A foreign encoder (+ head) as `evaluate` takes it; `meta` says what it is and where from."""

    head_given: bool = False
    clone: Callable[[], SplitModel] | None = None
    parts: tuple[Part, ...] = ()

    @property
    def has_head(self) -> bool:
        return self.head_given

    @property
    def architecture(self) -> tuple[str | None, int | None, Callable[[], SplitModel] | None]:
        return None, None, self.clone

    def describe(self) -> dict[str, Any]:
        return {
            "loader": self.parts[0].kind,
            "sha256": self.sha256,
            "files": [part.to_dict() for part in self.parts],
            "head": self.head_given,
            "clone": "fresh model from the factory" if self.clone is not None else None,
            **({"data_caveat": self.data_caveat} if self.data_caveat else {}),
        }


def load_foreign(
    source: ModelSource, spec: InputSpec, num_classes: int | None = None, sample: Tensor | None = None
) -> ForeignCheckpoint:
    """Load a foreign encoder (and head) for inputs described by `spec`; check that they fit.

    `num_classes`: the data's label count (None: unlabelled data), checked against the head's
    output. `sample`: the real data's first images, run through the model as the check (as the
    attacks will see them); None: two mid-range inputs of `spec`'s shape. Raises CheckpointError
    (a ValueError) naming what was refused or does not fit.
    """
    encoder, encoder_part, encoder_factory = _load_part("encoder", source.encoder, source.factory, source.allow_code)
    head: nn.Module = NoHead()
    parts = [encoder_part]
    if source.head is not None:
        head, head_part, _ = _load_part("head", source.head, source.head_factory, source.allow_code)
        parts.append(head_part)
    label = encoder_part.kind if encoder_factory is None else f"factory:{source.factory}"
    model = SplitModel(encoder, head, spec, arch=label, cut=0).eval()
    classes = _probe(model, spec, source, num_classes, sample)
    clone = None
    if encoder_factory is not None:
        clone = _clone_builder(encoder_factory, str(source.factory), spec)
    meta = CheckpointMeta(
        arch=label,
        cut=0,
        num_classes=num_classes if num_classes is not None else (classes or 0),
        input_spec=spec,
        defense=DefenseRecord(name="unknown"),
        foreign={"parts": [p.to_dict() for p in parts], "head": source.head is not None},
    )
    # the run's identity: file contents, loaders, factories' code and input spec, not where files lie
    keys = ("role", "kind", "sha256", "factory", "factory_source_sha256")
    identity = json.dumps({"parts": [{k: getattr(p, k) for k in keys} for p in parts], "input_spec": spec.to_dict()}, sort_keys=True)
    return ForeignCheckpoint(
        model=model, meta=meta, sha256=hashlib.sha256(identity.encode()).hexdigest(), path=Path(source.encoder),
        head_given=source.head is not None, clone=clone, parts=tuple(parts),
    )


def check_source(source: ModelSource) -> None:
    """Refuse what `load_foreign` would refuse without loading anything (kinds, code, pickles)."""
    _classify("encoder", Path(source.encoder), source.factory, source.allow_code)
    if source.head is not None:
        _classify("head", Path(source.head), source.head_factory, source.allow_code)


def _classify(role: str, path: Path, factory: str | None, allow_code: bool) -> str:
    """The file's kind, after every refusal that needs only its bytes and the options."""
    kind = detect(path)
    if factory is not None:
        if kind in (TORCHSCRIPT, EXPORT, SPLITLEAK):
            raise CheckpointError(f"{path} is a {kind} file, not bare weights: a factory takes a safetensors or torch.save state dict")
        _require_code(FACTORY, f"{factory}", allow_code)
        return kind
    if kind in (TORCHSCRIPT, EXPORT):
        _require_code(kind, str(path), allow_code)
        return kind
    if kind == SPLITLEAK:
        raise CheckpointError(f"{path} is a splitleak checkpoint; evaluate it as the model file, without foreign-model options")
    if kind == PICKLE:
        raise CheckpointError(
            f"{path} is a Python pickle; splitleak never unpickles a model because unpickling can run arbitrary code. "
            "A state dict is read (with torch.load(weights_only=True)) only together with --factory; or save the model with torch.jit.save"
        )
    raise CheckpointError(
        f"{'--head' if role == 'head' else 'the model file'} {path} holds bare weights ({kind}) without the code that uses them: "
        f"name the module they belong to with {'--head-factory' if role == 'head' else '--factory'} package.module:function --allow-code"
    )


def _load_part(role: str, path_str: str, factory: str | None, allow_code: bool) -> tuple[nn.Module, Part, Callable[[], nn.Module] | None]:
    path = Path(path_str)
    kind = _classify(role, path, factory, allow_code)
    if factory is not None:
        build = _import_factory(factory)
        module = _build(build, factory)
        _load_weights(module, path, kind, factory)
        source_file, source_hash = _source_of(build)
        part = Part(role, FACTORY, str(path), sha256_file(path), factory, source_file, source_hash)
        return module, part, build
    module = Opaque(_load_program(path, kind), kind)
    return module, Part(role, kind, str(path), sha256_file(path)), None


def _require_code(kind: str, what: str, allow_code: bool) -> None:
    if not allow_code:
        raise CheckpointError(f"refused: {what} {RUNS_CODE[kind]}; pass --allow-code only if you trust it (docs/trust.md)")


def _load_program(path: Path, kind: str) -> nn.Module:
    try:
        if kind == TORCHSCRIPT:
            module = torch.jit.load(str(path), map_location="cpu")
            module.eval()
            return module
        return torch.export.load(str(path)).module()
    except Exception as err:  # noqa: BLE001 - any failure of a foreign file is bad input
        raise CheckpointError(f"{path} is not a loadable {kind} file ({_first_line(err)})") from None


@contextlib.contextmanager
def _cwd_importable() -> Iterator[None]:
    """Put the current directory first on sys.path while importing (as `python -m` does)."""
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(cwd)


def _import_factory(spec: str) -> Callable[[], nn.Module]:
    module_name, _, attr = spec.partition(":")
    try:
        with _cwd_importable():
            module = importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001 - user code: any failure is a clear bad-input error
        raise CheckpointError(f"cannot import {module_name} for factory {spec}: {type(err).__name__}: {_first_line(err)}") from None
    obj: Any = module
    for name in attr.split("."):
        if not hasattr(obj, name):
            raise CheckpointError(f"factory {spec}: {module_name} has no attribute {attr!r}")
        obj = getattr(obj, name)
    if not callable(obj):
        raise CheckpointError(f"factory {spec} is not callable")
    return obj


def _build(build: Callable[[], nn.Module], spec: str) -> nn.Module:
    """The factory's module; its constructors' default draws leave torch's global generator as it
    was (the weights are loaded next, or a clone is re-initialised from the attack's generator)."""
    try:
        module = constructed(build)
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(f"factory {spec} raised {type(err).__name__}: {_first_line(err)}") from None
    if not isinstance(module, nn.Module):
        raise CheckpointError(f"factory {spec} returned {type(module).__name__}, not a torch.nn.Module")
    return module


def _source_of(build: Callable[..., Any]) -> tuple[str | None, str | None]:
    try:
        source = inspect.getsourcefile(build)
    except TypeError:
        return None, None
    if source is None or not Path(source).is_file():
        return None, None
    return source, sha256_file(source)


def read_state_dict(path: str | os.PathLike[str], kind: str | None = None) -> dict[str, Tensor]:
    """Tensors of a weights file without running code: safetensors, or torch.load(weights_only=True)."""
    path = Path(path)
    kind = kind or detect(path)
    if kind in (SAFETENSORS, SPLITLEAK):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"{path} is not a readable safetensors file ({_first_line(err)})") from None
    if kind not in (TORCH_SAVE, PICKLE):
        raise CheckpointError(f"{path} is a {kind} file, not a state dict")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr: the error says enough
            warnings.simplefilter("ignore")
            loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError, ...
        lines = [line.strip() for line in str(err).splitlines() if "GLOBAL" in line or "Unsupported" in line]
        why = lines[0] if lines else _first_line(err)
        raise CheckpointError(
            f"refused {path}: torch.load(weights_only=True), the restricted unpickler, would not read it and nothing in it ran ({why})"
        ) from None
    if isinstance(loaded, Mapping) and "state_dict" in loaded and isinstance(loaded["state_dict"], Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in loaded.items()):
        keys = list(loaded)[:5] if isinstance(loaded, Mapping) else type(loaded).__name__
        raise CheckpointError(f"{path} does not hold a state dict of named tensors (found {keys})")
    return dict(loaded)


def _load_weights(module: nn.Module, path: Path, kind: str, spec: str) -> None:
    load_weights(module, read_state_dict(path, kind), path, f"the module from {spec}")


def _probe(model: SplitModel, spec: InputSpec, source: ModelSource, num_classes: int | None, sample: Tensor | None) -> int | None:
    """Run `sample` (or two mid-range inputs) through the model; the head's class count (None without a head)."""
    low, high = spec.value_range
    x = torch.full((2, *spec.shape), (low + high) / 2) if sample is None or len(sample) == 0 else sample
    n = len(x)
    try:
        with torch.no_grad():
            z = model.client(x)
    except Exception as err:  # noqa: BLE001 - foreign code: any failure means it does not fit
        hint = ""
        if isinstance(model.encoder, Opaque) and model.encoder.kind == EXPORT:
            hint = " (export it with a dynamic batch dimension, e.g. dynamic_shapes={'x': {0: torch.export.Dim('batch')}})"
        raise CheckpointError(
            f"the encoder {source.encoder} does not take inputs of shape {list(x.shape)} (batch of {n}, input spec {list(spec.shape)}): {_first_line(err)}{hint}"
        ) from None
    if not isinstance(z, Tensor) or z.ndim < 2 or z.shape[0] != n or not z.is_floating_point():
        got = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise CheckpointError(f"the encoder {source.encoder} must return one floating-point activation tensor [B, ...] per batch, got {got}")
    if source.head is None:
        return None
    try:
        with torch.no_grad():
            logits = model.head(z)
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(f"the head {source.head} does not take the encoder's activations of shape {list(z.shape[1:])}: {_first_line(err)}") from None
    if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[0] != n:
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise CheckpointError(f"the head {source.head} must return logits [B, classes], got {got}")
    if num_classes is not None and logits.shape[1] != num_classes:
        raise CheckpointError(f"the head {source.head} gives {logits.shape[1]} classes but the data has {num_classes}")
    return int(logits.shape[1])


def _clone_builder(build: Callable[[], nn.Module], spec: str, input_spec: InputSpec) -> Callable[[], SplitModel]:
    """A fresh, untrained model from the factory for unsplit and shadow (head unused: Identity)."""

    def clone() -> SplitModel:
        return SplitModel(_build(build, spec), nn.Identity(), input_spec, arch=f"factory:{spec}", cut=0)

    return clone


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


__all__ = [
    "EXPORT",
    "FACTORY",
    "PICKLE",
    "RUNS_CODE",
    "SAFETENSORS",
    "SPLITLEAK",
    "TORCHSCRIPT",
    "TORCH_SAVE",
    "ForeignCheckpoint",
    "ModelSource",
    "NoHead",
    "check_source",
    "Opaque",
    "Part",
    "detect",
    "load_foreign",
    "read_state_dict",
]
