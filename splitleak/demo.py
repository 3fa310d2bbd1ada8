"""The embedded default main job: `splitleak demo --out DIR [--quick]`.

On Fashion-MNIST it trains small-cnn at cut 2 without a defense, with NoPeek at several alphas
and with Gaussian activation noise, attacks every model with the whole attack suite, and writes
the PDF leakage report. The attacker gets 5,000 auxiliary images; 300 test images are attacked.
Sized for a 2-core CPU: 6 min 18 s in full here, 30 s with `quick` (6,000 training
images, 2,000 auxiliary and 64 test images, quarter attack budgets; for tests and a first look).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from splitleak.attacks import ATTACKS
from splitleak.data import DataConfig, load_splits
from splitleak.evaluation import EvalConfig
from splitleak.outputs import claim_folder, mark_folder
from splitleak.progress import ProgressFactory, silent
from splitleak.reports import report
from splitleak.study import Cell, run_study
from splitleak.training import TrainConfig

CUT = 2
NOPEEK_ALPHAS = (2.0, 5.0, 20.0)
NOISE_SCALE = 1.0
REPORT_FILE = "report.pdf"
FOLDER_KIND = "demo"
_LEGACY_ENTRIES = frozenset({"checkpoints", "results", REPORT_FILE, "report.summary.csv", "report.results.csv", "report.html"})


@dataclass(frozen=True)
class DemoPlan:
    """What the demo runs: the data, the models and how each is evaluated."""

    data: DataConfig
    cells: tuple[Cell, ...]
    evaluation: EvalConfig


def _cell_name(defense: str, params: dict[str, float]) -> str:
    return "-".join([defense, *(f"{value:g}" for value in params.values())])


def demo_plan(*, quick: bool = False, data_dir: str | None = None, device: str = "cpu") -> DemoPlan:
    """The demo's data, cells and evaluation; `quick` shrinks every budget."""
    epochs, batch_size = (2, 64) if quick else (2, 256)
    alphas = NOPEEK_ALPHAS[-1:] if quick else NOPEEK_ALPHAS
    defenses = [("none", {}), *(("nopeek", {"alpha": a}) for a in alphas), ("noise", {"scale": NOISE_SCALE})]
    cells = tuple(
        Cell(_cell_name(name, params), TrainConfig(cut=CUT, epochs=epochs, batch_size=batch_size, defense=name, defense_params=params, device=device))
        for name, params in defenses
    )
    limit = 64 if quick else 300
    data = DataConfig(
        dataset="fashion-mnist", data_dir=data_dir, limit_train=6000 if quick else None, aux_size=2000 if quick else 5000, limit_test=limit
    )
    evaluation = EvalConfig(
        attacks=tuple(ATTACKS), limit=limit, budget_scale=0.25 if quick else 1.0, semantic_epochs=1 if quick else 3, device=device
    )
    return DemoPlan(data=data, cells=cells, evaluation=evaluation)


def run_demo(
    out: str | Path, *, quick: bool = False, data_dir: str | None = None, device: str = "cpu", progress: ProgressFactory = silent
) -> Path:
    """Run the demo into `out` (checkpoints/, results/, report.pdf); returns the report's path."""
    claim_folder(out, FOLDER_KIND, legacy=lambda entries: set(entries) <= _LEGACY_ENTRIES)
    plan = demo_plan(quick=quick, data_dir=data_dir, device=device)
    splits = load_splits(plan.data)
    Path(out).mkdir(parents=True, exist_ok=True)
    mark_folder(out, FOLDER_KIND)
    folders = run_study(plan.cells, splits, plan.evaluation, out, reuse=True, progress=progress)
    return report(folders, Path(out) / REPORT_FILE)
