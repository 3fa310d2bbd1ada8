"""The records stages hand each other through files, typed and versioned; no torch.

* `CheckpointMeta`: what a checkpoint says about its model (architecture, cut, input, defense,
  server, how it was trained). Written into the safetensors header by `save_checkpoint`.
* `RunProvenance`: how one run's rows were computed (environment, checkpoint, configs, what each
  attack and scorer recorded). `Provenance`: the runs of one results folder, plus the sweep
  that made them, in one shape whether the folder holds one run or a merged sweep.

Reading is checking: `from_dict` raises `RecordError` (bad input, exit 2) for a record of the
wrong shape, so readers never dig through raw dicts. The nested configs (`train`, `data`,
`evaluation`) stay JSON tables here; their own config classes read them where they are acted on.
Files written by earlier releases still load: checkpoint metadata has been version 1 since the
first release, and provenance without a version is read as version 1 (a single run, or a sweep's
`{"sweep", "runs"}`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from splitleak.cuts import Cut, parse_cut
from splitleak.dataspec import InputSpec
from splitleak.errors import InputError


class RecordError(InputError):
    """A recorded file (checkpoint metadata, provenance) whose content has the wrong shape."""


def _table(what: str, value: Any, *, optional: bool = True) -> dict[str, Any] | None:
    if value is None and optional:
        return None
    if not isinstance(value, Mapping):
        raise RecordError(f"{what} must be a table, got {type(value).__name__}")
    return dict(value)


def _int(what: str, value: Any, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordError(f"{what} must be a whole number, got {value!r}")
    return value


def _cut(value: Any) -> Cut:
    """A recorded cut: a whole number (every checkpoint before named cuts) or a name."""
    try:
        cut = parse_cut(value)
    except InputError:
        cut = None
    if cut is None or type(cut) is not type(value):  # a number recorded as text is damage, not a name
        raise RecordError(f"cut must be a whole number or a name, got {value!r}")
    return cut


def _number(what: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError(f"{what} must be a number, got {value!r}")
    return float(value)


def _text(what: str, value: Any, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise RecordError(f"{what} must be text, got {value!r}")
    return value


def _tables(what: str, value: Any) -> tuple[dict[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise RecordError(f"{what} must be a list, got {type(value).__name__}")
    return tuple(_table(f"{what}[{i}]", item, optional=False) or {} for i, item in enumerate(value))


@dataclass(frozen=True)
class DefenseRecord:
    """A defense as recorded: its registered name and JSON-able parameters."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, value: Any) -> DefenseRecord:
        table = _table("defense", value, optional=False) or {}
        return cls(name=_text("defense.name", table.get("name")) or "", params=_table("defense.params", table.get("params", {}), optional=False) or {})


TIMING_KEYS = frozenset({"seconds", "images_per_second"})  # per-epoch log entries that measure the machine, not the model


