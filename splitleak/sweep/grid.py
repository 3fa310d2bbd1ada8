"""The grid file of `splitleak sweep`: a TOML cross product, expanded into resolved cells.

    [grid]                      # axes: every combination is one cell
    dataset = ["digits"]
    arch = ["small-cnn"]
    cut = [1, 2]                # or "all": every cut of each architecture
    seed = [0]                  # training seed
    attack = ["decoder"]

    [[defense]]                 # one block per defense; list values expand
    name = "none"

    [[defense]]
    name = "nopeek"
    alpha = [1, 5, 20]

    [data]      # shared DataConfig options      (not dataset: that is an axis)
    [train]     # shared TrainConfig options     (not arch, cut, defense, seed)
    [evaluate]  # shared EvalConfig options      (not attacks); [evaluate.attack_params.rmle] ...

Every value goes through the config classes' own validation here, so a bad alpha or an unknown
option fails before anything is trained. A cell is one (data, training, evaluation) triple with
one attack; its key is a short hash of the canonical JSON of the resolved configs (defaults filled
in, integral floats written as integers, where-the-files-are options left out). docs/sweeps.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from splitleak._parse import loads_toml, read_settings_text
from splitleak.attacks import ATTACKS
from splitleak.data import LOCATION_FIELDS, DataConfig, get_source, resolve_defaults
from splitleak.defenses import make_defense
from splitleak.errors import InputError
from splitleak.evaluation import EvalConfig
from splitleak.models.architectures import get_architecture
from splitleak.training import TrainConfig

AXES = ("dataset", "arch", "cut", "seed", "attack")
SECTIONS = ("name", "description", "grid", "defense", "data", "train", "evaluate")
# options that say where files are, not what is computed: left out of keys (a cluster's paths differ)
LOCATION_OPTIONS = {"data": LOCATION_FIELDS, "evaluate": ("lpips_weights",)}
_AXIS_OWNED = {
    "data": {"dataset": "[grid] dataset"},
    "train": {"arch": "[grid] arch", "cut": "[grid] cut", "seed": "[grid] seed", "defense": "[[defense]] blocks", "defense_params": "[[defense]] blocks"},
    "evaluate": {"attacks": "[grid] attack"},
}
KEY_LENGTH = 10


class GridError(InputError):
    """A grid file that cannot be expanded into valid cells."""


def _normalise(value: Any) -> Any:
    """JSON-ready value with integral floats as ints, so `alpha = 5` and `alpha = 5.0` key alike."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value == int(value) else value
    if isinstance(value, Mapping):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    return str(value)


def canonical(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, integral floats as integers."""
    return json.dumps(_normalise(value), sort_keys=True, separators=(",", ":"))


def short_hash(value: Any) -> str:
    return hashlib.sha256(canonical(value).encode()).hexdigest()[:KEY_LENGTH]


def resolved_data(data: DataConfig) -> dict[str, Any]:
    """The data config as `load_splits` records it (`DataConfig.resolved`), without locations."""
    return _without(resolve_defaults(data).to_dict(), LOCATION_OPTIONS["data"])


def resolved_eval(evaluation: EvalConfig) -> dict[str, Any]:
    return _without(evaluation.to_dict(), LOCATION_OPTIONS["evaluate"])


def _without(values: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k not in names}


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _slug(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("._-") or "x"


def _value_label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class SweepCell:
    """One cell: one model (data + training) attacked by its evaluation's attacks (one per cell in a
    grid file; every attack of a study, `study_grid`), keyed by content."""

    data: DataConfig
    train: TrainConfig
    evaluation: EvalConfig
    defense_label: str  # readable: "none", "nopeek-alpha5", "noise-scale0.5"

    @property
    def attack(self) -> str:
        """The cell's attack, or its attacks joined by '+'."""
        return "+".join(self.evaluation.attacks)

    def train_material(self) -> dict[str, Any]:
        return {"data": resolved_data(self.data), "train": self.train.to_dict()}

    def material(self) -> dict[str, Any]:
        return {**self.train_material(), "evaluate": resolved_eval(self.evaluation)}

    @property
    def train_key(self) -> str:
        """Hash of the resolved data and training configs: cells with the same one share a checkpoint."""
        return short_hash(self.train_material())

    @property
    def key(self) -> str:
        """Hash of the resolved data, training and evaluation configs."""
        return short_hash(self.material())

    @property
    def model_label(self) -> str:
        t = self.train
        return _slug(f"{self.data.dataset}-{t.arch}-cut{t.cut}-{self.defense_label}-s{t.seed}")

    @property
    def label(self) -> str:
        return f"{self.model_label}-{_slug(self.attack)}"

    @property
    def folder(self) -> str:
        """The cell's folder under DIR/cells/: readable label + key."""
        return f"{self.label}-{self.key}"

    @property
    def checkpoint(self) -> str:
        """The checkpoint's file name under DIR/checkpoints/."""
        return f"{self.model_label}-{self.train_key}.safetensors"

    def describe(self) -> dict[str, Any]:
        """The grid coordinates of this cell (for listings and cells.csv)."""
        return {
            "dataset": self.data.dataset, "arch": self.train.arch, "cut": self.train.cut, "defense": self.train.defense,
            "defense_params": json.dumps(dict(self.train.defense_params), sort_keys=True), "train_seed": self.train.seed, "attack": self.attack,
        }


