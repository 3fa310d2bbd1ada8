"""Semantic leakage: does an independent classifier still recognise the reconstructions?

Pure functions of a classifier the caller prepared: the attacker trains its own classifier on
its auxiliary images and labels (splitleak.classifier.train_classifier, prepared by the semantic
scorer in splitleak.scoring) and these apply it. Pixel metrics can say "blurry" while the label
still leaks (Titcombe et al. 2021); this measures the label.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


@torch.no_grad()
def semantic_correct(classifier: nn.Module, x: Tensor, y: Tensor, *, batch_size: int = 1024) -> Tensor:
    """Per sample, 1.0 if `classifier` assigns image x[i] its true label y[i], else 0.0."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"semantic_correct: {x.shape[0]} images but {y.shape[0]} labels")
    device = next(classifier.parameters()).device
    predictions = torch.cat([classifier(x[i : i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(x), batch_size)])
    return (predictions == y).to(torch.float32)


def semantic_reference(classifier: nn.Module, x: Tensor, y: Tensor, *, batch_size: int = 1024) -> Tensor:
    """The classifier's accuracy on the original images (a scalar): what it recognises of the
    originals themselves. A reference, not a bound: a reconstruction can be recognised where its
    original is not, so a sample's semantic accuracy may exceed it (within its CI)."""
    return semantic_correct(classifier, x, y, batch_size=batch_size).mean()


def majority_rate(y: Tensor) -> Tensor:
    """The share of the most frequent label in `y` (a scalar): the accuracy of the best constant
    prediction, the chance level of semantic_accuracy (a classifier that maps every garbage
    reconstruction to its favourite class scores at most this)."""
    if y.numel() == 0:
        raise ValueError("majority_rate: no labels")
    return torch.bincount(y.reshape(-1)).max().to(torch.float32) / y.numel()
