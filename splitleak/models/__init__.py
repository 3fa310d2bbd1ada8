"""Split architectures (a registry), the SplitModel and safe checkpoints."""

from splitleak.models.architectures import ARCHITECTURES, Architecture, activation_shape, get_architecture
from splitleak.models.build import make_split_model
from splitleak.models.checkpoint import Checkpoint, CheckpointError, build_model, load_checkpoint, save_checkpoint
from splitleak.models.split import SplitModel

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "Checkpoint",
    "CheckpointError",
    "SplitModel",
    "activation_shape",
    "build_model",
    "get_architecture",
    "load_checkpoint",
    "make_split_model",
    "save_checkpoint",
]
