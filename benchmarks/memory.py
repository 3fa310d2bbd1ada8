"""Peak memory of `splitleak evaluate` on 10,000 32x32 colour images at resnet18 layer1.

    .venv/bin/python -m benchmarks.memory                       # ~10 min of CPU, one thread
    .venv/bin/python -m benchmarks.memory --attacks decoder,rmle --attack-param rmle.steps=2

Acceptance (issue 18): the evaluation's peak resident memory stays under 4 GB.

Setup: `photo-patches` (10,000 test images, 3x32x32), a resnet18 cut at layer1 (activations
64x32x32 = 65,536 values, 256 KiB per image: 2.6 GB for the 10,000) trained for one epoch on 256
images (memory does not depend on how well it is trained), then `splitleak evaluate` of all
10,000 test images with the default `--activation-memory-mb` (1,024: streamed in chunks of
4,096 images), the decoder attack (1 epoch; its 5,000 auxiliary images' activations, 1.3 GB,
exceed the budget, so it queries them batch by batch), no LPIPS and no semantic classifier,
one torch thread. Training and evaluation each run in a fresh process started from this one,
which imports nothing but the standard library.

Peak RSS: the evaluate process's VmHWM, read from /proc while it runs, and the figure its
results folder records (`memory.peak_rss_bytes`: ru_maxrss, which on Linux also counts the
high-water mark of the process it was started from, this one's ~20 MB). Writes
`benchmarks/results/memory.md`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from benchmarks._proc import run_watched

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
LIMIT_BYTES = 4 * 10**9  # the acceptance: under 4 GB


def measure(attacks: str, attack_params: list[str], images: int, folder: Path) -> dict[str, float]:
    """Train the checkpoint, evaluate it; peaks in bytes and wall seconds of the evaluation."""
    cli = [sys.executable, "-m", "splitleak.cli"]
    checkpoint = folder / "resnet18-layer1.safetensors"
    run_watched([*cli, "train", "--dataset", "photo-patches", "--arch", "resnet18", "--cut", "layer1", "--epochs", "1",
                 "--limit-train", "256", "--limit-test", "100", "--out", str(checkpoint), "--threads", "1", "--quiet"], ROOT)
    out = folder / "results"
    params = [arg for p in ("decoder.epochs=1", *attack_params) for arg in ("--attack-param", p)]
    seconds, peak_kb = run_watched([*cli, "evaluate", str(checkpoint), "--out", str(out), "--limit-test", str(images), "--attacks", attacks,
                                    *params, "--lpips", "none", "--semantic-epochs", "0", "--gallery", "4", "--threads", "1", "--quiet"], ROOT)
    run = next(iter(json.loads((out / "provenance.json").read_text())["runs"].values()))
    return {"seconds": seconds, "vm_hwm_bytes": peak_kb * 1024, "recorded_peak_rss_bytes": run["memory"]["peak_rss_bytes"], "memory": run["memory"]}


def markdown(attacks: str, images: int, figures: dict) -> str:
    memory = figures["memory"]
    ok = max(figures["vm_hwm_bytes"], figures["recorded_peak_rss_bytes"]) < LIMIT_BYTES
    return (
        f"`splitleak evaluate` of {images:,} photo-patches test images, resnet18 layer1 ({memory['activation_shape']}), attacks {attacks}, "
        f"activation_memory {memory['activation_memory'] / 2**20:,.0f} MiB (streamed: {memory['streamed']}, chunks of {memory['chunk_images']:,} images, "
        f"dCor on {memory['dcor_images']:,} images), one thread:\n\n"
        "| peak RSS (VmHWM) | peak RSS recorded (ru_maxrss) | wall s | under 4 GB |\n|---|---|---|---|\n"
        f"| {figures['vm_hwm_bytes'] / 1e9:.2f} GB | {figures['recorded_peak_rss_bytes'] / 1e9:.2f} GB | {figures['seconds']:.0f} | {'yes' if ok else '**no**'} |\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.splitlines()[0])
    parser.add_argument("--attacks", default="decoder", help="comma-separated attacks (default decoder)")
    parser.add_argument("--attack-param", action="append", default=[], help="ATTACK.OPTION=VALUE, as for splitleak evaluate (repeatable)")
    parser.add_argument("--images", type=int, default=10_000, help="test images evaluated (default 10,000)")
    parser.add_argument("--out", default=str(RESULTS / "memory.md"), help="Markdown file written")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        figures = measure(args.attacks, args.attack_param, args.images, Path(tmp))
    text = markdown(args.attacks, args.images, figures)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    return 0 if max(figures["vm_hwm_bytes"], figures["recorded_peak_rss_bytes"]) < LIMIT_BYTES else 1


if __name__ == "__main__":
    sys.exit(main())
