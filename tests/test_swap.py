"""Swapping a results folder in whole, and recovering from a swap killed between its renames."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from splitleak import swap
from splitleak.outputs import MARKER, folder_kind
from splitleak.results import FOLDER_KIND, Results, ResultsError, recover_results_folder


def _results(value: float) -> Results:
    row = dict(run="r1", checkpoint="m", checkpoint_sha256="f" * 64, dataset="digits", arch="small-cnn", cut=1, defense="none",
               defense_params="{}", attack="", metric="accuracy", value=value, sample=None, n=1, seed=0)
    return Results(pd.DataFrame([row]))


def _value(folder: Path) -> float:
    return float(Results.load(folder).table["value"].iloc[0])


def _siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir())


def _crash_state(out: Path, *, new_complete: bool = True) -> tuple[Path, Path]:
    """What a SIGKILL between the two renames of the fallback swap leaves: the old folder moved
    aside, the new one complete (or still being written) in its staging folder, no target."""
    _results(0.1).save(out)
    staging = swap.stage(out, FOLDER_KIND)
    written = _results(0.2).write_into(staging)
    if new_complete:
        swap.finish(staging, FOLDER_KIND, [p.name for p in written])
    old = out.with_name(f".{out.name}.splitleak-old-abcd1234")
    os.replace(out, old)
    return staging, old


def test_the_next_save_recovers_the_newest_complete_results(tmp_path: Path) -> None:
    out = tmp_path / "r"
    staging, old = _crash_state(out)
    assert not out.exists() and {staging.name, old.name} <= set(_siblings(out))
    with pytest.raises(ResultsError, match="killed midway"):  # readers (report, gate) say so, and change nothing
        Results.load(out)
    assert recover_results_folder(out) == staging
    assert _value(out) == 0.2 and folder_kind(out)[0] == FOLDER_KIND  # the new, complete results
    assert _siblings(out) == ["r"]  # both hidden folders were splitleak's: gone
    _results(0.3).save(out)
    assert _value(out) == 0.3 and _siblings(out) == ["r"]


def test_an_unfinished_new_folder_gives_back_the_old_results(tmp_path: Path) -> None:
    out = tmp_path / "r"
    _crash_state(out, new_complete=False)
    _results(0.3).save(out)  # recovery first: the old folder is the target again, then replaced
    assert _value(out) == 0.3 and _siblings(out) == ["r"]
    _crash_state(tmp_path / "s", new_complete=False)
    recover_results_folder(tmp_path / "s")
    assert _value(tmp_path / "s") == 0.1


def test_hidden_folders_without_splitleaks_marker_are_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "r"
    _results(0.1).save(out)
    foreign = [tmp_path / ".r.splitleak-new-zzzz9999", tmp_path / ".r.splitleak-old-zzzz8888", tmp_path / ".r.splitleak-old-short"]
    for folder in foreign:
        folder.mkdir()
        (folder / "mine.txt").write_text("a user's file")
    (foreign[0] / MARKER).write_text('{"format": "someone-else"}')
    other = tmp_path / ".rr.splitleak-old-abcd1234"  # another target's leftovers: not r's
    _results(0.5).save(other)
    _results(0.2).save(out)
    assert all((f / "mine.txt").read_text() == "a user's file" for f in foreign)
    assert _value(other) == 0.5 and _value(out) == 0.2


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "two-renames"])
def test_save_replaces_the_folder_either_way(tmp_path: Path, monkeypatch, exchange: bool) -> None:
    if exchange and swap._RENAMEAT2 is None:
        pytest.skip("no renameat2 in this C library")
    if not exchange:
        monkeypatch.setattr(swap, "_RENAMEAT2", None)
    calls = []
    real = swap.exchange
    monkeypatch.setattr(swap, "exchange", lambda a, b: calls.append(real(a, b)) or calls[-1])
    out = tmp_path / "r"
    _results(0.1).save(out)
    _results(0.2).save(out)
    assert _value(out) == 0.2 and _siblings(out) == ["r"]
    assert calls == [exchange] or (exchange and calls == [False])  # a file system without RENAME_EXCHANGE falls back


def test_exchange_trades_two_folders(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "x").write_text("a"), (b / "x").write_text("b")
    if not swap.exchange(a, b):
        pytest.skip("RENAME_EXCHANGE is not available here")
    assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"


_KILLED_SWAP = """
import os, signal, sys
import pandas as pd
from splitleak import swap
from splitleak.results import Results
swap._RENAMEAT2 = None  # the two-rename swap, the one a kill can split
row = dict(run="r1", checkpoint="m", checkpoint_sha256="f" * 64, dataset="d", arch="a", cut=1, defense="none",
           defense_params="{}", attack="", metric="accuracy", value=0.2, sample=None, n=1, seed=0)
real = os.replace
def replace(src, dst):
    if os.path.basename(dst) == "r":
        os.kill(os.getpid(), signal.SIGKILL)  # between moving the old folder aside and the new one in
    return real(src, dst)
swap.os.replace = replace
Results(pd.DataFrame([row])).save(sys.argv[1])
"""


def test_a_save_killed_between_its_renames_is_repaired_by_the_next(tmp_path: Path) -> None:
    out = tmp_path / "r"
    _results(0.1).save(out)
    script = textwrap.dedent(_KILLED_SWAP)
    done = subprocess.run([sys.executable, "-c", script, str(out)], env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}, capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    assert not out.exists() and len(_siblings(out)) == 2  # the crash state: no target, two hidden folders
    recover_results_folder(out)
    assert _value(out) == 0.2 and _siblings(out) == ["r"]


def test_ctrl_c_while_a_file_set_is_moved_in_waits_until_all_are_in(tmp_path: Path, monkeypatch) -> None:
    staging = swap.stage(tmp_path / "r.pdf", "report")
    for name in ("r.pdf", "r.summary.csv", "r.results.csv"):
        (staging / name).write_text("new")
        (tmp_path / name).write_text("old")
    real, moved = os.replace, []

    def replace(src, dst):
        moved.append(dst)
        if len(moved) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C after the first file
        return real(src, dst)

    monkeypatch.setattr(swap.os, "replace", replace)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # a job started in the background inherits SIGINT ignored
    try:
        with pytest.raises(KeyboardInterrupt):
            swap.commit_files(staging, {n: tmp_path / n for n in ("r.pdf", "r.summary.csv", "r.results.csv")})
    finally:
        signal.signal(signal.SIGINT, before)
    assert len(moved) == 3 and all((tmp_path / n).read_text() == "new" for n in ("r.pdf", "r.summary.csv", "r.results.csv"))
