"""Resumable runs: finished attacks of `evaluate`, finished epochs of `train`, kept on disk.

Everything here is written atomically (temporary file + rename) as safetensors: raw tensors and
a JSON header, so reading progress back never runs code, and a killed run leaves either the
previous file or the new one. A file that is not what it should be (a pickle, truncated, another
format) is refused with a message saying so; a file written for other settings is not used.

* `AttackProgress`: one file per finished attack in a folder beside the results (`OUT.partial/`),
  named and keyed by a hash of everything that determines that attack's rows: the checkpoint's
  SHA-256, the evaluation config (this attack's options only, so adding an attack to the list
  keeps the others), the data config and origin, LPIPS availability and the splitleak version.
* `TrainProgress`: one file beside the checkpoint (`OUT.partial`) with the model, the optimiser,
  the training's random generators (batch order, and the stream the noise and dropout
  defenses draw from; torch's global generator is not used) and the epoch log after the last
  finished epoch, keyed by the training config (without `epochs`, so a longer run continues a
  shorter one) and the data config.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from splitleak import __version__
from splitleak._io import is_safetensors_head, save_safetensors
from splitleak._parse import loads_json
from splitleak.errors import InputError
from splitleak.outputs import claim_file, claim_folder, has_safetensors_key, mark_folder

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
_ATTACK_FORMAT = "splitleak-attack-progress"
_TRAIN_FORMAT = "splitleak-train-progress"
_HEADER = "splitleak-progress"
_VERSION = 1
_TRAIN_VERSION = 3  # 2: named generators instead of torch's global state; 3: one state dict per participant (model, client optimiser, server, defense)
_RANDOM_STREAMS = 2  # in the attack keys: results of the global-generator era (1) are not reused
_ROW_COLUMNS = ("attack", "metric", "value", "sample", "n", "ci_low", "ci_high")
_PROGRESS_FOLDER = "evaluate-progress"
_PROGRESS_ENTRY = re.compile(r"^(?:[A-Za-z0-9_.-]+-[0-9a-f]{16}\.safetensors|\..+\.tmp)$")
is_progress_file = has_safetensors_key(_HEADER)


class ProgressError(InputError):
    """A progress file that cannot be used safely or does not match."""


def partial_path(out: str | os.PathLike[str]) -> Path:
    """Where a run writing `out` keeps its progress: `out` + '.partial'."""
    out = Path(out)
    return out.with_name(out.name + PARTIAL_SUFFIX)


def digest(material: Mapping[str, Any]) -> str:
    """SHA-256 of canonical JSON (sorted keys; non-JSON values by their str)."""
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def _read(path: Path, expected_format: str, version: int = _VERSION) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Tensors and JSON header of a progress file; ProgressError if it is anything else."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    if not is_safetensors_head(head, path.stat().st_size) and (head[:1] == b"\x80" or head[:4] == b"PK\x03\x04"):
        raise ProgressError(f"refused {path}: it is a pickle or zip archive, not a splitleak progress file; nothing in it was loaded (delete it, or run without --resume)")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            header = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        meta = loads_json(header[_HEADER])
    except (SafetensorError, OSError, ValueError, RuntimeError, KeyError, TypeError) as err:
        raise ProgressError(f"{path} is not a readable splitleak progress file ({type(err).__name__}: {err}); delete it, or run without --resume") from None
    if not isinstance(meta, dict) or meta.get("format") != expected_format or meta.get("version") != version:
        raise ProgressError(f"{path} is not a {expected_format} file of version {version}; delete it, or run without --resume")
    return tensors, meta


def _write(path: Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    header = {_HEADER: json.dumps(meta, sort_keys=True)}
    save_safetensors(save_file, {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, path, metadata=header)


# --------------------------------------------------------------------------------------------
# evaluate: finished attacks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FinishedAttack:
    """What an attack added to the results: its rows (without the run's columns), its entries of
    the reconstructions file (gallery, ...) in the order they were added, and its provenance log."""

    rows: pd.DataFrame
    reconstructions: dict[str, Tensor]
    log: dict[str, Any]

    def frame(self, base: Mapping[str, Any]) -> pd.DataFrame:
        """The rows with the run's identifying columns put back, as evaluate builds them."""
        count = len(self.rows)
        return pd.DataFrame({**{k: [v] * count for k, v in base.items()}, **{c: self.rows[c].array for c in _ROW_COLUMNS}})


class AttackProgress:
    """Finished attacks of one `evaluate` run, kept in `directory` (see the module docstring).

    Without `resume` the folder is emptied when the run starts and filled as attacks finish;
    with it, attacks whose file matches are loaded instead of run again.
    """

    def __init__(self, directory: str | os.PathLike[str], *, resume: bool = False) -> None:
        self.directory = Path(directory)
        self.resume = resume
        self.reused: list[str] = []
        self._material: dict[str, Any] | None = None

    @classmethod
    def beside(cls, out: str | os.PathLike[str], *, resume: bool = False) -> "AttackProgress":
        return cls(partial_path(out), resume=resume)

    def claim(self) -> None:
        """Refuse (OutputError) if the folder exists and is not one splitleak keeps progress in."""
        claim_folder(self.directory, _PROGRESS_FOLDER, legacy=_is_legacy_progress, option="progress folder")

    def bind(self, *, checkpoint_sha256: str, evaluation: Mapping[str, Any], data: Mapping[str, Any], lpips: Mapping[str, Any]) -> None:
        """Fix what the keys are made of; starts over (empties the folder) unless resuming."""
        evaluation = dict(evaluation)
        self._material = {
            "format": _ATTACK_FORMAT,
            "splitleak": __version__,
            "random_streams": _RANDOM_STREAMS,
            "checkpoint_sha256": checkpoint_sha256,
            "evaluation": {k: v for k, v in evaluation.items() if k not in ("attacks", "attack_params")},
            "attack_params": dict(evaluation.get("attack_params") or {}),
            "data": dict(data),
            "lpips": dict(lpips),
        }
        self.claim()
        if not self.resume and self.directory.exists():
            shutil.rmtree(self.directory)

    def key(self, attack: str) -> str:
        if self._material is None:
            raise RuntimeError("call bind() first")
        material = {k: v for k, v in self._material.items() if k != "attack_params"}
        return digest({**material, "attack": attack, "attack_params": self._material["attack_params"].get(attack, {})})

    def path(self, attack: str) -> Path:
        return self.directory / f"{attack}-{self.key(attack)[:16]}.safetensors"

    def load(self, attack: str) -> FinishedAttack | None:
        """The attack's saved outcome, or None when not resuming or nothing matching was saved."""
        path = self.path(attack)
        if not self.resume or not path.exists():
            return None
        tensors, meta = _read(path, _ATTACK_FORMAT)
        if meta.get("key") != self.key(attack) or meta.get("attack") != attack:
            log.warning("%s was written for other settings; running %s again", path, attack)
            return None
        try:
            metrics = list(meta["metrics"])
            ids = tensors["metric_id"].numpy()
            sample = tensors["sample"].numpy()
            rows = pd.DataFrame(
                {
                    "attack": attack,
                    "metric": [metrics[i] for i in ids],
                    "value": tensors["value"].numpy(),
                    "sample": pd.array([int(v) if v >= 0 else pd.NA for v in sample], dtype="Int64"),
                    "n": tensors["n"].numpy(),
                    "ci_low": tensors["ci_low"].numpy(),
                    "ci_high": tensors["ci_high"].numpy(),
                }
            )
            reconstructions = {name: tensors[f"recon/{name}"] for name in meta["reconstructions"]}
            finished = FinishedAttack(rows=rows, reconstructions=reconstructions, log=dict(meta["log"]))
        except (KeyError, IndexError, ValueError, TypeError) as err:
            raise ProgressError(f"{path} is incomplete or inconsistent ({type(err).__name__}: {err}); delete it, or run without --resume") from None
        self.reused.append(attack)
        log.info("attack %s: reusing %s", attack, path)
        return finished

    def save(self, attack: str, rows: pd.DataFrame, reconstructions: Mapping[str, Tensor], attack_log: Mapping[str, Any]) -> Path:
        """Keep an attack's rows (columns attack, metric, value, sample, n, ci_low, ci_high), reconstructions and log."""
        metrics = list(dict.fromkeys(rows["metric"]))
        sample = pd.to_numeric(rows["sample"], errors="coerce").astype("Float64")
        tensors = {
            "metric_id": torch.tensor([metrics.index(m) for m in rows["metric"]], dtype=torch.int64),
            "value": torch.tensor(rows["value"].to_numpy(dtype="float64")),
            "sample": torch.tensor(sample.fillna(-1).to_numpy(dtype="int64")),
            "n": torch.tensor(rows["n"].to_numpy(dtype="int64")),
            "ci_low": torch.tensor(rows["ci_low"].to_numpy(dtype="float64")),
            "ci_high": torch.tensor(rows["ci_high"].to_numpy(dtype="float64")),
            **{f"recon/{name}": tensor for name, tensor in reconstructions.items()},
        }
        meta = {
            "format": _ATTACK_FORMAT, "version": _VERSION, "attack": attack, "key": self.key(attack), "metrics": metrics,
            "reconstructions": list(reconstructions), "log": dict(attack_log),
        }
        path = self.path(attack)
        _write(path, tensors, meta)
        mark_folder(self.directory, _PROGRESS_FOLDER)
        return path

    def discard(self) -> None:
        """Remove the folder (once the results are safely written); only a folder this class keeps."""
        if self.directory.is_dir():
            self.claim()
            shutil.rmtree(self.directory, ignore_errors=True)


def _is_legacy_progress(entries: list[str]) -> bool:
    """A progress folder written before folders carried splitleak's marker."""
    return all(_PROGRESS_ENTRY.match(e) for e in entries)


# --------------------------------------------------------------------------------------------
# train: finished epochs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainState:
    """Where a training run stood after its last finished epoch: each participant's state dict
    (model, client optimiser, server, defense), the named generators' states and the log."""

    epoch: int
    parts: dict[str, Any]
    generators: dict[str, Tensor]
    log: list[dict[str, Any]]


def _encode(value: Any, tensors: dict[str, Tensor], path: str) -> Any:
    """A JSON tree of `value` with its tensors moved to `tensors` (keys keep their types)."""
    if isinstance(value, Tensor):
        tensors[path] = value
        return {"tensor": path}
    if isinstance(value, Mapping):
        return {"dict": [[k, _encode(v, tensors, f"{path}.{i}")] for i, (k, v) in enumerate(value.items())]}
    if isinstance(value, (list, tuple)):
        return {"tuple" if isinstance(value, tuple) else "list": [_encode(v, tensors, f"{path}.{i}") for i, v in enumerate(value)]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    raise TypeError(f"cannot keep a {type(value).__name__} in a progress file")


def _decode(tree: Any, tensors: Mapping[str, Tensor]) -> Any:
    (kind, body), = tree.items()
    if kind == "tensor":
        return tensors[body]
    if kind == "dict":
        return {k: _decode(v, tensors) for k, v in body}
    if kind in ("list", "tuple"):
        items = [_decode(v, tensors) for v in body]
        return tuple(items) if kind == "tuple" else items
    if kind == "value":
        return body
    raise ValueError(f"unknown entry {kind!r}")


class TrainProgress:
    """The resume file of one training run (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str], material: Mapping[str, Any]) -> None:
        self.path = Path(path)
        self.key = digest({"format": _TRAIN_FORMAT, "splitleak": __version__, **material})
        self._claimed = False

    def save(self, epoch: int, parts: Mapping[str, Any], generators: Mapping[str, torch.Generator], epochs_log: list[dict[str, Any]]) -> None:
        """Write the state after `epoch`: every part's `state_dict()` and the named generators."""
        if not self._claimed:  # a file this run did not load or write is not ours to replace
            claim_train_progress(self.path)
            self._claimed = True
        tensors: dict[str, Tensor] = {}
        trees = {name: _encode(part.state_dict(), tensors, f"part.{name}") for name, part in parts.items()}
        for name, gen in generators.items():
            tensors[f"rng.{name}"] = gen.get_state()
        meta = {"format": _TRAIN_FORMAT, "version": _TRAIN_VERSION, "key": self.key, "epoch": epoch, "log": epochs_log, "parts": trees, "generators": sorted(generators)}
        _write(self.path, tensors, meta)

    def load(self) -> TrainState | None:
        """The saved state, None if there is no file; ProgressError if it is unusable or for other settings."""
        if not self.path.exists():
            return None
        tensors, meta = _read(self.path, _TRAIN_FORMAT, _TRAIN_VERSION)
        self._claimed = True
        if meta.get("key") != self.key:
            raise ProgressError(
                f"{self.path} was written by a training run with other settings (config or data); delete it, or run without --resume"
            )
        try:
            return TrainState(
                epoch=int(meta["epoch"]),
                parts={name: _decode(tree, tensors) for name, tree in dict(meta["parts"]).items()},
                generators={name: tensors[f"rng.{name}"] for name in meta["generators"]},
                log=list(meta["log"]),
            )
        except (KeyError, ValueError, TypeError, AttributeError) as err:
            raise ProgressError(f"{self.path} is incomplete ({type(err).__name__}: {err}); delete it, or run without --resume") from None

    def discard(self) -> None:
        if self.path.exists():
            claim_train_progress(self.path)
            self.path.unlink()


def claim_train_progress(path: str | os.PathLike[str]) -> None:
    """Refuse (OutputError) if `path` exists and is not a progress file splitleak wrote."""
    claim_file(path, is_progress_file, "training progress file", option="progress file")


__all__ = ["AttackProgress", "claim_train_progress", "FinishedAttack", "ProgressError", "TrainProgress", "TrainState", "digest", "partial_path"]
