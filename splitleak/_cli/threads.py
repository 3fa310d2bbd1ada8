"""`--threads N`: torch's CPU threads for the commands that compute (train, evaluate, demo; sweep
per worker). Without it torch sizes its pool from `$OMP_NUM_THREADS` (else one thread per core),
and splitleak leaves that as it is."""

from __future__ import annotations

import argparse


def _threads(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"want a whole number >= 1, got {text!r}")
    return value


def threads_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    """Add `--threads N` to `parser`; `splitleak.cli.main` applies it before the command runs
    (sweep hands it to its workers instead)."""
    parser.add_argument("--threads", type=_threads, metavar="N", help=help_text)
