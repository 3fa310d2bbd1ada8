"""Blocked distance correlation at scale on Fashion-MNIST: time, peak memory, agreement, coverage.

    .venv/bin/python -m benchmarks.dcor_scale                 # timings + agreement (~5 min)
    .venv/bin/python -m benchmarks.dcor_scale --coverage      # + jackknife coverage study (~10 min)
    .venv/bin/python -m benchmarks.dcor_scale --full-direct   # + direct float64 dCor at n = 10,000 (~7 GB)

x = the n first Fashion-MNIST test images (784-d, float32 in [0, 1]); z = their activations from a
small-cnn trained for 1 epoch (seed 0) on the training split: cut 3 (64x7x7 = 3,136-d), a fixed
Gaussian random projection of those to 1,000-d, and cut 4 (128-d). Each timing runs
``dcor_statistics`` in a fresh subprocess that first loads the inputs (and warms up on 10 samples,
importing scipy); the peak resident set size (VmHWM from /proc) is that of the computation:
Python + torch + inputs + the function's own memory (ru_maxrss is useless here: Linux carries it
over from the parent, which trained the CNN). The Markdown report goes to stdout and to
``benchmarks/results/dcor_scale.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results" / "dcor_scale.md"
MiB = 2**20


# --------------------------------------------------------------------------------------------
# Worker: one timed call in a fresh process
# --------------------------------------------------------------------------------------------


def _status_mb(field: str) -> float:
    """VmRSS / VmHWM of this process in MB, from /proc (per address space, so unlike ru_maxrss not
    inherited from the parent process across fork + exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _worker(spec: dict) -> None:
    from splitleak.metrics.dependence_scale import dcor_statistics

    torch.set_num_threads(spec["threads"])
    n = spec["n"]
    x = torch.from_numpy(np.load(spec["x"], mmap_mode="r")[:n].copy())
    z = torch.from_numpy(np.load(spec["z"], mmap_mode="r")[:n].copy())
    dcor_statistics(x[:10], z[:10])  # warm-up: imports scipy, starts the thread pool
    try:  # reset the high-water mark to the current RSS (Linux >= 4.0)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    rss0 = _status_mb("VmRSS")
    wall, cpu = time.perf_counter(), time.process_time()
    est = dcor_statistics(x, z, memory_budget=spec["budget"], precision=spec["precision"])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    rss1 = _status_mb("VmHWM")
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "rss_base_mb": rss0, "rss_peak_mb": rss1, **est.to_dict()}))


def _run_worker(spec: dict) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.dcor_scale", "--worker", json.dumps(spec)],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def _activations(workdir: Path) -> tuple[Path, dict[str, Path]]:
    """Save x (test images) and each z case as float32 .npy files; return their paths."""
    from splitleak.data import DataConfig, load_splits
    from splitleak.training import TrainConfig, train

    splits = load_splits(DataConfig(dataset="fashion-mnist"))
    x = splits.test.x.float()
    xp = workdir / "x.npy"
    np.save(xp, x.reshape(len(x), -1).numpy())
    zs: dict[str, Path] = {}
    for cut in (3, 4):
        t0 = time.perf_counter()
        model = train(TrainConfig(cut=cut, epochs=1, seed=0), splits).model.eval()
        with torch.no_grad():
            z = torch.cat([model.client(x[i : i + 1000]) for i in range(0, len(x), 1000)]).flatten(1)
        print(f"# trained small-cnn cut {cut} (1 epoch) and encoded {len(x)} images in "
              f"{time.perf_counter() - t0:.0f} s: z {tuple(z.shape)}", file=sys.stderr)
        if cut == 3:
            zs["cut 3 (3136-d)"] = workdir / "z3.npy"
            np.save(zs["cut 3 (3136-d)"], z.numpy())
            proj = torch.randn(z.shape[1], 1000, generator=torch.Generator().manual_seed(0)) / 1000**0.5
            zs["cut 3 projected (1000-d)"] = workdir / "z1000.npy"
            np.save(zs["cut 3 projected (1000-d)"], (z @ proj).numpy())
        else:
            zs["cut 4 (128-d)"] = workdir / "z4.npy"
            np.save(zs["cut 4 (128-d)"], z.numpy())
    return xp, zs


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


