"""accuracy: values, ties, validation."""

from __future__ import annotations

import pytest
import torch

from splitleak.metrics.task import accuracy


def test_accuracy_values() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 5.0], [4.0, 0.0, 1.0]])
    assert accuracy(logits, torch.tensor([0, 1, 2, 0])) == 1.0
    assert accuracy(logits, torch.tensor([0, 1, 2, 2])) == 0.75
    assert accuracy(logits, torch.tensor([1, 2, 0, 1])) == 0.0
    out = accuracy(logits, torch.tensor([0, 1, 0, 0], dtype=torch.int32))
    assert isinstance(out, float) and out == 0.75


def test_accuracy_matches_manual_on_random_batch() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(1000, 10, generator=gen)
    y = torch.randint(0, 10, (1000,), generator=gen)
    expected = sum(int(torch.argmax(logits[i]) == y[i]) for i in range(1000)) / 1000
    assert accuracy(logits, y) == pytest.approx(expected)


def test_accuracy_ties_take_first_index_and_no_mutation() -> None:
    logits = torch.zeros(2, 3)
    before = logits.clone()
    assert accuracy(logits, torch.tensor([0, 0])) == 1.0
    assert torch.equal(logits, before)


@pytest.mark.parametrize(
    ("logits", "y", "match"),
    [
        (torch.randn(4), torch.tensor([0, 1, 0, 1]), r"\[B, K\]"),
        (torch.randn(4, 3), torch.tensor([[0], [1], [0], [1]]), r"\[B\]"),
        (torch.randn(4, 3), torch.tensor([0, 1, 2]), "labels"),
        (torch.randn(4, 3), torch.tensor([0.0, 1.0, 2.0, 0.0]), "integer"),
        (torch.randn(4, 3), torch.tensor([0, 1, 3, 0]), r"\[0, 3\)"),
        (torch.randn(4, 3), torch.tensor([0, -1, 2, 0]), r"\[0, 3\)"),
        (torch.tensor([[float("nan"), 0.0]]), torch.tensor([0]), "NaN"),
        (torch.randn(0, 3), torch.zeros(0, dtype=torch.long), "empty"),
        ([[1.0, 0.0]], torch.tensor([0]), "torch.Tensor"),
    ],
)
def test_accuracy_validation(logits: torch.Tensor, y: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        accuracy(logits, y)
