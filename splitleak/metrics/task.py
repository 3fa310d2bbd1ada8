"""Task utility: classification accuracy (a set-level metric; higher means more utility)."""

from __future__ import annotations

import torch
from torch import Tensor

from splitleak._validate import all_finite

__all__ = ["accuracy"]


def accuracy(logits: Tensor, y: Tensor) -> float:
    """Fraction of samples whose argmax over ``logits`` ``[B, K]`` equals the label in ``y`` ``[B]``."""
    if not isinstance(logits, Tensor) or not isinstance(y, Tensor):
        raise ValueError("accuracy: logits and y must be torch.Tensors")
    if logits.ndim != 2:
        raise ValueError(f"accuracy: logits must be [B, K], got shape {tuple(logits.shape)}")
    if y.ndim != 1:
        raise ValueError(f"accuracy: y must be [B] class indices, got shape {tuple(y.shape)}")
    if logits.shape[0] != y.shape[0]:
        raise ValueError(f"accuracy: {logits.shape[0]} logits rows but {y.shape[0]} labels")
    if logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ValueError(f"accuracy: empty input of shape {tuple(logits.shape)}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"accuracy: y must hold integer class indices, got {y.dtype}")
    if logits.is_floating_point() and not all_finite(logits):
        raise ValueError("accuracy: logits contain NaN or infinite values")
    if bool(((y < 0) | (y >= logits.shape[1])).any()):
        raise ValueError(f"accuracy: labels must lie in [0, {logits.shape[1]})")
    return (logits.argmax(dim=1) == y.to(logits.device)).double().mean().item()
