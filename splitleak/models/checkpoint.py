"""Checkpoints: one safetensors file with the weights and JSON metadata. Loading runs no code.

safetensors stores raw tensors plus a string-to-string header, so reading one cannot execute
anything. Pickle-based files (torch.save, .pt/.pth) are refused with an explanation rather
than unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from splitleak._io import is_safetensors_head, save_safetensors, sha256_file
from splitleak._parse import loads_json
from splitleak._validate import all_finite
from splitleak.errors import InputError
from splitleak.models.build import make_split_model
from splitleak.models.split import SplitModel
from splitleak.outputs import claim_file, has_safetensors_key
from splitleak.records import CheckpointMeta, RecordError

FORMAT = "splitleak-checkpoint"
FORMAT_VERSION = CheckpointMeta.version
_META_KEY = "splitleak"
_PICKLE_MAGIC = {b"\x80": "a Python pickle", b"PK\x03\x04": "a torch.save zip archive (pickle inside)"}


class CheckpointError(InputError):
    """A checkpoint that cannot be read safely or does not describe a valid model."""


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the model, its metadata, its identity and the file's SHA-256.

    `sha256` identifies the run (the results' `run` and `checkpoint_sha256`): the SHA-256 of the
    weights and the metadata without timings (`content_sha256`), so retraining with the same seed
    gives the same run id; `file_sha256` is the file's own, recorded in the provenance."""

    model: SplitModel
    meta: CheckpointMeta
    sha256: str
    path: Path
    defense_state: dict[str, torch.Tensor] = field(default_factory=dict)  # a trainable defense's modules
    server_state: dict[str, torch.Tensor] = field(default_factory=dict)  # the training server's own modules (FSHA)
    file_sha256: str = ""  # the file's bytes (timings included); empty when not read from a file
    data_caveat: str = ""  # what the evaluation cannot rule out about the data (a foreign model's training set), "" if nothing

    @property
    def has_head(self) -> bool:
        """Whether `model.head` is the trained server head (a foreign encoder may come without)."""
        return True

    @property
    def architecture(self) -> tuple[str | None, int | None, Callable[[], SplitModel] | None]:
        """What an attacker knows of the client's architecture: (registered name, cut, clone builder)."""
        return self.meta.arch, self.meta.cut, None

    def describe(self) -> dict[str, Any]:
        """What was evaluated, for provenance: the loader and each file's SHA-256."""
        return {"loader": "splitleak-checkpoint", "sha256": self.sha256, "files": [{"role": "checkpoint", "path": str(self.path), "sha256": self.file_sha256 or self.sha256}]}


def build_model(meta: CheckpointMeta) -> SplitModel:
    """A SplitModel described by checkpoint metadata, its weights still to be loaded (the
    constructors' default draws leave torch's global generator as it was).

    A defense transform that draws (noise, dropout) draws from its own generator, seeded 0;
    `evaluate` lends it the run's streams (splitleak._random.drawing_from)."""
    return make_split_model(
        arch=meta.arch, cut=meta.cut, spec=meta.input_spec, num_classes=meta.num_classes,
        defense=meta.defense.name, defense_params=meta.defense.params,
    )


def claim_checkpoint(path: str | os.PathLike[str], option: str = "--out") -> None:
    """Refuse (OutputError) if `path` exists and is not a checkpoint splitleak wrote."""
    claim_file(path, has_safetensors_key(_META_KEY), "splitleak checkpoint", option=option)


