"""The benchmark suite: splitleak side by side with the reference code, as ratios, in one run.

    .venv/bin/python -m benchmarks                # everything (~25 min on 2 CPU cores)
    .venv/bin/python -m benchmarks --skip-demo    # without the two demo runs (~12 min)
    .venv/bin/python -m benchmarks --device cuda  # the torch parts on a GPU

Sections (each timing is the fastest of `--repeats` runs after a warm-up, in this process):

* dcor: `splitleak.metrics.distance_correlation` (float64) vs `dcor.distance_correlation`
  (float64, exponent 1) on n Fashion-MNIST test images (784-d) and their ~1,000-d activations
  (a fixed random ReLU layer 784 -> 1,024), n = 256, 1,024, 4,096; splitleak's blocked
  `dcor_statistics` (V and U statistics with jackknife CI, bounded memory) alone at n = 10,000
  and 60,000 (images repeated with noise beyond the 10,000 test images).
* ssim: splitleak's batched SSIM vs a loop of `skimage.metrics.structural_similarity` with the
  same Gaussian definition on 10,000 pairs of 28x28 images (originals vs noisy copies), warm and
  on its first call, and vs the batched peers torchmetrics and pytorch-msssim at equal results
  (`pip install -e '.[bench]'`; a peer that is not installed is left out, with a note).
* lpips: throughput in pairs/s of `lpips_distance` (AlexNet, 28x28 upsampled to 64x64) and of
  the `lpips` package on the same inputs.
* nopeek: training images/s of small-cnn on Fashion-MNIST with and without the NoPeek penalty
  at batch 64, 256 and 1,024, at every cut: one epoch of 10,000 images, the two alternated,
  best of at least 3 each (single runs vary by +-15% on this machine).
* nopeek-floor: the penalty alone, forward + backward (`torch.autograd.grad` of
  `distance_correlation` on 256 Fashion-MNIST images and ReLU activations of cut 1's and cut 2's
  shape, channels-last as the convolutions return them), against its floor: the two matrix
  products it cannot avoid (the [256, d] Gram matrix and one [256, 256] @ [256, d] product), at
  one and two torch threads.
* pool: small-cnn's 2x2 max-pooling (`splitleak.models.pooling.MaxPool2x2`) vs `F.max_pool2d` on
  the activations it pools (post-ReLU, [256, 16, 28, 28] and [256, 32, 14, 14]), forward alone and
  forward + backward, equal to the last bit (values and input gradients).
* demo: `splitleak demo --quick` and `splitleak demo` in a subprocess: wall time and peak RSS.

Writes `BENCHMARKS.md`'s table to `benchmarks/results/suite.md` and `suite.csv` and prints it.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks._proc import run_watched
from splitleak._cli.device import HELP as DEVICE_HELP, device_argument

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Row:
    """One line of the table: what was timed, splitleak vs the reference, and the floor."""

    section: str
    case: str
    splitleak: float  # seconds, or a throughput when `unit` says so
    reference: float | None = None
    unit: str = "s"
    ratio: float | None = None  # how many times faster splitleak is (or the overhead, see `floor`)
    max_abs_diff: float | None = None
    floor: str = ""
    meets_floor: bool | None = None


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Fastest wall time of `repeats` calls of `fn` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# --------------------------------------------------------------------------------------------
# Data


def fashion_test_images(n: int) -> torch.Tensor:
    """The first n Fashion-MNIST test images (repeated with small noise beyond 10,000), [n, 784]."""
    from splitleak.data import DataConfig, load_splits

    x = load_splits(DataConfig(dataset="fashion-mnist", limit_train=10)).test.x.flatten(1)
    reps = -(-n // len(x))
    out = x.repeat(reps, 1)[:n]
    if n > len(x):
        noise = torch.Generator().manual_seed(0)
        out = (out + 0.01 * torch.randn(out.shape, generator=noise)).clamp(0, 1)
    return out


def activations(x: torch.Tensor, width: int = 1024) -> torch.Tensor:
    """A fixed random ReLU layer: ~1,000-d non-linear activations of x."""
    w = torch.randn(x.shape[1], width, generator=torch.Generator().manual_seed(1)) / x.shape[1] ** 0.5
    return torch.relu(x @ w)


# --------------------------------------------------------------------------------------------
# Sections


REFERENCE_MEMORY_BYTES = 16 * 2**30
"""The most memory the dcor package's reference run may need; above it the row says so instead."""


