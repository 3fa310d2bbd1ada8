"""Bring your own model: what `splitleak evaluate` needs to attack an encoder trained elsewhere.

`InputConfig` describes the inputs (shape, value range, normalisation, classes) and the data
(a registered dataset or a folder of images), from a small TOML file and/or the command line.
`open_target` turns a model file plus an InputConfig into what `evaluate` takes: a checkpoint
(a splitleak one, or a `ForeignCheckpoint`) and the data `Splits`. docs/byo.md has examples;
docs/trust.md says which inputs run code.

A TOML input spec (every key optional; command-line options override it):

    shape = [1, 28, 28]           # C, H, W (default: the dataset's, or the first image's)
    value_range = [0.0, 1.0]      # the range images are fed in
    mean = [0.1307]               # normalisation applied before the encoder (with std)
    std = [0.3081]
    num_classes = 10              # the head's classes (default: the data's)
    image_folder = "images"       # relative to the TOML file; or: dataset = "mnist"
    split_seed = 0                # seeds the aux / test split of an image folder
    aux_pool = 200                # images of the folder reserved for the attacker (default half)
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from splitleak._config import FromDict
from splitleak._parse import loads_toml, read_settings_text
from splitleak._validate import SEED_RANGE
from splitleak.data import DATASETS, ArraySplit, DataConfig, InputSpec, Splits, load_splits
from splitleak.image_folder import FOLDER_DATASET
from splitleak.errors import InputError
from splitleak.models.checkpoint import Checkpoint, load_checkpoint
from splitleak.models.foreign import SPLITLEAK, ModelSource, check_source, detect, load_foreign

log = logging.getLogger(__name__)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _numbers(name: str, value: Any, length: int | None = None) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or not all(_is_number(v) for v in value) or not value:
        raise InputError(f"input spec {name} must be a list of finite numbers, got {value!r}")
    if length is not None and len(value) != length:
        raise InputError(f"input spec {name} needs {length} numbers, got {len(value)}")
    return tuple(float(v) for v in value)


@dataclass(frozen=True)
class InputConfig(FromDict):
    """The inputs a foreign encoder takes and the data to attack it on (see the module docstring)."""

    what: ClassVar[str] = "input spec"

    shape: tuple[int, int, int] | None = None
    value_range: tuple[float, float] = (0.0, 1.0)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    num_classes: int | None = None
    dataset: str | None = None
    image_folder: str | None = None
    split_seed: int = 0
    aux_pool: int | None = None

    def __post_init__(self) -> None:
        if self.shape is not None:
            if not isinstance(self.shape, (list, tuple)) or len(self.shape) != 3 or not all(_is_int(v) and 0 < v <= 1 << 16 for v in self.shape):
                raise InputError(f"input spec shape must be three whole numbers [C, H, W] from 1 to {1 << 16}, got {self.shape!r}")
            object.__setattr__(self, "shape", tuple(self.shape))
        object.__setattr__(self, "value_range", _numbers("value_range", self.value_range, 2))
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _numbers(name, value))
        # InputSpec's checks (range order, mean and std together, one per channel, std > 0), once;
        # without a shape, the channels are as many as mean / std give
        channels = self.shape[0] if self.shape else len(self.mean or self.std or (0.0,))
        try:
            InputSpec(shape=(channels, 1, 1), value_range=self.value_range, mean=self.mean, std=self.std)
        except InputError as err:  # a DataError
            raise InputError(f"input spec: {err}") from None
        if self.num_classes is not None and not (_is_int(self.num_classes) and self.num_classes >= 1):
            raise InputError(f"input spec num_classes must be a whole number >= 1, got {self.num_classes!r}")
        if self.dataset is not None and (not isinstance(self.dataset, str) or self.dataset not in DATASETS):
            raise InputError(f"input spec dataset must be one of {sorted(DATASETS)}, got {self.dataset!r}")
        if self.image_folder is not None and (not isinstance(self.image_folder, str) or not self.image_folder):
            raise InputError(f"input spec image_folder must be a folder path, got {self.image_folder!r}")
        if self.dataset is not None and self.image_folder is not None:
            raise InputError("input spec: give a dataset or an image_folder, not both")
        if not _is_int(self.split_seed) or not SEED_RANGE[0] <= self.split_seed <= SEED_RANGE[1]:
            raise InputError(f"input spec split_seed must be a whole number from -2**63 to 2**64 - 1, got {self.split_seed!r}")
        if self.aux_pool is not None and not (_is_int(self.aux_pool) and self.aux_pool >= 0):
            raise InputError(f"input spec aux_pool must be a whole number >= 0, got {self.aux_pool!r}")

    @property
    def given(self) -> bool:
        """Whether anything differs from the defaults (a splitleak checkpoint takes none of it)."""
        return self != InputConfig()

    def with_overrides(self, **values: Any) -> "InputConfig":
        """A copy with every non-None value of `values` replacing this one's."""
        return dataclasses.replace(self, **{k: v for k, v in values.items() if v is not None})

    def input_spec(self, shape: tuple[int, int, int]) -> InputSpec:
        return InputSpec(shape=shape, value_range=self.value_range, mean=self.mean, std=self.std)


