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

from splitleak.data import DataConfig, InputSpec, Splits, load_splits  # noqa: E402
from splitleak.evaluation import EvalConfig, evaluate  # noqa: E402
from splitleak.models import Checkpoint, SplitModel, load_checkpoint, save_checkpoint  # noqa: E402
from splitleak.reports import report  # noqa: E402
from splitleak.results import Results  # noqa: E402
from splitleak.training import TrainConfig, train  # noqa: E402

__all__ = [
    "Checkpoint",
    "DataConfig",
    "EvalConfig",
    "InputSpec",
    "Results",
    "SplitModel",
    "Splits",
    "TrainConfig",
    "__version__",
    "evaluate",
    "load_checkpoint",
    "load_splits",
    "report",
    "save_checkpoint",
    "train",
]