def bench_dcor(repeats: int, sizes: tuple[int, ...], large: tuple[int, ...], device: str) -> list[Row]:
    import dcor

    from splitleak.metrics import distance_correlation
    from splitleak.metrics.dependence_scale import dcor_statistics

    rows = []
    x_all = fashion_test_images(max(sizes))
    z_all = activations(x_all)
    dcor.distance_correlation(np.random.rand(20, 3), np.random.rand(20, 2))  # numba compile, not timed
    for n in sizes:
        x64, z64 = x_all[:n].double(), z_all[:n].double()
        xn, zn = np.ascontiguousarray(x64.numpy()), np.ascontiguousarray(z64.numpy())
        xd, zd = x64.to(device), z64.to(device)
        ours_value = float(distance_correlation(xd, zd))

        def ours() -> None:
            distance_correlation(xd, zd)
            _sync(device)

        ours_s = best_time(ours, repeats)
        floor = "≥ 50x, diff ≤ 1e-6" if n == 1024 else ""
        case = f"n = {n:,}, 784-d vs 1,024-d, float64"
        need = n * n * xn.shape[1] * 8  # dcor's naive path builds an n x n x d float64 array (98 GiB at n = 4,096)
        try:
            if need > REFERENCE_MEMORY_BYTES:  # a machine with that much memory would spend minutes filling it
                raise MemoryError
            ref_value = float(dcor.distance_correlation(xn, zn))  # also the warm-up
            ref_s = best_time(lambda: dcor.distance_correlation(xn, zn), 1)
        except MemoryError:
            rows.append(Row("dcor", case + f" (dcor: not run, needs {need / 2**30:.0f} GiB)", ours_s))
            continue
        ratio = ref_s / ours_s
        diff = abs(ours_value - ref_value)
        meets = (ratio >= 50 and diff <= 1e-6) if n == 1024 else None
        rows.append(Row("dcor", case, ours_s, ref_s, "s", ratio, diff, floor, meets))
    for n in large:
        x, z = fashion_test_images(n), None
        z = activations(x)
        start = time.perf_counter()
        est = dcor_statistics(x.to(device), z.to(device))
        _sync(device)
        seconds = time.perf_counter() - start
        rows.append(Row("dcor", f"n = {n:,} blocked, V + U + jackknife CI (dCor {est.v:.4f})", seconds, None, "s"))
    return rows


