import pytest
import torch

from splitleak.metrics.sketch import sign_sketch


def _draws(a: torch.Tensor, k: int, count: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.stack([sign_sketch(a, k, generator=gen) for _ in range(count)])


def test_each_coordinate_lands_in_its_strided_bucket_with_a_sign() -> None:
    d, k = 1000, 64  # 15 full rows of buckets and a tail of 40
    out = sign_sketch(torch.eye(d), k, generator=torch.Generator().manual_seed(1))
    assert out.shape == (d, k)
    nonzero = out != 0
    assert (nonzero.sum(dim=1) == 1).all()
    assert (nonzero.float().argmax(dim=1) == torch.arange(d) % k).all()
    assert set(out[nonzero].tolist()) == {-1.0, 1.0}


def test_squared_distances_are_unbiased_with_the_predicted_spread() -> None:
    gen = torch.Generator().manual_seed(0)
    rows = torch.randn(2, 3000, generator=gen, dtype=torch.float64) * torch.linspace(0.1, 3.0, 3000, dtype=torch.float64)
    k = 64
    draws = _draws(rows, k, 4000)
    sq = (draws[:, 0] - draws[:, 1]).pow(2).sum(dim=1)
    w = rows[0] - rows[1]
    exact = w.pow(2).sum()
    per_bucket = torch.zeros(k, dtype=torch.float64).index_add_(0, torch.arange(3000) % k, w.pow(2))
    fourth = torch.zeros(k, dtype=torch.float64).index_add_(0, torch.arange(3000) % k, w.pow(4))
    predicted_var = 2 * (per_bucket.pow(2) - fourth).sum()
    standard_error = (predicted_var / len(sq)).sqrt()
    assert abs(sq.mean() - exact) < 4 * standard_error
    assert sq.var().item() == pytest.approx(predicted_var.item(), rel=0.1)


def test_signs_are_fresh_on_every_call_and_reproducible_from_a_seed() -> None:
    a = torch.randn(4, 500)
    first, second = _draws(a, 32, 2)
    assert not torch.equal(first, second)
    torch.testing.assert_close(_draws(a, 32, 2), torch.stack([first, second]), rtol=0, atol=0)
    torch.manual_seed(3)
    one = sign_sketch(a, 32)
    torch.manual_seed(3)
    torch.testing.assert_close(sign_sketch(a, 32), one, rtol=0, atol=0)


def test_rows_no_wider_than_k_are_returned_as_they_are() -> None:
    a = torch.randn(5, 64)
    assert sign_sketch(a, 64) is a and sign_sketch(a, 100) is a


@pytest.mark.parametrize("d", [640, 1000])
def test_gradcheck(d: int) -> None:
    a = torch.randn(3, d, dtype=torch.float64, requires_grad=True)
    gen_seed = 5

    def sketch(t: torch.Tensor) -> torch.Tensor:
        return sign_sketch(t, 64, generator=torch.Generator().manual_seed(gen_seed))

    assert torch.autograd.gradcheck(sketch, (a,))


@pytest.mark.parametrize(("a", "k", "match"), [(torch.zeros(2, 3, 4), 2, r"rows \[n, d\]"), (torch.zeros(2, 8), 0, "positive"), (torch.zeros(2, 8), True, "positive"), (torch.zeros(2, 8), 2.0, "positive")])
def test_bad_arguments_are_refused(a: torch.Tensor, k, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sign_sketch(a, k)
