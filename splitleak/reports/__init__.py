"""The PDF leakage report: pure functions of Results, drawn with matplotlib only.

`report(results, "report.pdf")` writes the PDF, `report.summary.csv` (one row per checkpoint)
and `report.results.csv` (the full tidy table) next to it, and `report.html` with `html=True`.
Pages and the verdict rule: docs/report.md.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from splitleak.reports.decision import DEFAULT_ACCURACY_BUDGET
from splitleak.reports.runs import ReportError
from splitleak.results import Results

__all__ = ["ReportError", "report"]


def report(
    results: Results | str | os.PathLike[str] | Sequence[Results | str | os.PathLike[str]],
    path: str | os.PathLike[str],
    *,
    html: bool = False,
    accuracy_budget: float = DEFAULT_ACCURACY_BUDGET,
) -> Path:
    """Write the leakage report for one or more Results (or results folders) to `path` (.pdf).

    The report opens with the decision: which defense and setting leaks least within
    `accuracy_budget` points of the undefended model's accuracy (docs/report.md). Same results in,
    byte-identical PDF out. Raises ReportError (a ValueError) for a missing
    folder, a folder that is not a results folder, or a path that does not end in .pdf.
    """
    from splitleak.reports.document import write_report  # matplotlib is imported on first use

    return write_report(results, path, html=html, accuracy_budget=accuracy_budget).pdf
