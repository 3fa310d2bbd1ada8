"""Child processes watched for their own peak memory (stdlib only: a parent that imports torch
would lend its children its own high-water mark, see `vm_hwm_kb`)."""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path


def vm_hwm_kb(pid: int) -> int:
    """Peak resident set size (VmHWM, kB) of a running process; 0 once it is gone.

    Not getrusage / wait4: Linux hands a child the parent's high-water mark at exec, so those
    report the parent's own peak (GBs after a benchmark's dCor section) instead of the child's.
    """
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def run_watched(command: Sequence[str], cwd: Path) -> tuple[float, int]:
    """Run `command`; (wall seconds, its peak RSS in kB read from /proc while it ran). Raises
    RuntimeError with the end of its stderr when it fails."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen(list(command), cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        peak_kb = 0
        while child.poll() is None:  # the child's own high-water mark, read while it runs
            peak_kb = max(peak_kb, vm_hwm_kb(child.pid))
            time.sleep(0.2)
        seconds = time.perf_counter() - start
        if child.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(command)} failed:\n{err.read().decode(errors='replace')[-2000:]}")
    return seconds, peak_kb
