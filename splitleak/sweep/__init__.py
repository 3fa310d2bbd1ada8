"""Sweeps: the privacy-utility grid (datasets x architectures x cuts x defenses x seeds x attacks)
in one call, resumable, on this machine or on a Ray cluster. docs/sweeps.md.

    grid = load_grid("examples/nopeek_tradeoff.toml")
    print(format_plan(plan_sweep(grid, "runs/tradeoff")))      # what would run, and its cost
    outcome = run_sweep(grid, "runs/tradeoff", workers=2)       # results.csv, report.pdf
"""

from splitleak.sweep.grid import Grid, GridError, SweepCell, load_grid, parse_grid
from splitleak.sweep.runner import Plan, SweepEvent, SweepOutcome, format_plan, plan_sweep, run_sweep

__all__ = [
    "Grid",
    "GridError",
    "Plan",
    "SweepCell",
    "SweepEvent",
    "SweepOutcome",
    "format_plan",
    "load_grid",
    "parse_grid",
    "plan_sweep",
    "run_sweep",
]
