"""The `splitleak evaluate` options for models trained elsewhere, and their parsed values turned
into `splitleak.byo.open_target`'s plain arguments (docs/byo.md)."""

from __future__ import annotations

import argparse
import dataclasses
import math
from typing import TYPE_CHECKING

from splitleak.errors import InputError

if TYPE_CHECKING:  # the library is imported when the command runs: building the parser loads no torch
    from splitleak.data import Splits
    from splitleak.models.checkpoint import Checkpoint


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"want comma-separated whole numbers, got {text!r}") from None


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"want comma-separated numbers, got {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"want finite numbers, got {text!r}")
    return values


def add_evaluate_options(parser: argparse.ArgumentParser) -> None:
    """The `splitleak evaluate` options for models trained elsewhere (docs/byo.md)."""
    group = parser.add_argument_group("models trained elsewhere (docs/byo.md; what runs code: docs/trust.md)")
    group.add_argument("--allow-code", action="store_true", help="allow model files and factories that run code: TorchScript, torch.export .pt2, --factory")
    group.add_argument("--factory", metavar="MODULE:FUNCTION", help="a Python function that builds the encoder; the model file then holds its weights (safetensors or a torch.save state dict)")
    group.add_argument("--head", metavar="FILE", help="the server head: TorchScript, .pt2, or weights for --head-factory (needed for accuracy and the shadow attack)")
    group.add_argument("--head-factory", metavar="MODULE:FUNCTION", help="a Python function that builds the server head whose weights --head holds")
    group.add_argument("--input-spec", metavar="TOML", help="input shape, value range, normalisation, classes and data in a TOML file (options below override it)")
    group.add_argument("--shape", type=_ints, metavar="C,H,W", help="input shape (default: the dataset's or the first image's)")
    group.add_argument("--value-range", type=_floats, metavar="LOW,HIGH", help="range the encoder's inputs are fed in (default 0,1)")
    group.add_argument("--mean", type=_floats, metavar="M[,M,M]", help="per-channel mean subtracted before the encoder (with --std)")
    group.add_argument("--std", type=_floats, metavar="S[,S,S]", help="per-channel std divided by before the encoder (with --mean)")
    group.add_argument("--num-classes", type=int, help="classes of the head's output (default: the data's)")
    group.add_argument("--dataset", dest="byo_dataset", metavar="NAME", help="attack on a registered dataset (docs/data.md)")
    group.add_argument("--image-folder", metavar="DIR", help="attack on a folder of PNG/JPEG images (class subfolders give labels)")
    group.add_argument("--split-seed", type=int, help="seed of the image folder's aux / test split (default 0)")
    group.add_argument("--aux-pool", type=int, help="images of the folder or dataset reserved for the attacker (folder default: half)")


def target_from_args(args: argparse.Namespace, *, limit_test: int | None, cap_test: bool = False) -> tuple[Checkpoint, Splits]:
    """`open_target` for the parsed `splitleak evaluate` command line (`cap_test`: `limit_test` is a default)."""
    from splitleak.byo import InputConfig, open_target, read_input_spec
    from splitleak.models.foreign import ModelSource

    inputs = read_input_spec(args.input_spec) if args.input_spec else InputConfig()
    if args.byo_dataset is not None and args.image_folder is not None:
        raise InputError("give --dataset or --image-folder, not both")
    if args.byo_dataset is not None:  # the command line's data replaces the file's
        inputs = dataclasses.replace(inputs, image_folder=None)
    if args.image_folder is not None:
        inputs = dataclasses.replace(inputs, dataset=None)
    inputs = inputs.with_overrides(
        shape=args.shape, value_range=args.value_range, mean=args.mean, std=args.std, num_classes=args.num_classes,
        dataset=args.byo_dataset, image_folder=args.image_folder, split_seed=args.split_seed, aux_pool=args.aux_pool,
    )
    source = ModelSource(encoder=args.checkpoint, factory=args.factory, head=args.head, head_factory=args.head_factory, allow_code=args.allow_code)
    return open_target(source, inputs, data_dir=args.data_dir, aux_size=args.aux_size, limit_test=limit_test, download=args.download or None, cap_test=cap_test)
