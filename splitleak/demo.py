"""The embedded default main job: `splitleak demo --out DIR [--quick] [--seeds 0,1,2]`.

On Fashion-MNIST it trains small-cnn at cut 2 under every kind of defense splitleak has (none,
NoPeek at two alphas, Gaussian activation noise, dp-noise, dropout, adversarial training),
attacks every model with the demo's attacks, and writes the PDF leakage report, which opens with
the decision: which defense leaks least within 3 points of the undefended accuracy. The attacker
is adaptive (splitleak.adaptive): against a defense that draws noise or masks it combines one
release of each image per training epoch. The attacker gets 5,000 auxiliary images; 300 test
images are attacked. One training seed by default (`seeds`: one model per seed and setting, so
the decision page shows the spread; examples/defense_comparison.toml is the three-seed study).
`quick` (6,000 training images, 2,000 auxiliary and 64 test images, quarter attack budgets, three
models) is for tests and a first look.

The demo is a study, and a study is a sweep (`splitleak.sweep.grid.study_grid`): one cell per
model under every attack, run, resumed and merged by `run_sweep` like any grid."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from splitleak._validate import resolve_device
from splitleak.attacks import ATTACKS, passive_attacks
from splitleak.data import DataConfig, load_splits
from splitleak.errors import InputError
from splitleak.evaluation import EvalConfig
from splitleak.progress import ProgressFactory, silent
from splitleak.sweep import SweepEvent, run_sweep
from splitleak.sweep.executors import usable_cores
from splitleak.sweep.runner import claim_sweep_folder
from splitleak.sweep.grid import Grid, study_grid
from splitleak.training import TrainConfig

CUT = 2
ATTACKS_RUN = ("decoder", "rmle", "shadow", "unsplit")
"""The demo's attacks by default. sdar and fora (5-8 CPU-minutes per model each at their default
budgets) would take the demo far past its time goal, and cut-down budgets weaken them on the
defended models (docs/attacks.md); `splitleak demo --attacks all` adds them."""
ALL_PASSIVE = "all"
"""`attacks=("all",)`: every registered attack that attacks an honestly trained model."""


def demo_attacks(names: Sequence[str] | None) -> tuple[str, ...]:
    """The attacks the demo runs: `names` (None: ATTACKS_RUN; "all": every passive attack).
    Unknown names and training-time attacks (fsha: the demo's models are trained honestly) are
    refused with an InputError before any work."""
    if names is None:
        return ATTACKS_RUN
    if tuple(names) == (ALL_PASSIVE,):
        return passive_attacks()
    if ALL_PASSIVE in names:
        raise InputError(f"demo attacks: {ALL_PASSIVE!r} stands alone (every passive attack), got {list(names)}")
    if not names or len(set(names)) != len(names):
        raise InputError(f"demo attacks must be distinct registered attacks, got {list(names)}")
    for name in names:
        server = ATTACKS.get_entry(name).threat_model.trained_by  # an unknown name: the registry's own error, listing the known ones
        if server is not None:
            raise InputError(f"attack {name!r} attacks only models trained by its {server!r} server; the demo trains every model honestly "
                             f"(splitleak train --server {server}, then splitleak evaluate --attacks {name})")
    return tuple(names)
NOPEEK_ALPHAS = (5.0, 20.0)
NOISE_SCALE = 1.0
_NONE: tuple[str, dict[str, float]] = ("none", {})
_NOPEEK = tuple(("nopeek", {"alpha": alpha}) for alpha in NOPEEK_ALPHAS)
_NOISE = ("noise", {"scale": NOISE_SCALE})
DEFENSES: tuple[tuple[str, dict[str, float]], ...] = (
    _NONE,
    *_NOPEEK,
    _NOISE,
    ("dp-noise", {"epsilon": 1024.0}),  # per release, delta 1e-5, C = 1: the only epsilon that keeps most of the task here (docs/defenses.md)
    ("dropout", {"rate": 0.5}),
    ("adversarial", {"lam": 1.0}),
)
"""The demo's settings, one per kind of defense (NoPeek at two strengths); `quick` keeps none,
NoPeek at the stronger alpha and noise."""
QUICK_DEFENSES = (_NONE, _NOPEEK[-1], _NOISE)


@dataclass(frozen=True)
class DemoPlan:
    """What the demo runs: the data, the models (label, training) and how each is evaluated."""

    data: DataConfig
    models: tuple[tuple[str, TrainConfig], ...]
    evaluation: EvalConfig
    seeds: tuple[int, ...] | None = None

    def grid(self) -> Grid:
        """The demo as a study: one sweep cell per model (and training seed), attacked by every attack."""
        return study_grid("demo", self.data, self.models, self.evaluation, seeds=self.seeds)


def _label(defense: str, params: dict[str, float]) -> str:
    return "-".join([defense, *(f"{value:g}" for value in params.values())])


def demo_plan(
    *, quick: bool = False, data_dir: str | None = None, device: str = "cpu", seeds: Sequence[int] | None = None, attacks: Sequence[str] | None = None,
) -> DemoPlan:
    """The demo's data, models and evaluation; `quick` shrinks every budget; `seeds` trains each
    setting once per training seed (None: seed 0 only); `attacks`: see `demo_attacks`."""
    epochs, batch_size = (2, 64) if quick else (2, 256)
    models = tuple(
        (_label(name, params), TrainConfig(cut=CUT, epochs=epochs, batch_size=batch_size, defense=name, defense_params=params, device=device))
        for name, params in (QUICK_DEFENSES if quick else DEFENSES)
    )
    limit = 64 if quick else 300
    data = DataConfig(
        dataset="fashion-mnist", data_dir=data_dir, limit_train=6000 if quick else None, aux_size=2000 if quick else 5000, limit_test=limit
    )
    evaluation = EvalConfig(
        attacks=demo_attacks(attacks), limit=limit, budget_scale=0.25 if quick else 1.0, semantic_epochs=1 if quick else 3, device=device,
        observations="epochs",  # the adaptive attacker: one release of each image per training epoch
    )
    return DemoPlan(data=data, models=models, evaluation=evaluation, seeds=None if seeds is None else tuple(seeds))


WORKER_THREADS = 2
"""Torch threads per demo worker when none are asked for. On this project's 2-core machine one
process with 2 threads trains and attacks the demo's models as fast as two 1-thread processes side
by side (each stage ran 1.8x longer on one thread; the whole demo took 11 min 35 s with two
workers against 10 min 47 s with one), and one worker keeps the stage progress."""


def demo_workers(device: str, models: int, threads: int | None = None) -> int:
    """Worker processes for `models` models: on the CPU one per `threads` cores (default
    WORKER_THREADS), at most one per model; on a GPU one (its models share the device)."""
    if resolve_device(device) != "cpu":
        return 1
    return max(1, min(usable_cores() // (threads or WORKER_THREADS), models))


def run_demo(
    out: str | Path,
    *,
    quick: bool = False,
    data_dir: str | None = None,
    device: str = "cpu",
    seeds: Sequence[int] | None = None,
    attacks: Sequence[str] | None = None,
    workers: int | None = None,
    threads: int | None = None,
    on_event: Callable[[SweepEvent], None] | None = None,
    progress: ProgressFactory = silent,
) -> Path:
    """Run the demo into `out` (a sweep folder: checkpoints/, cells/, the merged results and
    report.pdf; finished models are reused); returns the report's path. `workers`: processes that
    train and attack models side by side, each with `threads` torch threads (None: `demo_workers`);
    `on_event`: each model's start and end; `progress`: the stages within (training epochs,
    attacks, scoring; shown only with one worker, in this process)."""
    plan = demo_plan(quick=quick, data_dir=data_dir, device=device, seeds=seeds, attacks=attacks)  # bad attacks are refused before any work
    grid = plan.grid()  # bad seeds too
    claim_sweep_folder(Path(out))  # a folder splitleak did not write is refused before any work
    load_splits(plan.data)  # missing data is the user's to fix: one line, before any work
    workers = demo_workers(device, len(grid.cells), threads) if workers is None else workers
    outcome = run_sweep(grid, out, workers=workers, threads=threads if workers > 1 else None, on_event=on_event, progress=progress)
    if outcome.failed:
        first = outcome.failed[0]
        raise RuntimeError(f"demo model {first['label']} failed ({first['stage']}): {first['type']}: {first['message']}")
    if outcome.report is None:
        raise RuntimeError(f"the demo's report could not be written: {outcome.report_error}")
    return outcome.report