def _timings(xp: Path, zs: dict[str, Path], args: argparse.Namespace) -> tuple[list[str], dict]:
    rows = [
        "| x vs z | n | Gram dtype | wall s | CPU s | peak RSS MB | RSS over inputs MB | block | v (V-stat dCor) | v 95% CI | u2 (U-stat dCor^2) | u2 95% CI |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    full: dict = {}
    for case, zp in zs.items():
        for n in args.sizes:
            for precision in ("float64", "float32") if n == max(args.sizes) else ("float64",):
                spec = {"x": str(xp), "z": str(zp), "n": n, "precision": precision,
                        "budget": args.budget * MiB, "threads": args.threads}
                runs = [_run_worker(spec) for _ in range(args.repeats)]
                best = min(runs, key=lambda r: r["wall_s"])
                peak = max(r["rss_peak_mb"] for r in runs)
                if precision == "float64" and n == max(args.sizes):
                    full[case] = best
                rows.append(
                    f"| 784-d images vs {case} | {n:,} | {precision} | {best['wall_s']:.1f} | {best['cpu_s']:.1f} | "
                    f"{peak:.0f} | {peak - best['rss_base_mb']:.0f} | {best['block_size']} | "
                    f"{best['v']:.6f} | [{best['v_ci'][0]:.4f}, {best['v_ci'][1]:.4f}] | "
                    f"{best['u2']:.6f} | [{best['u2_ci'][0]:.4f}, {best['u2_ci'][1]:.4f}] |"
                )
                print(rows[-1], file=sys.stderr, flush=True)
    return rows, full


def _dcor_from_cdist(x: np.ndarray, z: np.ndarray) -> tuple[float, float]:
    """V dCor and U dCor^2 from exact distance matrices (scipy cdist: differences, no Gram
    expansion) centred by dcor's own ``double_centered`` / ``u_centered``. n x n memory."""
    import dcor
    from scipy.spatial.distance import cdist

    a, b = cdist(x, x), cdist(z, z)
    aa, bb = dcor.double_centered(a), dcor.double_centered(b)
    v2 = dcor.mean_product(aa, bb) / np.sqrt(dcor.mean_product(aa, aa) * dcor.mean_product(bb, bb))
    aa, bb = dcor.u_centered(a), dcor.u_centered(b)
    u2 = dcor.u_product(aa, bb) / np.sqrt(dcor.u_product(aa, aa) * dcor.u_product(bb, bb))
    return float(np.sqrt(max(v2, 0.0))), float(u2)


def _agreement(xp: Path, zs: dict[str, Path], args: argparse.Namespace) -> list[str]:
    import dcor

    from splitleak.metrics.dependence import distance_correlation, u_distance_correlation_sqr
    from splitleak.metrics.dependence_scale import dcor_statistics

    rows = [
        "| x vs z | n | reference | ref. time s | abs diff v (float64 Gram) | abs diff u2 (float64) | abs diff v (float32 Gram) | abs diff u2 (float32) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    x_all = np.load(xp)
    # dcor 0.7's multivariate path broadcasts x_i - x_j: n^2 d doubles (n = 2,000, d = 3,136:
    # 100 GB), so the package itself is run at n = 250 (1.6 GB) and larger subsets use its
    # centring on scipy distance matrices.
    checks = [
        (args.dcor_n, "dcor 0.7 `distance_correlation` / `u_distance_correlation_sqr`"),
        (2000, "scipy `cdist` + dcor `double_centered` / `u_centered`"),
        (2000, "splitleak.metrics.dependence (direct, n x n)"),
        (5000, "splitleak.metrics.dependence (direct, n x n)"),
    ]
    for case, zp in zs.items():
        z_all = np.load(zp)
        for n, ref in checks:
            x, z = x_all[:n].astype(np.float64), z_all[:n].astype(np.float64)
            t0 = time.perf_counter()
            if ref.startswith("dcor"):
                ref_v, ref_u = float(dcor.distance_correlation(x, z)), float(dcor.u_distance_correlation_sqr(x, z))
            elif ref.startswith("scipy"):
                ref_v, ref_u = _dcor_from_cdist(x, z)
            else:
                tx, tz = torch.from_numpy(x), torch.from_numpy(z)
                with torch.no_grad():
                    ref_v = distance_correlation(tx, tz).item()
                    ref_u = u_distance_correlation_sqr(tx, tz).item()
            ref_t = time.perf_counter() - t0
            # the function's own input: the float32 arrays, as an evaluation would pass them
            b64 = dcor_statistics(torch.from_numpy(x_all[:n]), torch.from_numpy(z_all[:n]), ci=None)
            b32 = dcor_statistics(torch.from_numpy(x_all[:n]), torch.from_numpy(z_all[:n]), ci=None, precision="float32")
            rows.append(
                f"| images vs {case} | {n:,} | {ref} | {ref_t:.1f} | {abs(b64.v - ref_v):.1e} | "
                f"{abs(b64.u2 - ref_u):.1e} | {abs(b32.v - ref_v):.1e} | {abs(b32.u2 - ref_u):.1e} |"
            )
            print(rows[-1], file=sys.stderr, flush=True)
    return rows


def _full_direct(xp: Path, zs: dict[str, Path], full: dict) -> list[str]:
    from splitleak.metrics.dependence import distance_correlation, u_distance_correlation_sqr

    case = "cut 3 (3136-d)"
    x = torch.from_numpy(np.load(xp)).double()
    z = torch.from_numpy(np.load(zs[case])).double()
    t0 = time.perf_counter()
    with torch.no_grad():
        v, u = distance_correlation(x, z).item(), u_distance_correlation_sqr(x, z).item()
    t = time.perf_counter() - t0
    b = full[case]
    return [
        f"Direct float64 computation on all n = {len(x):,} (images vs {case}; `splitleak.metrics.dependence`, "
        f"n x n matrices, {t:.0f} s, peak RSS of the benchmark process "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB): "
        f"|v - direct| = {abs(b['v'] - v):.1e}, |u2 - direct| = {abs(b['u2'] - u):.1e}."
    ]


def _coverage(xp: Path, zs: dict[str, Path], full: dict, args: argparse.Namespace) -> list[str]:
    from splitleak.metrics.dependence_scale import dcor_statistics

    reps = args.coverage_draws
    rows = [
        "| setting | n | draws | target v / u2 | sd(v) over draws / mean jackknife se | coverage v | sd(u2) / mean se | coverage u2 |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def summarise(label: str, n: int, ests: list, target_u2: float | None, note: str = "") -> None:
        v = np.array([e.v for e in ests])
        u = np.array([e.u2 for e in ests])
        tv, tu = float(v.mean()), float(u.mean()) if target_u2 is None else target_u2
        cv = np.mean([e.v_ci[0] <= tv <= e.v_ci[1] for e in ests])
        cu = np.mean([e.u2_ci[0] <= tu <= e.u2_ci[1] for e in ests])
        se = lambda p: (p * (1 - p) / len(ests)) ** 0.5  # noqa: E731
        rows.append(
            f"| {label} | {n:,} | {len(ests)} | {tv:.4f} / {tu:.4f}{note} | "
            f"{v.std(ddof=1):.4f} / {np.mean([e.v_se for e in ests]):.4f} | {cv:.3f} +- {se(cv):.3f} | "
            f"{u.std(ddof=1):.4f} / {np.mean([e.u2_se for e in ests]):.4f} | {cu:.3f} +- {se(cu):.3f} |"
        )
        print(rows[-1], file=sys.stderr, flush=True)

    gen = torch.Generator().manual_seed(2024)
    for label, sigma in (("synthetic, strong (noise 0.3)", 0.3), ("synthetic, weak (noise 2)", 2.0),
                         ("synthetic, independent", None)):
        for n in (200, 1000):
            ests = []
            for r in range(reps):
                x = torch.randn(n, 10, generator=gen, dtype=torch.float64)
                if sigma is None:
                    z = torch.randn(n, 3, generator=gen, dtype=torch.float64)
                else:
                    z = (torch.tanh(1.5 * x[:, :3]) + x[:, 3:6] ** 2 / 3
                         + sigma * torch.randn(n, 3, generator=gen, dtype=torch.float64))
                ests.append(dcor_statistics(x, z, seed=r))
            summarise(label, n, ests, 0.0 if sigma is None else None)
    # Real data: random subsets of the 10,000 test pairs. A subset's U-statistic is exactly
    # unbiased for the full set's, so the full-set u2 is the target.
    x_all = torch.from_numpy(np.load(xp))
    case = "cut 3 (3136-d)"
    z_all = torch.from_numpy(np.load(zs[case]))
    pick = torch.Generator().manual_seed(7)
    for k in (200, 1000):
        ests = []
        for r in range(reps if k <= 200 else reps // 2):
            idx = torch.randperm(len(x_all), generator=pick)[:k]
            ests.append(dcor_statistics(x_all[idx], z_all[idx], seed=r))
        summarise(f"Fashion-MNIST subsets of the test set, images vs {case}", k, ests, full[case]["u2"],
                  note=" (u2 of all 10,000)")
    return rows


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 10000])
    p.add_argument("--budget", type=int, default=512, help="memory_budget in MiB (default 512)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="runs per timing; the fastest is reported")
    p.add_argument("--dcor-n", type=int, default=250,
                   help="subset size compared with the dcor package itself (needs n^2 * d * 8 bytes)")
    p.add_argument("--coverage", action="store_true", help="also run the jackknife coverage study")
    p.add_argument("--coverage-draws", type=int, default=400)
    p.add_argument("--full-direct", action="store_true", help="also compare with a direct float64 computation at n = 10,000")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        _worker(json.loads(args.worker))
        return
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dcor_scale_") as tmp:
        xp, zs = _activations(Path(tmp))
        timing_rows, full = _timings(xp, zs, args)
        agreement_rows = _agreement(xp, zs, args)
        direct = _full_direct(xp, zs, full) if args.full_direct else []
        coverage_rows = _coverage(xp, zs, full, args) if args.coverage else []
    import dcor

    lines = [
        "# Blocked distance correlation at scale (`benchmarks/dcor_scale.py`)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} "
        f"({args.threads} threads), numpy {np.__version__}, dcor {dcor.__version__}, Python {platform.python_version()}. "
        f"Load average at start {load0[0]:.1f}, at end {os.getloadavg()[0]:.1f} (the machine is shared: "
        "wall times vary; CPU s is the process's CPU time over its threads). Total benchmark time "
        f"{time.perf_counter() - t_start:.0f} s.",
        "",
        "x: Fashion-MNIST test images (first n), 784-d float32 in [0, 1]. z: activations of a small-cnn "
        "trained 1 epoch (seed 0): cut 3 = 64x7x7 = 3,136-d; a fixed Gaussian projection of it to 1,000-d; "
        f"cut 4 = 128-d. memory_budget = {args.budget} MiB, 95% jackknife CI with 100 groups, all sums "
        f"float64. Each timing is the fastest of {args.repeats} fresh processes (peak RSS: the largest).",
        "",
        "## Time and memory",
        "",
        *timing_rows,
        "",
        "## Agreement with direct computation (first n samples)",
        "",
        *agreement_rows,
        "",
        *direct,
    ]
    if coverage_rows:
        lines += [
            "",
            "## Coverage of the 95% intervals",
            "",
            "Synthetic: x ~ N(0, I_10), z = tanh(1.5 x[:3]) + x[3:6]^2 / 3 + noise (3-d), or z independent. "
            "Targets: u2: the mean over draws (u2 is unbiased; 0 under independence); v: the mean V-statistic "
            "over draws at that n (v_ci is an interval for E[V_n], not for the population dCor). "
            "Fashion-MNIST: random subsets (without replacement) of the 10,000 test pairs; the u2 target is "
            "the u2 of all 10,000 (a subset's U-statistic is unbiased for it).",
            "",
            *coverage_rows,
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
