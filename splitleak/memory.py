"""Peak memory: what an evaluation records of it, and how a report shows it (no torch at import).

`peak_memory(device)` reads the process's peak resident set (`resource.getrusage(RUSAGE_SELF)
.ru_maxrss`) and, on CUDA, `torch.cuda.max_memory_allocated`. The resident peak is the whole
process's since it started, not one evaluation's: a process that loaded a larger dataset or ran
another evaluation first reports that peak. Run an evaluation in a fresh process (the CLI does)
to measure its own. The CUDA figure is the evaluation's own (evaluate resets the peak first).
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Mapping
from typing import Any

DEFAULT_ACTIVATION_MEMORY = 2**30
"""Bytes of activations `evaluate` holds at once by default (1 GiB; splitleak.streaming)."""

RSS_SCOPE = "the process's peak resident set since it started (ru_maxrss), not this evaluation's alone"
CUDA_SCOPE = "torch.cuda.max_memory_allocated during this evaluation (tensors only, not the CUDA context)"


def peak_rss_bytes() -> int:
    """The process's peak resident set size in bytes (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def reset_cuda_peak(device: str) -> None:
    """Start CUDA's peak-allocation count afresh (nothing to do off CUDA)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: str) -> dict[str, Any]:
    """{"peak_rss_bytes", "peak_rss_scope"} and, on CUDA, {"cuda_max_allocated_bytes", "cuda_scope"}."""
    out: dict[str, Any] = {"peak_rss_bytes": peak_rss_bytes(), "peak_rss_scope": RSS_SCOPE}
    if device.startswith("cuda"):
        import torch

        out.update(cuda_max_allocated_bytes=int(torch.cuda.max_memory_allocated(device)), cuda_scope=CUDA_SCOPE)
    return out


def merge_memory(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """Two evaluations of one model (sweep cells) as one table: `first`'s, with the larger peaks."""
    out = {**second, **first}
    for key in ("peak_rss_bytes", "cuda_max_allocated_bytes"):
        peaks = [t[key] for t in (first, second) if isinstance(t.get(key), (int, float))]
        if peaks:
            out[key] = max(peaks)
    return out


def gigabytes(value: float) -> str:
    """Bytes as '2.1 GB' (10^9) or '310 MB'."""
    return f"{value / 1e9:.1f} GB" if value >= 1e9 else f"{value / 1e6:.0f} MB"


def memory_text(memory: Mapping[str, Any]) -> str:
    """'peak memory 2.1 GB (process RSS), CUDA 1.2 GB; activations streamed in chunks of 4,096 images' ('' when none recorded)."""
    rss, cuda = memory.get("peak_rss_bytes"), memory.get("cuda_max_allocated_bytes")
    if not isinstance(rss, (int, float)):
        return ""
    text = f"peak memory {gigabytes(rss)} (process RSS)"
    if isinstance(cuda, (int, float)):
        text += f", CUDA {gigabytes(cuda)}"
    chunk = memory.get("chunk_images")
    if memory.get("streamed") and isinstance(chunk, int):
        text += f"; activations streamed in chunks of {chunk:,} images"
    return text
