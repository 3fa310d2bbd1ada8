"""splitleak: how much of a client's raw data can a split-learning server rebuild?

The pipeline, one function per stage (the CLI does the same):

    splits = load_splits(DataConfig(dataset="fashion-mnist"))
    trained = train(TrainConfig(defense="nopeek", defense_params={"alpha": 5.0}), splits)
    save_checkpoint("nopeek.safetensors", trained.model, trained.meta)
    results = evaluate(load_checkpoint("nopeek.safetensors"), EvalConfig(), splits)
    results.save("results/nopeek")
    report(["results/none", "results/nopeek"], "report.pdf")
"""

__version__ = "0.1.0"

import importlib

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing would slow every start-up of the command
if TYPE_CHECKING:
    from typing import Any
del TYPE_CHECKING

# public names and the module each comes from: imported on first use, so `import splitleak.gate`
# (which only reads results tables) does not load torch
_EXPORTS = {
    "Checkpoint": "splitleak.models",
    "DataConfig": "splitleak.data",
    "EvalConfig": "splitleak.evaluation",
    "InputSpec": "splitleak.data",
    "Results": "splitleak.results",
    "SplitModel": "splitleak.models",
    "Splits": "splitleak.data",
    "TrainConfig": "splitleak.training",
    "evaluate": "splitleak.evaluation",
    "load_checkpoint": "splitleak.models",
    "load_splits": "splitleak.data",
    "report": "splitleak.reports",
    "save_checkpoint": "splitleak.models",
    "train": "splitleak.training",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> "Any":
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'splitleak' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