@dataclass(frozen=True)
class CheckpointMeta:
    """What a checkpoint says about its model. `version` is the schema's (checkpoint format 1)."""

    version: ClassVar[int] = 1
    required: ClassVar[tuple[str, ...]] = ("arch", "cut", "num_classes", "input_spec", "defense")

    arch: str
    cut: Cut  # a whole number (small-cnn, cifar-cnn) or a name ("layer2": resnet18)
    num_classes: int
    input_spec: InputSpec
    defense: DefenseRecord
    server: dict[str, Any] | None = None  # the training server's describe() (None: foreign or older)
    data: dict[str, Any] | None = None  # the DataConfig it was trained on
    train: dict[str, Any] | None = None  # the TrainConfig
    log: tuple[dict[str, Any], ...] = ()  # one entry per epoch
    test_accuracy: float | None = None
    test_size: int | None = None
    train_size: int | None = None
    seed: int | None = None
    splitleak_version: str | None = None
    torch_version: str | None = None
    foreign: dict[str, Any] | None = None  # a foreign model's parts (models/foreign.py)
    detection: dict[str, Any] | None = None  # the client's hijacking detector: name, params, alarm_step, scores (None: no detector)

    def to_dict(self) -> dict[str, Any]:
        """The JSON the checkpoint header holds (None fields left out)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out.update(input_spec=self.input_spec.to_dict(), defense=self.defense.to_dict(), log=[dict(e) for e in self.log])
        return {k: v for k, v in out.items() if v is not None}

    def identity(self) -> dict[str, Any]:
        """What identifies the trained model: `to_dict` without the timings of `log`
        (TIMING_KEYS), which differ between two otherwise identical trainings."""
        out = self.to_dict()
        out["log"] = [{k: v for k, v in e.items() if k not in TIMING_KEYS} for e in out["log"]]
        return out

    @classmethod
    def from_dict(cls, d: Any) -> CheckpointMeta:
        """Read recorded metadata; keys this release does not know are ignored (later releases
        may add some), a known key of the wrong type is a RecordError."""
        table = _table("checkpoint metadata", d, optional=False) or {}
        missing = [k for k in cls.required if k not in table]
        if missing:
            raise RecordError(f"checkpoint metadata lacks {missing}")
        try:
            spec = InputSpec.from_dict(_table("input_spec", table["input_spec"], optional=False) or {})
        except (InputError, TypeError, ValueError) as err:
            raise RecordError(f"input_spec: {err}") from None
        accuracy = _number("test_accuracy", table.get("test_accuracy"))
        return cls(
            arch=_text("arch", table["arch"]) or "",
            cut=_cut(table["cut"]),
            num_classes=_int("num_classes", table["num_classes"]) or 0,
            input_spec=spec,
            defense=DefenseRecord.from_dict(table["defense"]),
            server=_table("server", table.get("server")),
            data=_table("data", table.get("data")),
            train=_table("train", table.get("train")),
            log=_tables("log", table.get("log")),
            test_accuracy=None if accuracy is None or math.isnan(accuracy) else accuracy,
            test_size=_int("test_size", table.get("test_size"), optional=True),
            train_size=_int("train_size", table.get("train_size"), optional=True),
            seed=_int("seed", table.get("seed"), optional=True),
            splitleak_version=_text("splitleak_version", table.get("splitleak_version"), optional=True),
            torch_version=_text("torch_version", table.get("torch_version"), optional=True),
            foreign=_table("foreign", table.get("foreign")),
            detection=_table("detection", table.get("detection")),
        )


@dataclass(frozen=True)
class CheckpointRecord:
    """Which checkpoint a run evaluated: where it was read, its SHA-256 and its metadata."""

    path: str
    sha256: str
    meta: CheckpointMeta | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "meta": None if self.meta is None else self.meta.to_dict()}

    @classmethod
    def from_dict(cls, value: Any) -> CheckpointRecord:
        table = _table("checkpoint", value, optional=False) or {}
        meta = table.get("meta")
        return cls(
            path=_text("checkpoint.path", table.get("path", "")) or "",
            sha256=_text("checkpoint.sha256", table.get("sha256", "")) or "",
            meta=CheckpointMeta.from_dict(meta) if meta else None,
        )


_RUN_TABLES = ("environment", "model", "defense", "evaluation", "adaptive", "data", "attacks", "task_accuracy", "dcor", "lpips", "semantic_classifier", "memory")


@dataclass(frozen=True)
class RunProvenance:
    """How one run's rows were computed. Every table is {} when unknown (old or partial files);
    the scorers' tables (`task_accuracy`, `dcor`, `lpips`, `semantic_classifier`) hold what each
    recorded, e.g. LPIPS's availability and the reason when it is unavailable."""

    checkpoint: CheckpointRecord | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)  # Checkpoint.describe(): loader and files
    defense: dict[str, Any] = field(default_factory=dict)  # how reports show it: label, strength, rank (its registry's)
    evaluation: dict[str, Any] = field(default_factory=dict)  # the EvalConfig
    adaptive: dict[str, Any] = field(default_factory=dict)  # releases per image and estimator ({}: one release)
    data: dict[str, Any] = field(default_factory=dict)  # the DataConfig, sizes, origin
    attacks: dict[str, Any] = field(default_factory=dict)  # per attack: threat model, budget, seconds
    task_accuracy: dict[str, Any] = field(default_factory=dict)
    dcor: dict[str, Any] = field(default_factory=dict)
    lpips: dict[str, Any] = field(default_factory=dict)
    semantic_classifier: dict[str, Any] = field(default_factory=dict)
    gallery_indices: tuple[int, ...] = ()
    resumed_attacks: tuple[str, ...] = ()
    cells: tuple[str, ...] = ()  # the sweep cells whose rows a merged run holds
    stages: dict[str, float] = field(default_factory=dict)  # wall seconds per stage (splitleak.timing)
    # how activations were held (splitleak.streaming) and the peak memory (splitleak.memory)
    memory: dict[str, Any] = field(default_factory=dict)

    @property
    def meta(self) -> CheckpointMeta | None:
        """The evaluated checkpoint's metadata (None if unknown)."""
        return self.checkpoint.meta if self.checkpoint is not None else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"checkpoint": None if self.checkpoint is None else self.checkpoint.to_dict()}
        out.update({name: getattr(self, name) for name in _RUN_TABLES})
        out.update(gallery_indices=list(self.gallery_indices), resumed_attacks=list(self.resumed_attacks), cells=list(self.cells), stages=dict(self.stages))
        return out

    @classmethod
    def from_dict(cls, value: Any) -> RunProvenance:
        table = _table("run provenance", value, optional=False) or {}
        checkpoint = table.get("checkpoint")
        return cls(
            checkpoint=CheckpointRecord.from_dict(checkpoint) if checkpoint else None,
            **{name: _table(name, table.get(name)) or {} for name in _RUN_TABLES},
            gallery_indices=tuple(_int("gallery_indices[]", i) or 0 for i in _list("gallery_indices", table.get("gallery_indices"))),
            resumed_attacks=tuple(_text("resumed_attacks[]", a) or "" for a in _list("resumed_attacks", table.get("resumed_attacks"))),
            cells=tuple(_text("cells[]", c) or "" for c in _list("cells", table.get("cells"))),
            stages=_seconds_table("stages", table.get("stages")),
        )


