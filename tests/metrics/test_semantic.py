"""Semantic leakage's reference levels: the chance level of the attacked images' labels."""

from __future__ import annotations

import pytest
import torch

from splitleak.metrics.semantic import majority_rate, semantic_correct


def test_majority_rate_is_the_best_constant_predictions_accuracy() -> None:
    y = torch.tensor([3, 3, 3, 1, 0, 2, 3, 1])
    assert majority_rate(y).item() == pytest.approx(4 / 8)
    constant = torch.nn.Linear(4, 5)  # a classifier that always says class 3: garbage in, favourite class out
    with torch.no_grad():
        constant.weight.zero_()
        constant.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 9.0, 0.0]))
    assert semantic_correct(constant, torch.rand(8, 4), y).mean().item() == majority_rate(y).item()
    assert majority_rate(torch.tensor([7])).item() == 1.0
    with pytest.raises(ValueError, match="no labels"):
        majority_rate(torch.tensor([], dtype=torch.int64))
