"""How the command line shows progress: bars on a terminal; elsewhere (CI logs) one line per
stage on stderr (splitleak.progress.lines); nothing with --quiet."""

from __future__ import annotations

import functools
import sys

from splitleak.progress import ProgressFactory, lines


def progress_for(quiet: bool) -> ProgressFactory:
    """The progress factory for a command run with or without `--quiet`."""
    if quiet:
        return functools.partial(_tqdm(), disable=True)
    if not sys.stderr.isatty():
        return lines(functools.partial(print, file=sys.stderr, flush=True))
    return functools.partial(_tqdm(), leave=False, unit="img", unit_scale=True, dynamic_ncols=True)


def _tqdm():  # noqa: ANN202 - tqdm's class, imported when a command runs
    from tqdm import tqdm

    return tqdm