DEFENSE_PREFIX = "defense/"  # tensors of a trainable defense's own modules ('/' is never in a module's keys)
SERVER_PREFIX = "server/"  # tensors of the training server's own modules (a malicious server's decoder)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: SplitModel,
    meta: CheckpointMeta,
    defense_state: Mapping[str, torch.Tensor] | None = None,
    server_state: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Write weights + metadata atomically to `path` (a .safetensors file) and return the path;
    `defense_state` (a trainable defense's modules) and `server_state` (the training server's,
    e.g. FSHA's decoder) are stored beside the weights.
    An existing file is replaced only if it is a splitleak checkpoint (`claim_checkpoint`)."""
    claim_checkpoint(path)
    if not isinstance(meta, CheckpointMeta):
        raise TypeError(f"save_checkpoint takes a CheckpointMeta, got {type(meta).__name__}")
    header = {_META_KEY: json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, **meta.to_dict()}, sort_keys=True)}
    state = {
        **model.state_dict(),
        **{DEFENSE_PREFIX + k: v for k, v in (defense_state or {}).items()},
        **{SERVER_PREFIX + k: v for k, v in (server_state or {}).items()},
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    path = Path(path)
    save_safetensors(save_file, tensors, path, metadata=header)
    return path


def content_sha256(tensors: Mapping[str, torch.Tensor], meta: CheckpointMeta) -> str:
    """SHA-256 of what identifies a checkpoint's run: every tensor (name, dtype, shape, bytes) and
    the metadata without timings (`CheckpointMeta.identity`). The file's layout plays no part."""
    digest = hashlib.sha256(json.dumps({"format": FORMAT, "meta": meta.identity()}, sort_keys=True, default=str).encode())
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(json.dumps([name, str(tensor.dtype), list(tensor.shape)]).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _refuse_pickles(path: Path) -> None:
    with open(path, "rb") as handle:
        head = handle.read(9)
    if is_safetensors_head(head, path.stat().st_size):
        return
    for magic, what in _PICKLE_MAGIC.items():
        if head.startswith(magic):
            raise CheckpointError(
                f"{path} is {what}; splitleak never unpickles checkpoints because unpickling can run "
                "arbitrary code. Save weights as safetensors (splitleak train does)."
            )


def _read(path: Path) -> tuple[dict[str, tuple[int, ...]], CheckpointMeta]:
    """The shape of each tensor the file declares, and its metadata; no tensor is loaded."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            header = handle.metadata() or {}
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint ({err})") from None
    if _META_KEY not in header:
        raise CheckpointError(f"{path} is a safetensors file without splitleak metadata")
    try:
        meta = loads_json(header[_META_KEY])
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} has corrupt metadata JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} metadata is not a {FORMAT}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {meta.get('format_version')}, this splitleak reads {FORMAT_VERSION}")
    try:
        return shapes, CheckpointMeta.from_dict({k: v for k, v in meta.items() if k not in ("format", "format_version")})
    except RecordError as err:
        raise CheckpointError(f"{path} metadata: {err}") from None


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint ({err})") from None


def _check_described_model(meta: CheckpointMeta, shapes: Mapping[str, tuple[int, ...]], path: Path) -> None:
    """Refuse metadata whose model does not match the file's tensors, before allocating it: the
    model is first built on torch's "meta" device (sizes only, no memory), so a recorded
    `num_classes` or input shape far beyond what the weights hold is refused, never allocated."""
    try:
        with torch.device("meta"):
            expected = build_model(meta).state_dict()
    except (KeyError, TypeError, ValueError, RuntimeError, NotImplementedError) as err:
        raise CheckpointError(f"{path} describes an invalid model: {' '.join(str(err).split())}") from None
    weights = {k: v for k, v in shapes.items() if not k.startswith((DEFENSE_PREFIX, SERVER_PREFIX))}
    missing, unexpected = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
    wrong = [f"{k} is {list(weights[k])}, the model's {list(v.shape)}" for k, v in expected.items() if k in weights and tuple(v.shape) != weights[k]]
    if missing or unexpected or wrong:
        problems = ([f"missing {missing[:3]}"] if missing else []) + ([f"unexpected {unexpected[:3]}"] if unexpected else []) + wrong[:3]
        raise CheckpointError(f"{path} weights do not fit the {meta.arch} cut {meta.cut} its metadata describes ({meta.num_classes} classes, input {list(meta.input_spec.shape)}): {'; '.join(problems)}")


def load_weights(module: torch.nn.Module, tensors: dict[str, torch.Tensor], path: Path, what: str) -> None:
    """Load `tensors` into `module` (strict), refusing NaN/inf weights and tensors of another dtype
    than the module's (int32 bits where float32 is expected would load as garbage), naming `what`."""
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not all_finite(v)]
    if bad:
        raise CheckpointError(f"{path} has non-finite weights in {bad[:3]}")
    own = module.state_dict()
    wrong = [f"{k} is {str(v.dtype).removeprefix('torch.')}, the model's {str(own[k].dtype).removeprefix('torch.')}" for k, v in tensors.items() if k in own and v.dtype != own[k].dtype]
    if wrong:
        raise CheckpointError(f"{path} weights do not fit {what}: {'; '.join(wrong[:3])}")
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise CheckpointError(f"{path} weights do not fit {what}: {' '.join(first[:3])}") from None


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Load a checkpoint written by `save_checkpoint`; the model is returned in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file")
    _refuse_pickles(path)
    if path.stat().st_size < 8:
        raise CheckpointError(f"{path} is empty or truncated")
    shapes, meta = _read(path)
    _check_described_model(meta, shapes, path)
    tensors = _tensors(path)
    try:
        model = build_model(meta)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path} describes an invalid model: {err}") from None
    defense_state = {k[len(DEFENSE_PREFIX):]: v for k, v in tensors.items() if k.startswith(DEFENSE_PREFIX)}
    server_state = {k[len(SERVER_PREFIX):]: v for k, v in tensors.items() if k.startswith(SERVER_PREFIX)}
    weights = {k: v for k, v in tensors.items() if not k.startswith((DEFENSE_PREFIX, SERVER_PREFIX))}
    load_weights(model, weights, path, f"{meta.arch} cut {meta.cut}")
    model.eval()
    return Checkpoint(
        model=model, meta=meta, sha256=content_sha256(tensors, meta), path=path, defense_state=defense_state, server_state=server_state,
        file_sha256=sha256_file(path),
    )

