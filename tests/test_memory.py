"""Peak memory: what an evaluation records and how a report line shows it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from splitleak.memory import RSS_SCOPE, memory_text, merge_memory, peak_memory, peak_rss_bytes


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_the_peak_is_the_processes_in_bytes() -> None:
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    current_kb, mm_peak_kb = int(status["VmRSS"].split()[0]), int(status["VmHWM"].split()[0])
    peak = peak_rss_bytes()
    # bytes (KiB would be 1,024x too small), at least this process's own peak (the kernel's counters lag by a few pages)
    assert peak >= 0.99 * mm_peak_kb * 1024 and mm_peak_kb >= current_kb > 0
    table = peak_memory("cpu")
    assert table.keys() == {"peak_rss_bytes", "peak_rss_scope"} and table["peak_rss_bytes"] >= peak and "ru_maxrss" in RSS_SCOPE


def test_memory_text_and_merge() -> None:
    assert memory_text({}) == ""
    assert memory_text({"peak_rss_bytes": 2.14e9, "streamed": False, "chunk_images": 300}) == "peak memory 2.1 GB (process RSS)"
    streamed = {"peak_rss_bytes": 3.1e8, "cuda_max_allocated_bytes": 1.2e9, "streamed": True, "chunk_images": 4096}
    assert memory_text(streamed) == "peak memory 310 MB (process RSS), CUDA 1.2 GB; activations streamed in chunks of 4,096 images"
    merged = merge_memory({"peak_rss_bytes": 1e9, "chunk_images": 10}, {"peak_rss_bytes": 2e9, "chunk_images": 20, "cuda_max_allocated_bytes": 5})
    assert merged == {"peak_rss_bytes": 2e9, "chunk_images": 10, "cuda_max_allocated_bytes": 5}  # the larger peaks, the first cell's plan