@dataclass(frozen=True)
class Grid:
    """An expanded grid: its cells in order (dataset, arch, cut, defense, seed, attack)."""

    name: str
    source: str
    sha256: str
    cells: tuple[SweepCell, ...]

    def trainings(self) -> dict[str, list[SweepCell]]:
        """Cells grouped by training key, in grid order."""
        groups: dict[str, list[SweepCell]] = {}
        for cell in self.cells:
            groups.setdefault(cell.train_key, []).append(cell)
        return groups


def load_grid(path: str | os.PathLike[str], *, data_dir: str | None = None, device: str | None = None) -> Grid:
    """Read and expand a grid file; `data_dir` and `device` override the file's settings."""
    path = Path(path)
    try:
        text = read_settings_text(path, "grid file")
    except FileNotFoundError:
        raise GridError(f"grid file {path} does not exist") from None
    except OSError as err:
        raise GridError(f"cannot read grid file {path} ({err})") from None
    except InputError as err:
        raise GridError(str(err)) from None
    return parse_grid(text, source=str(path), data_dir=data_dir, device=device)


def parse_grid(text: str, *, source: str = "<grid>", data_dir: str | None = None, device: str | None = None) -> Grid:
    """Expand grid TOML text into cells (GridError naming `source` on any problem)."""
    try:
        values = loads_toml(text)
    except tomllib.TOMLDecodeError as err:
        raise GridError(f"{source}: not valid TOML ({err})") from None
    try:
        cells, name = _expand(values, data_dir=data_dir, device=device)
    except GridError as err:
        raise GridError(f"{source}: {err}") from None
    except InputError as err:  # a config class refused a value
        raise GridError(f"{source}: {' '.join(str(err).split())}") from None
    return Grid(name=name or Path(source).stem, source=source, sha256=hashlib.sha256(text.encode()).hexdigest(), cells=tuple(cells))


def _table(values: Mapping[str, Any], name: str) -> dict[str, Any]:
    section = values.get(name, {})
    if not isinstance(section, Mapping):
        raise GridError(f"[{name}] must be a table of options, got {type(section).__name__}")
    owned = _AXIS_OWNED.get(name, {})
    for key in section:
        if key in owned:
            raise GridError(f"[{name}] {key} is set by {owned[key]}, not in [{name}]")
    return dict(section)


# TOML has no null: these spellings stand for None (as on the command line: --lpips none)
_NULL_SPELLINGS = {"lpips": ("none", False), "limit": ("all",), "dcor_samples": ("all",)}


def _nulls(evaluate: dict[str, Any]) -> None:
    for key, spellings in _NULL_SPELLINGS.items():
        value = evaluate.get(key)
        if any(value is s or (isinstance(s, str) and value == s) for s in spellings):
            evaluate[key] = None


def _axis(grid: Mapping[str, Any], name: str, default: list[Any]) -> list[Any]:
    if name not in grid:
        return default
    value = grid[name]
    values = list(value) if isinstance(value, list) else [value]
    if not values:
        raise GridError(f"[grid] {name} is an empty list; give at least one value or leave it out")
    for v in values:
        if isinstance(v, (dict, list)):
            raise GridError(f"[grid] {name} values must be single values, got {v!r}")
    if len({canonical(v) for v in values}) != len(values):
        raise GridError(f"[grid] {name} repeats a value: {values}")
    return values


