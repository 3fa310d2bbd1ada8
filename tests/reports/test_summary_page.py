"""The summary table's columns: measured to fit the page, and text shrunk with them when they must."""

from __future__ import annotations

import pytest

from splitleak.reports.canvas import CONTENT_WIDTH
from splitleak.reports.summary_page import MAIN_SIZE, PAD, SUB_SIZE, _column_widths, text_width
from splitleak.reports.tables import TableCell

HEADERS = ("Model", "Semantic acc. worst", "dCor(x, z)")


@pytest.mark.parametrize("sub", ["[0.86, 0.93]", "[0.86, 0.93]  orig. 0.77  chance 0.13" * 8])
def test_every_cell_fits_its_column_at_the_size_it_is_drawn(sub: str) -> None:
    rows = [[TableCell("NoPeek α=20, cut 2", "fashion-mnist"), TableCell("0.89  (shadow)", sub), TableCell("0.99", "[0.99, 0.99]  n=300")]]
    widths, scale = _column_widths(HEADERS, rows)
    assert sum(widths) == pytest.approx(CONTENT_WIDTH)
    assert (scale == 1.0) == (len(sub) < 40)
    for j, width in enumerate(widths):
        bold = j in (0, len(HEADERS) - 1)
        drawn = max(text_width(rows[0][j].text, MAIN_SIZE * scale, bold=bold), text_width(rows[0][j].sub, SUB_SIZE * scale))
        assert drawn <= width - PAD * scale + 1e-6
