"""Cut points as numbers or names, and their order (splitleak.cuts)."""

from __future__ import annotations

import numpy as np
import pytest

from splitleak.cuts import cut_depth, cut_sort_key, parse_cut
from splitleak.errors import InputError


@pytest.mark.parametrize(("given", "cut"), [(2, 2), ("2", 2), (" 3 ", 3), (np.int64(4), 4), (2.0, 2), ("layer2", "layer2"), ("stem", "stem")])
def test_cuts_parse_to_numbers_or_names(given: object, cut: object) -> None:
    assert parse_cut(given) == cut and type(parse_cut(given)) is type(cut)


@pytest.mark.parametrize("bad", [True, 2.5, "", "layer 2", "2x;rm", None, [2]])
def test_anything_else_is_one_line(bad: object) -> None:
    with pytest.raises(InputError, match="a cut is a whole number or a name") as info:
        parse_cut(bad)
    assert "\n" not in str(info.value)


def test_deeper_sorts_later_for_numbers_and_names() -> None:
    assert sorted(["layer4", "layer1", "stem", "layer3", "layer2"], key=cut_sort_key) == ["stem", "layer1", "layer2", "layer3", "layer4"]
    assert sorted([3, 1, 2], key=cut_sort_key) == [1, 2, 3] and cut_depth("stem") == 0 and cut_depth(5) == 5