def bench_ssim(repeats: int, pairs: int, device: str) -> list[Row]:
    """splitleak's SSIM against scikit-image's loop (the definition's reference) and the two
    batched torch peers a user would pick instead, each computing the same number (torchmetrics
    averages its SSIM map over a reflect-padded border by default: its full map is asked for and
    the border cropped, as scikit-image and pytorch-msssim do)."""
    from skimage.metrics import structural_similarity

    from splitleak.metrics import ssim

    x = fashion_test_images(pairs).reshape(-1, 1, 28, 28)
    y = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    xd, yd = x.to(device), y.to(device)
    start = time.perf_counter()
    ours_values = ssim(xd, yd, data_range=1.0).cpu().double().numpy()
    first_s = time.perf_counter() - start

    def ours() -> None:
        ssim(xd, yd, data_range=1.0)
        _sync(device)

    xn, yn = x[:, 0].double().numpy(), y[:, 0].double().numpy()

    def reference() -> np.ndarray:
        return np.array([
            structural_similarity(a, b, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
            for a, b in zip(xn, yn)
        ])

    ref_values = reference()
    ours_s, ref_s = best_time(ours, repeats), best_time(reference, 1)
    diff = float(np.abs(ours_values - ref_values).max())
    ratio = ref_s / ours_s
    rows = [
        Row("ssim", f"{pairs:,} pairs 28x28, Gaussian window 11, sigma 1.5: vs scikit-image (loop)", ours_s, ref_s, "s", ratio, diff, "≥ 20x, diff ≤ 1e-4", ratio >= 20 and diff <= 1e-4),
        Row("ssim", "the same, first call in the process (splitleak) vs scikit-image", first_s, ref_s, "s", ref_s / first_s, diff),
    ]
    for name, peer in _ssim_peers().items():
        peer_values = peer(xd, yd).cpu().double().numpy()
        peer_s = best_time(lambda: (peer(xd, yd), _sync(device)), repeats)
        peer_diff = float(np.abs(peer_values - ref_values).max())
        rows.append(Row("ssim", f"the same vs {name} (its result's max diff from scikit-image: {peer_diff:.1e})", ours_s, peer_s, "s", peer_s / ours_s, diff,
                        "≥ 1x at equal results (1e-4)", peer_s >= ours_s and peer_diff <= 1e-4 and diff <= 1e-4))
    return rows


def _ssim_peers() -> dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """The installed batched SSIM implementations (`pip install -e '.[bench]'`), by name, each
    returning per-image SSIM with scikit-image's definition."""
    peers: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {}
    try:
        from pytorch_msssim import ssim as msssim_ssim

        peers["pytorch-msssim"] = lambda x, y: msssim_ssim(x, y, data_range=1.0, size_average=False, win_size=11, win_sigma=1.5)
    except ImportError:
        print("note: pytorch-msssim is not installed (pip install -e '.[bench]'); its row is left out", file=sys.stderr)
    try:
        from splitleak._compat import import_torchvision

        import_torchvision()  # torchmetrics imports torchvision
        from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

        def torchmetrics_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            _, full = tm_ssim(x, y, gaussian_kernel=True, sigma=1.5, kernel_size=11, data_range=1.0, reduction="none", return_full_image=True)
            return full[..., 5:-5, 5:-5].mean(dim=(1, 2, 3))

        peers["torchmetrics"] = torchmetrics_ssim
    except ImportError:
        print("note: torchmetrics is not installed (pip install -e '.[bench]'); its row is left out", file=sys.stderr)
    return peers


def bench_lpips(repeats: int, pairs: int, device: str) -> list[Row]:
    from splitleak.metrics.perceptual import _CHUNK_PIXELS, _get_model, _prepare, lpips_distance

    x = fashion_test_images(pairs).reshape(-1, 1, 28, 28).to(device)
    y = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3), device=device)).clamp(0, 1)

    def ours() -> None:
        lpips_distance(x, y, net="alex", value_range=(0.0, 1.0))
        _sync(device)

    ours_s = best_time(ours, repeats)
    model, _ = _get_model("alex", None, x.device)
    a, b = _prepare(x, 0.0, 1.0, (64, 64)), _prepare(y, 0.0, 1.0, (64, 64))

    @torch.no_grad()
    def reference() -> None:  # the lpips package's network, called once on the whole prepared batch
        model(a, b)
        _sync(device)

    ref_s = best_time(reference, repeats)
    both = torch.cat((a, b)).contiguous()
    chunk = 2 * max(1, _CHUNK_PIXELS // (64 * 64))  # the backbone's batches as lpips_distance runs them

    @torch.no_grad()
    def floor() -> None:  # what LPIPS cannot avoid: the backbone over both images of every pair at the scored size
        for start in range(0, len(both), chunk):
            model.net(both[start : start + chunk])
        _sync(device)

    floor_s = best_time(floor, repeats)
    return [
        Row("lpips", f"{pairs:,} pairs 28x28 -> 64x64, AlexNet (pairs/s)", pairs / ours_s, pairs / ref_s, "pairs/s", ref_s / ours_s),
        Row("lpips-floor", "the same: lpips_distance (splitleak) vs the backbone's forward over both images (reference)", ours_s, floor_s, "s",
            ours_s / floor_s, None, "≤ 1.2x the backbone", ours_s / floor_s <= 1.2),
    ]


def bench_nopeek(repeats: int, batches: tuple[int, ...], cuts: tuple[int, ...], images: int, device: str) -> list[Row]:
    from splitleak.data import DataConfig, load_splits
    from splitleak.training import TrainConfig, train

    splits = load_splits(DataConfig(dataset="fashion-mnist", limit_train=images, limit_test=10))
    rows = []
    for cut in cuts:
        for batch in batches:
            speed = {"none": 0.0, "nopeek": 0.0}
            for _ in range(max(repeats, 3)):  # alternate the two, so drift in the machine's speed hits both alike
                for defense, params in (("none", {}), ("nopeek", {"alpha": 5.0})):
                    config = TrainConfig(cut=cut, epochs=1, batch_size=batch, defense=defense, defense_params=params, device=device)
                    speed[defense] = max(speed[defense], train(config, splits).meta.log[0]["images_per_second"])
            overhead = speed["none"] / speed["nopeek"] - 1  # no floor: the penalty's own yardstick is nopeek-floor (issue 20)
            rows.append(Row(
                "nopeek", f"cut {cut}, batch {batch}: img/s with penalty (splitleak) vs without (reference)", speed["nopeek"], speed["none"], "img/s", overhead,
            ))
    return rows


def bench_penalty_floor(repeats: int, device: str, threads: tuple[int, ...] = (1, 2)) -> list[Row]:
    from splitleak.metrics import distance_correlation

    gen = torch.Generator().manual_seed(0)
    x = fashion_test_images(256).reshape(256, 1, 28, 28).to(device)
    rows, before = [], torch.get_num_threads()
    for shape in ((16, 28, 28), (32, 14, 14)):
        d = int(np.prod(shape))
        z = torch.relu(torch.randn(256, *shape, generator=gen)).contiguous(memory_format=torch.channels_last).to(device).requires_grad_(True)
        a, w = torch.randn(256, d, generator=gen).to(device), torch.randn(256, 256, generator=gen).to(device)

        def penalty() -> None:
            torch.autograd.grad(distance_correlation(x, z), z)
            _sync(device)

        def products() -> None:
            a @ a.T, w @ a
            _sync(device)

        for count in threads if device == "cpu" else (before,):
            torch.set_num_threads(count)
            ours, floor = best_time(penalty, max(repeats, 10)), best_time(products, max(repeats, 10))
            rows.append(Row(
                "nopeek-floor", f"d = {d:,}, batch 256, {count} thread(s): penalty forward + backward (splitleak) vs its two matrix products (reference)",
                ours, floor, "s", ours / floor, None, "≤ 1.5x the products", ours / floor <= 1.5,
            ))
    torch.set_num_threads(before)
    return rows


def bench_pool(repeats: int, device: str) -> list[Row]:
    import torch.nn.functional as F

    from splitleak.models.pooling import MaxPool2x2

    pool, gen, rows = MaxPool2x2(), torch.Generator().manual_seed(0), []
    for shape in ((256, 16, 28, 28), (256, 32, 14, 14)):
        x = torch.relu(torch.randn(*shape, generator=gen).round()).to(device)  # post-ReLU, with ties, as small-cnn pools them
        upstream = torch.randn(shape[0], shape[1], shape[2] // 2, shape[3] // 2, generator=gen).to(device)

        def gradient(fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
            leaf = x.clone().requires_grad_(True)
            fn(leaf).backward(upstream)
            _sync(device)
            return leaf.grad

        reference = lambda t: F.max_pool2d(t, 2)  # noqa: E731
        diff = max(float((pool(x) - reference(x)).abs().max()), float((gradient(pool) - gradient(reference)).abs().max()))
        for what, ours, theirs in (
            ("forward", lambda: (pool(x), _sync(device)), lambda: (reference(x), _sync(device))),
            ("forward + backward", lambda: gradient(pool), lambda: gradient(reference)),
        ):
            ours_s, ref_s = best_time(ours, max(repeats, 10)), best_time(theirs, max(repeats, 10))
            rows.append(Row("pool", f"2x2 max-pool {list(shape)}, {what}: MaxPool2x2 (splitleak) vs F.max_pool2d (reference)", ours_s, ref_s, "s", ref_s / ours_s, diff))
    return rows


def bench_demo(quick: bool, device: str) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "splitleak.cli", "demo", "--out", tmp, "--quiet", "--device", device]
        command += ["--quick"] if quick else []
        seconds, peak_kb = run_watched(command, ROOT)
    peak_mb = peak_kb / 1024
    limit = 60 if quick or device != "cpu" else 300  # issue 20's goals: --quick within a minute, the demo within 5 (on a GPU within 1)
    name = "splitleak demo --quick" if quick else "splitleak demo"
    return [Row("demo", f"{name} (wall s; peak RSS {peak_mb:,.0f} MB)", seconds, None, "s", None, None, f"≤ {limit} s", seconds <= limit)]


# --------------------------------------------------------------------------------------------
# Report


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if unit == "img/s" or unit == "pairs/s":
        return f"{value:,.0f}"
    return f"{value:.3g}"


def markdown(rows: list[Row], device: str) -> str:
    lines = [
        "| section | case | splitleak | reference | ratio | max abs diff | floor | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.section == "nopeek":
            ratio = f"overhead {r.ratio:+.0%}"
        elif r.section in ("nopeek-floor", "lpips-floor"):
            ratio = f"{r.ratio:.2f}x the floor"
        elif r.ratio is not None:
            ratio = f"{r.ratio:,.1f}x"
        else:
            ratio = ""
        met = "" if r.meets_floor is None else ("yes" if r.meets_floor else "**no**")
        diff = f"{r.max_abs_diff:.1e}" if r.max_abs_diff is not None else ""
        unit = "" if r.unit == "s" else f" {r.unit}"
        ref = _fmt(r.reference, r.unit) + (unit if r.reference is not None else "")
        lines.append(f"| {r.section} | {r.case} | {_fmt(r.splitleak, r.unit)}{unit} | {ref} | {ratio} | {diff} | {r.floor} | {met} |")
    head = (
        f"Device: {device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads); "
        f"torch {torch.__version__}, Python {platform.python_version()}. Times in seconds unless a unit is given; "
        "ratio = reference time / splitleak time."
    )
    return head + "\n\n" + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", type=device_argument, help=f"{DEVICE_HELP}: the torch parts run there")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-demo", action="store_true", help="do not run the two demos")
    parser.add_argument("--only", choices=("dcor", "ssim", "lpips", "nopeek", "nopeek-floor", "pool", "demo"), action="append", help="run only these sections")
    parser.add_argument("--out", default=str(RESULTS / "suite"), help="path prefix of the .md and .csv written")
    args = parser.parse_args(argv)
    sections: dict[str, Callable[[], list[Row]]] = {
        "dcor": lambda: bench_dcor(args.repeats, (256, 1024, 4096), (10_000, 60_000), args.device),
        "ssim": lambda: bench_ssim(args.repeats, 10_000, args.device),
        "lpips": lambda: bench_lpips(args.repeats, 1_000, args.device),
        "nopeek": lambda: bench_nopeek(args.repeats, (64, 256, 1024), (1, 2, 3, 4), 10_000, args.device),
        "nopeek-floor": lambda: bench_penalty_floor(args.repeats, args.device),
        "pool": lambda: bench_pool(args.repeats, args.device),
        "demo": lambda: bench_demo(True, args.device) + bench_demo(False, args.device),
    }
    chosen = args.only or [s for s in sections if not (args.skip_demo and s == "demo")]
    rows: list[Row] = []
    for name in chosen:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows += sections[name]()
    text = markdown(rows, args.device)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    pd.DataFrame([asdict(r) for r in rows]).to_csv(out.with_suffix(".csv"), index=False)
    print(text)