def _defenses(values: Mapping[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """(name, resolved params, label) for every setting of every [[defense]] block."""
    blocks = values.get("defense", [{"name": "none"}])
    if isinstance(blocks, Mapping):
        blocks = [blocks]
    if not isinstance(blocks, list) or not blocks:
        raise GridError("[[defense]] must be one or more tables, each with a name")
    settings = []
    for number, block in enumerate(blocks, start=1):
        where = f"[[defense]] #{number}"
        if not isinstance(block, Mapping) or not isinstance(block.get("name"), str):
            raise GridError(f"{where} needs name = \"none\", \"nopeek\", \"noise\", ... ")
        name = block["name"]
        params = {k: v for k, v in block.items() if k != "name"}
        names = list(params)
        choices = []
        for key in names:
            options = params[key] if isinstance(params[key], list) else [params[key]]
            if not options:
                raise GridError(f"{where} ({name}) {key} is an empty list")
            choices.append(options)
        for combo in itertools.product(*choices):
            given = dict(zip(names, combo))
            try:
                defense = make_defense(name, given)
            except (InputError, TypeError) as err:
                raise GridError(f"{where} ({name}): {' '.join(str(err).split())}") from None
            label = "-".join([name, *(_value_label(v) if isinstance(v, str) else f"{k}{_value_label(v)}" for k, v in given.items())])
            settings.append((name, defense.params(), label))
    return settings


def _attack_params(evaluate: dict[str, Any], attacks: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Every attack's resolved options (defaults filled in), validated by its config class."""
    given = evaluate.pop("attack_params", {})
    if not isinstance(given, Mapping):
        raise GridError("[evaluate.attack_params] must hold one table per attack, e.g. [evaluate.attack_params.rmle]")
    for name in given:
        if name not in ATTACKS:
            raise GridError(f"[evaluate.attack_params] names unknown attack {name!r}; choose from {sorted(ATTACKS)}")
        if not isinstance(given[name], Mapping):
            raise GridError(f"[evaluate.attack_params.{name}] must be a table of options")
    resolved = {}
    for name in dict.fromkeys([*attacks, *given]):
        if name not in ATTACKS:
            raise GridError(f"[grid] attack {name!r} is unknown; choose from {sorted(ATTACKS)}")
        config = ATTACKS[name].config_class.from_dict(dict(given.get(name, {})))
        resolved[name] = dataclasses.asdict(config)
    return resolved


def study_grid(
    name: str, data: DataConfig, models: Sequence[tuple[str, TrainConfig]], evaluation: EvalConfig, *, seeds: Sequence[int] | None = None
) -> Grid:
    """A study as a grid: each (label, training config) is one cell, attacked by every attack of
    `evaluation` in one evaluation (the model-level scores and the attacker's semantic classifier
    are computed once per model). With `seeds`, each model is trained once per training seed (its
    config's own seed replaced; cells and checkpoints named `...-nopeek-20-s1`), so the report's
    decision page gets a spread over seeds. `splitleak demo` and examples/attack_table.py run
    theirs with `run_sweep`, so a study resumes, reuses and merges exactly as a sweep does."""
    chosen = _seeds(seeds)
    trainings = [(label, train if chosen is None else dataclasses.replace(train, seed=seed)) for label, train in models for seed in (chosen or [train.seed])]
    cells = tuple(SweepCell(data=data, train=train, evaluation=evaluation, defense_label=_slug(label)) for label, train in trainings)
    keys = [cell.key for cell in cells]
    if len(set(keys)) != len(keys):
        raise GridError(f"study {name!r} lists the same model twice")
    _check_training_servers(cells)
    material = canonical({"name": name, "cells": [cell.material() for cell in cells]})
    return Grid(name=name, source=f"<study {name}>", sha256=hashlib.sha256(material.encode()).hexdigest(), cells=cells)


def _seeds(seeds: Sequence[int] | None) -> list[int] | None:
    """Training seeds of a study: None (each model's own), or distinct whole numbers >= 0."""
    if seeds is None:
        return None
    chosen = list(seeds)
    if not chosen or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in chosen):
        raise GridError(f"study seeds must be one or more whole numbers >= 0, got {seeds!r}")
    if len(set(chosen)) != len(chosen):
        raise GridError(f"study seeds repeat a value: {chosen}")
    return chosen


def _expand(values: Mapping[str, Any], *, data_dir: str | None, device: str | None) -> tuple[list[SweepCell], str | None]:
    unknown = sorted(set(values) - set(SECTIONS))
    if unknown:
        raise GridError(f"unknown top-level key(s) {unknown}; a grid file has {list(SECTIONS)}")
    name = values.get("name")
    if name is not None and not isinstance(name, str):
        raise GridError(f"name must be a string, got {name!r}")
    grid = _table(values, "grid")
    extra = sorted(set(grid) - set(AXES))
    if extra:
        raise GridError(f"unknown [grid] axis(es) {extra}; axes are {list(AXES)} (defenses go in [[defense]] blocks)")
    data_opts, train_opts, eval_opts = _table(values, "data"), _table(values, "train"), _table(values, "evaluate")
    _nulls(eval_opts)
    if data_dir is not None:
        data_opts["data_dir"] = data_dir
    if device is not None:
        train_opts["device"] = eval_opts["device"] = device
    datasets = _axis(grid, "dataset", [DataConfig().dataset])
    archs = _axis(grid, "arch", [TrainConfig().arch])
    cuts = _axis(grid, "cut", [None])
    seeds = _axis(grid, "seed", [TrainConfig().seed])
    attacks = _axis(grid, "attack", list(EvalConfig().attacks))
    for dataset in datasets:
        if not isinstance(dataset, str):
            raise GridError(f"[grid] dataset values are names, got {dataset!r}")
        get_source(dataset)  # unknown names fail here
    for arch in archs:
        get_architecture(arch)
    if "all" in cuts and cuts != ["all"]:
        raise GridError('[grid] cut = "all" stands alone; or list the cuts, e.g. cut = [1, 2]')
    attack_params = _attack_params(eval_opts, attacks)
    defenses = _defenses(values)
    evaluation_check = EvalConfig.from_dict({**eval_opts, "attacks": list(attacks), "attack_params": attack_params})
    limit_test = DataConfig.from_dict({**data_opts, "dataset": datasets[0]}).limit_test if "limit_test" in data_opts else None
    if limit_test is not None and evaluation_check.limit is not None and evaluation_check.limit > limit_test:
        raise GridError(f"[evaluate] limit = {evaluation_check.limit} exceeds [data] limit_test = {limit_test}: only {limit_test} test images would be attacked")

    cells: list[SweepCell] = []
    for dataset in datasets:
        data = DataConfig.from_dict({**data_opts, "dataset": dataset})
        for arch in archs:
            arch_cuts = list(get_architecture(arch).cuts) if cuts == ["all"] else cuts
            for cut in arch_cuts:
                for defense, params, label in defenses:
                    for seed in seeds:
                        train = TrainConfig.from_dict({**train_opts, "arch": arch, "cut": cut, "defense": defense, "defense_params": params, "seed": seed})
                        for attack in attacks:
                            evaluation = EvalConfig.from_dict({**eval_opts, "attacks": [attack], "attack_params": {attack: attack_params[attack]}})
                            cells.append(SweepCell(data=data, train=train, evaluation=evaluation, defense_label=label))
    seen: dict[str, SweepCell] = {}
    for cell in cells:
        if cell.key in seen:
            raise GridError(f"the grid lists the same cell twice ({cell.label}); check [grid] values and [[defense]] blocks for repeats")
        seen[cell.key] = cell
    _check_training_servers(cells)
    return cells, name


def _check_training_servers(cells: Sequence[SweepCell]) -> None:
    """A training-time attack (`ThreatModel.trained_by`) needs its server in [train]: refused
    here, before any model is trained, instead of failing each cell after its training."""
    for cell in cells:
        for attack in cell.evaluation.attacks:
            server = ATTACKS[attack].threat_model.trained_by
            if server is not None and cell.train.server != server:
                raise GridError(
                    f"attack {attack!r} attacks only models trained by its {server!r} server, and this grid trains with the "
                    f"{cell.train.server!r} server: set server = \"{server}\" in [train], or drop {attack!r}"
                )