def read_input_spec(path: str | os.PathLike[str]) -> InputConfig:
    """Parse a TOML input spec; `image_folder` is taken relative to the file's folder."""
    path = Path(path)
    try:
        raw = read_settings_text(path, "input spec")
    except OSError as err:
        raise InputError(f"cannot read input spec {path}: {err.strerror or err}") from None
    config = parse_input_spec(raw, where=str(path))
    if config.image_folder is not None and not Path(config.image_folder).expanduser().is_absolute():
        config = dataclasses.replace(config, image_folder=str(path.parent / Path(config.image_folder).expanduser()))
    return config


def parse_input_spec(raw: bytes | str, where: str = "input spec") -> InputConfig:
    """An InputConfig from TOML text; InputError naming `where` for anything malformed."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        values = loads_toml(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise InputError(f"{where} is not valid TOML ({err})") from None
    try:
        return InputConfig.from_dict(values)
    except InputError as err:
        raise InputError(f"{where}: {err}") from None


def open_target(
    model: ModelSource,
    inputs: InputConfig = InputConfig(),  # noqa: B008 - frozen, never mutated
    *,
    data_dir: str | None = None,
    aux_size: int | None = None,
    limit_test: int | None = None,
    download: bool | None = None,
    cap_test: bool = False,
) -> tuple[Checkpoint, Splits]:
    """The checkpoint and the data splits `evaluate` attacks for `model` described by `inputs`.

    A splitleak checkpoint brings its own input spec and data split (`inputs` must be empty, but
    for `image_folder` naming the folder a checkpoint trained on an image folder reads, as
    `data_dir` would); anything else is a foreign model, loaded with `load_foreign` for `inputs`'
    spec and data.
    `cap_test`: `limit_test` is a default, an upper bound (fewer test images: use them all).
    """
    kind = detect(model.encoder)
    if kind == SPLITLEAK:
        foreign_options = [name for name in ("factory", "head", "head_factory") if getattr(model, name) is not None]
        checkpoint = load_checkpoint(model.encoder)
        if inputs.image_folder is not None and (checkpoint.meta.data or {}).get("dataset") == FOLDER_DATASET:
            if data_dir is not None:
                raise InputError("--image-folder names the folder the checkpoint trained on: drop --data-dir")
            data_dir, inputs = inputs.image_folder, dataclasses.replace(inputs, image_folder=None)
        if foreign_options or inputs.given:
            given = foreign_options + [f.name for f in dataclasses.fields(inputs) if getattr(inputs, f.name) != getattr(InputConfig(), f.name)]
            raise InputError(
                f"{model.encoder} is a splitleak checkpoint, which records its architecture, input spec and data split; "
                f"the options {sorted(set(given))} are for models trained elsewhere"
            )
        from splitleak.evaluation import data_config_for

        data = data_config_for(checkpoint, data_dir=data_dir, aux_size=aux_size, limit_test=limit_test, download=download or None)
        return checkpoint, load_splits(data, cap_test=cap_test)
    check_source(model)  # refusals first: no data is read for a model that will not be loaded
    splits = foreign_splits(inputs, data_dir=data_dir, aux_size=aux_size, limit_test=limit_test, download=bool(download), cap_test=cap_test)
    first_batch = splits.test.x[:2]  # the pre-flight runs on the images the attacks will use, as laid out for them
    checkpoint = load_foreign(model, splits.spec, splits.num_classes if splits.labelled else None, sample=first_batch)
    caveat = data_caveat(splits, from_folder=inputs.image_folder is not None)
    log.info("%s", caveat)
    return dataclasses.replace(checkpoint, data_caveat=caveat), splits


def data_caveat(splits: Splits, *, from_folder: bool) -> str:
    """What evaluating a model trained elsewhere cannot rule out: that it saw the attacker's
    auxiliary images (and, from an image folder, the attacked ones) during its own training."""
    if from_folder:
        return (
            f"the attacker's {len(splits.aux)} auxiliary images and the {len(splits.test)} attacked images all come from the image folder: "
            "if the model was trained on any of them, it may have seen (and memorised) both"
        )
    return (
        f"the attacker's {len(splits.aux)} auxiliary images are drawn from {splits.dataset}'s training part: a model trained elsewhere on "
        "the whole training set may have seen them (an advantage for the attacker); the attacked test images come from the test part and are unaffected"
    )


def foreign_splits(
    inputs: InputConfig, *, data_dir: str | None = None, aux_size: int | None = None, limit_test: int | None = None, download: bool = False,
    cap_test: bool = False,
) -> Splits:
    """The aux and test parts for a foreign model: an image folder or a registered dataset
    (`cap_test`: `limit_test` is an upper bound, as in `open_target`)."""
    if inputs.image_folder is not None:
        from splitleak.image_folder import infer_shape, list_folder, load_image_folder

        shape = inputs.shape or infer_shape(list_folder(inputs.image_folder))
        _check_channels(inputs, shape)
        return load_image_folder(
            inputs.image_folder, inputs.input_spec(shape), split_seed=inputs.split_seed, aux_pool=inputs.aux_pool,
            aux_size=aux_size, limit_test=limit_test, num_classes=inputs.num_classes, cap_test=cap_test,
        )
    if inputs.dataset is None:
        raise InputError("a model trained elsewhere needs data to be attacked on: --image-folder DIR or --dataset NAME (or either in --input-spec)")
    source = DATASETS[inputs.dataset]
    shape = inputs.shape or source.shape
    if tuple(shape) != tuple(source.shape):
        raise InputError(f"input spec shape {list(shape)} does not match dataset {source.name!r}, whose images are {list(source.shape)}")
    _check_channels(inputs, shape)
    if inputs.num_classes is not None and inputs.num_classes != source.num_classes:
        raise InputError(f"input spec num_classes={inputs.num_classes} but dataset {source.name!r} has {source.num_classes} classes")
    config = DataConfig(
        dataset=source.name, data_dir=data_dir, split_seed=inputs.split_seed, aux_pool=inputs.aux_pool, aux_size=aux_size,
        limit_train=1, limit_test=limit_test, download=download,
    )
    splits = load_splits(config, cap_test=cap_test)
    spec = inputs.input_spec(tuple(shape))
    low, high = spec.value_range

    def rescale(part: ArraySplit) -> ArraySplit:  # the registry's [0, 1] onto the spec's range
        return part if (low, high) == (0.0, 1.0) else ArraySplit(x=part.x * (high - low) + low, y=part.y, indices=part.indices)

    return dataclasses.replace(splits, train=rescale(splits.train), aux=rescale(splits.aux), test=rescale(splits.test), spec=spec)


def _check_channels(inputs: InputConfig, shape: Sequence[int]) -> None:
    if inputs.mean is not None and len(inputs.mean) != shape[0]:
        raise InputError(f"input spec mean/std have {len(inputs.mean)} values but the images have {shape[0]} channel(s)")


__all__ = [
    "InputConfig",
    "foreign_splits",
    "open_target",
    "parse_input_spec",
    "read_input_spec",
]
