"""The embedded default main job: `splitleak demo --out DIR [--quick]`.

On Fashion-MNIST it trains small-cnn at cut 2 without a defense, with NoPeek at several alphas
and with Gaussian activation noise, attacks every model with the whole attack suite, and writes
the PDF leakage report. The attacker is adaptive (splitleak.adaptive): against the noise model it
combines one release of each image per training epoch. The attacker gets 5,000 auxiliary images; 300 test images are attacked.
Sized for a 2-core CPU: 6 min 18 s in full here, 30 s with `quick` (6,000 training
images, 2,000 auxiliary and 64 test images, quarter attack budgets; for tests and a first look).

The demo is a study, and a study is a sweep (`splitleak.sweep.grid.study_grid`): one cell per
model under every attack, run, resumed and merged by `run_sweep` like any grid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from splitleak.data import DataConfig, load_splits
from splitleak.evaluation import EvalConfig
from splitleak.progress import ProgressFactory, silent
from splitleak.sweep import SweepEvent, run_sweep
from splitleak.sweep.runner import claim_sweep_folder
from splitleak.sweep.grid import Grid, study_grid
from splitleak.training import TrainConfig

CUT = 2
ATTACKS_RUN = ("decoder", "rmle", "shadow", "unsplit")
"""The demo's attacks. sdar and fora (5-8 CPU-minutes per model each at their default budgets)
would take the demo far past its time goal, and cut-down budgets weaken them on the defended
models (docs/attacks.md); `splitleak evaluate --attacks sdar,fora` runs them."""
NOPEEK_ALPHAS = (2.0, 5.0, 20.0)
NOISE_SCALE = 1.0


@dataclass(frozen=True)
class DemoPlan:
    """What the demo runs: the data, the models (label, training) and how each is evaluated."""

    data: DataConfig
    models: tuple[tuple[str, TrainConfig], ...]
    evaluation: EvalConfig

    def grid(self) -> Grid:
        """The demo as a study: one sweep cell per model, attacked by every attack."""
        return study_grid("demo", self.data, self.models, self.evaluation)


def _label(defense: str, params: dict[str, float]) -> str:
    return "-".join([defense, *(f"{value:g}" for value in params.values())])


def demo_plan(*, quick: bool = False, data_dir: str | None = None, device: str = "cpu") -> DemoPlan:
    """The demo's data, models and evaluation; `quick` shrinks every budget."""
    epochs, batch_size = (2, 64) if quick else (2, 256)
    alphas = NOPEEK_ALPHAS[-1:] if quick else NOPEEK_ALPHAS
    defenses = [("none", {}), *(("nopeek", {"alpha": a}) for a in alphas), ("noise", {"scale": NOISE_SCALE})]
    models = tuple(
        (_label(name, params), TrainConfig(cut=CUT, epochs=epochs, batch_size=batch_size, defense=name, defense_params=params, device=device))
        for name, params in defenses
    )
    limit = 64 if quick else 300
    data = DataConfig(
        dataset="fashion-mnist", data_dir=data_dir, limit_train=6000 if quick else None, aux_size=2000 if quick else 5000, limit_test=limit
    )
    evaluation = EvalConfig(
        attacks=ATTACKS_RUN, limit=limit, budget_scale=0.25 if quick else 1.0, semantic_epochs=1 if quick else 3, device=device,
        observations="epochs",  # the adaptive attacker: one release of each image per training epoch
    )
    return DemoPlan(data=data, models=models, evaluation=evaluation)


def run_demo(
    out: str | Path, *, quick: bool = False, data_dir: str | None = None, device: str = "cpu", on_event: Callable[[SweepEvent], None] | None = None,
    progress: ProgressFactory = silent,
) -> Path:
    """Run the demo into `out` (a sweep folder: checkpoints/, cells/, the merged results and
    report.pdf; finished models are reused); returns the report's path. `on_event`: each model's
    start and end; `progress`: the stages within (training epochs, attacks, scoring)."""
    plan = demo_plan(quick=quick, data_dir=data_dir, device=device)
    claim_sweep_folder(Path(out))  # a folder splitleak did not write is refused before any work
    load_splits(plan.data)  # missing data is the user's to fix: one line, before any work
    outcome = run_sweep(plan.grid(), out, on_event=on_event, progress=progress)
    if outcome.failed:
        first = outcome.failed[0]
        raise RuntimeError(f"demo model {first['label']} failed ({first['stage']}): {first['type']}: {first['message']}")
    if outcome.report is None:
        raise RuntimeError(f"the demo's report could not be written: {outcome.report_error}")
    return outcome.report
