"""Where a run's time went: wall seconds per named stage, summed over repeats.

`evaluate` times each stage it runs ("activations", "prepare/<scorer>", "attack/<name>/fit",
"attack/<name>/reconstruct", "score/<scorer>") and records them in the run's provenance
(`RunProvenance.stages`), with the checkpoint's own training time as "train"; the report shows
them on one line per run. Wall time: a loaded machine stretches every stage.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any


class Stopwatch:
    """Seconds per stage; a stage timed twice adds up."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + float(seconds)

    @contextmanager
    def time(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - start)


def training_seconds(log: Iterable[Mapping[str, Any]]) -> float | None:
    """The training time a checkpoint's per-epoch log records (None: it records none)."""
    seconds = [entry["seconds"] for entry in log if isinstance(entry.get("seconds"), (int, float))]
    return float(sum(seconds)) if seconds else None


def merge_stages(*tables: Mapping[str, float]) -> dict[str, float]:
    """Several cells' stages of one model as one table: each stage's seconds summed (a sweep
    trains once per model, so "train" is kept once)."""
    out: dict[str, float] = {}
    for table in tables:
        for stage, seconds in table.items():
            out[stage] = seconds if stage == "train" else out.get(stage, 0.0) + seconds
    return out


def stages_line(stages: Mapping[str, float]) -> str:
    """'train 62 s · activations 0.4 s · decoder 12 s (fit 11.9, reconstruct 0.1) · scoring 8.1 s (lpips 5.0, ...)'
    in the order a run goes: training, activations, each attack, then the scorers' preparation and scoring."""
    parts: list[str] = []
    for stage in ("train", "activations"):
        if stage in stages:
            parts.append(f"{stage} {_seconds(stages[stage])}")
    attacks = dict.fromkeys(s.split("/")[1] for s in stages if s.startswith("attack/"))
    for name in attacks:
        steps = {step: stages.get(f"attack/{name}/{step}") for step in ("fit", "reconstruct")}
        known = {k: v for k, v in steps.items() if v is not None}
        parts.append(f"{name} {_seconds(sum(known.values()))} (" + ", ".join(f"{k} {v:.1f}" for k, v in known.items()) + ")")
    for group, title in (("prepare", "preparing scorers"), ("score", "scoring")):
        items = {s.split("/", 1)[1]: v for s, v in stages.items() if s.startswith(f"{group}/")}
        if items:
            parts.append(f"{title} {_seconds(sum(items.values()))} (" + ", ".join(f"{k} {v:.1f}" for k, v in sorted(items.items(), key=lambda kv: -kv[1])) + ")")
    return " · ".join(parts)


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 100 else f"{value / 60:.1f} min"