def _seconds_table(what: str, value: Any) -> dict[str, float]:
    """{stage: seconds}: text keys, finite numbers >= 0."""
    out = {}
    for stage, seconds in (_table(what, value) or {}).items():
        number = _number(f"{what}.{stage}", seconds)
        if number is None or not 0 <= number < float("inf"):
            raise RecordError(f"{what}.{stage} must be a number of seconds >= 0, got {seconds!r}")
        out[stage] = number
    return out


def _list(what: str, value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise RecordError(f"{what} must be a list, got {type(value).__name__}")
    return list(value)


@dataclass(frozen=True)
class Provenance:
    """The runs of one results folder by run id, and the sweep that made them (None: one
    `evaluate`). The same shape for a single evaluation and a merged sweep."""

    version: ClassVar[int] = 2
    format: ClassVar[str] = "splitleak-provenance"

    runs: dict[str, RunProvenance] = field(default_factory=dict)
    sweep: dict[str, Any] | None = None

    def run(self, run: str) -> RunProvenance | None:
        """The provenance of run `run` (None if the folder records none for it)."""
        return self.runs.get(run)

    @property
    def only(self) -> RunProvenance:
        """The provenance of a folder that holds exactly one run."""
        if len(self.runs) != 1:
            raise RecordError(f"provenance holds {len(self.runs)} runs, not one")
        return next(iter(self.runs.values()))

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "version": self.version, "sweep": self.sweep, "runs": {k: r.to_dict() for k, r in self.runs.items()}}

    @classmethod
    def single(cls, run: str, provenance: RunProvenance) -> Provenance:
        return cls(runs={run: provenance})

    @classmethod
    def from_dict(cls, value: Any) -> Provenance:
        """Read provenance.json: this release's shape, or version 1's two (one run; a sweep's)."""
        table = _table("provenance", value, optional=False) or {}
        if not table:
            return cls()
        if "format" in table:
            if table["format"] != cls.format or table.get("version") != cls.version:
                raise RecordError(f"provenance is {table.get('format')!r} version {table.get('version')!r}, this splitleak reads {cls.format!r} version {cls.version}")
            return cls._read(table.get("runs"), table.get("sweep"))
        if "runs" in table:  # version 1, a sweep's merged folder
            return cls._read(table["runs"], table.get("sweep") or {})
        run = RunProvenance.from_dict(table)  # version 1, one evaluation: its run id is the hash's head
        key = run.checkpoint.sha256[:12] if run.checkpoint is not None else ""
        return cls(runs={key: run})

    @classmethod
    def _read(cls, runs: Any, sweep: Any) -> Provenance:
        table = _table("provenance runs", runs, optional=False) or {}
        return cls(runs={str(k): RunProvenance.from_dict(v) for k, v in table.items()}, sweep=_table("sweep", sweep))


__all__ = ["CheckpointMeta", "CheckpointRecord", "DefenseRecord", "Provenance", "RecordError", "RunProvenance"]
