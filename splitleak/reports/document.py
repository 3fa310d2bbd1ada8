"""Assemble the report: runs -> tables -> pages -> PDF (+ CSVs, optional HTML)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from splitleak import __version__
from splitleak._csv import write_frame
from splitleak.outputs import claim_file, csv_with_header, is_splitleak_pdf, starts_with
from splitleak.reports.decision import DEFAULT_ACCURACY_BUDGET, Decision, check_budget, decide, group_settings
from splitleak.reports.decision_page import decision_page
from splitleak.reports.dependence import dependence_page
from splitleak.reports.distributions import distribution_pages
from splitleak.reports.gallery import gallery_page, has_gallery
from splitleak.reports.html import decision_html, summary_html, write_html
from splitleak.reports.notes import Block, method_notes, notes_pages
from splitleak.reports.pdf import write_pdf
from splitleak.reports.runs import ReportError, ResultsLike, Run, collect_runs
from splitleak.reports.style import report_style
from splitleak.reports.summary_page import footnotes, summary_pages
from splitleak.reports.tables import display_rows, full_table, summary_table
from splitleak.reports.tradeoff import tradeoff_page
from splitleak.swap import commit_files, discard, finish, leftovers, staged

TITLE = "Split-learning leakage report"
CSV_FLOAT = "%.10g"
REPORT_KIND = "report"  # the marker kind of a report set being staged


@dataclass(frozen=True)
class ReportContent:
    """Everything the pages are drawn from: the runs, their summary, the decisions (one per
    dataset, arch and cut), the notes, a subtitle."""

    runs: tuple[Run, ...]
    summary: pd.DataFrame
    notes: tuple[Block, ...]
    subtitle: str
    decisions: tuple[Decision, ...] = ()


@dataclass(frozen=True)
class ReportPaths:
    """The files one report writes, derived from the PDF's path."""

    pdf: Path
    summary_csv: Path
    results_csv: Path
    html: Path

    @classmethod
    def for_pdf(cls, path: str | os.PathLike[str]) -> "ReportPaths":
        pdf = Path(path)
        if pdf.suffix.lower() != ".pdf":
            raise ReportError(f"the report path must end in .pdf, got {pdf}")
        if pdf.is_dir():
            raise ReportError(f"{pdf} is a folder, not a PDF file name")
        stem = pdf.with_suffix("")
        return cls(pdf, Path(f"{stem}.summary.csv"), Path(f"{stem}.results.csv"), Path(f"{stem}.html"))

    def within(self, folder: Path) -> "ReportPaths":
        """The same file names inside `folder` (where the set is staged before it is swapped in)."""
        return ReportPaths(*(folder / p.name for p in (self.pdf, self.summary_csv, self.results_csv, self.html)))

    def members(self, *, html: bool) -> list[Path]:
        """The files of one report: PDF, summary CSV, results CSV and, with `html`, the HTML page."""
        return [self.pdf, self.summary_csv, self.results_csv] + ([self.html] if html else [])

    def claim(self, *, html: bool) -> None:
        """Refuse (OutputError) before anything is written if one of the files exists and is not
        splitleak's own (recognised by content: PDF creator, CSV header, HTML title)."""
        claim_file(self.pdf, is_splitleak_pdf, "report PDF")
        claim_file(self.summary_csv, csv_with_header("run", "label", "dataset"), "report summary CSV")
        claim_file(self.results_csv, csv_with_header("run", "checkpoint", "checkpoint_sha256"), "report results CSV")
        if html:
            claim_file(self.html, _is_report_html, "report HTML page")


def _is_report_html(path: Path) -> bool:
    return starts_with(f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{TITLE}</title>".encode())(path)


def _subtitle(runs: Sequence[Run]) -> str:
    datasets = sorted({str(r.first("dataset")) for r in runs})
    attacks = list(dict.fromkeys(a for r in runs for a in r.attacks))
    scored = sorted({int(n) for r in runs for n in r.table.loc[r.table["sample"].notna() & (r.table["metric"] == "ssim"), "n"]})
    parts = [
        ", ".join(datasets),
        f"{len(runs)} checkpoint{'s' if len(runs) != 1 else ''}",
        "attacks " + (", ".join(attacks) or "none"),
    ]
    if scored:
        parts.append(f"{'/'.join(map(str, scored))} scored test images per attack")
    parts.append(f"splitleak {__version__}")
    return " · ".join(parts)


def build_content(items: ResultsLike | Sequence[ResultsLike], *, accuracy_budget: float = DEFAULT_ACCURACY_BUDGET) -> ReportContent:
    """Read the inputs and compute every table the pages need (no drawing)."""
    accuracy_budget = check_budget(accuracy_budget)
    runs = collect_runs(items)
    summary = summary_table(runs)
    omitted = []
    if not (summary["defense"] == "nopeek").any():
        omitted.append("No NoPeek runs: the page of dCor(x, z) against NoPeek α is left out (dCor is still in the summary).")
    missing = [r.run for r in runs if not has_gallery(r)]
    if missing:
        omitted.append("No stored reconstructions (reconstructions.safetensors) for run(s) " + ", ".join(missing) + ": no gallery page for them.")
    decisions = decide(group_settings(runs), accuracy_budget)
    return ReportContent(runs, summary, tuple(method_notes(runs, omitted)), _subtitle(runs), decisions)


def figure_pages(content: ReportContent) -> list[tuple[str, Figure]]:
    """The figure pages between the summary and the notes, with their titles."""
    pages: list[tuple[str, Figure]] = [("Privacy-utility trade-off", tradeoff_page(content.summary, content.subtitle))]
    dependence = dependence_page(content.summary, content.subtitle)
    if dependence is not None:
        pages.append(("Distance correlation against NoPeek alpha", dependence))
    for fig in distribution_pages(content.runs, content.subtitle):
        pages.append(("Per-sample leakage distributions", fig))
    for run in content.runs:
        if has_gallery(run):
            pages.append((f"Reconstructions: {run.label}", gallery_page(run, content.subtitle)))
    return pages


def write_report(
    items: ResultsLike | Sequence[ResultsLike], path: str | os.PathLike[str], *, html: bool = False, accuracy_budget: float = DEFAULT_ACCURACY_BUDGET
) -> ReportPaths:
    """Write the PDF (opening with the decision for `accuracy_budget` points), its two CSVs and
    (with `html`) the HTML version; return their paths. The set is written into a hidden folder
    beside the PDF and moved into place only when complete (splitleak.swap), so an interrupted or
    failing write leaves the old set whole; an HTML page of an earlier set is removed when this
    one has none. Nothing else in the PDF's folder (a results folder, say) is touched."""
    paths = ReportPaths.for_pdf(path)
    accuracy_budget = check_budget(accuracy_budget)
    paths.claim(html=html)
    content = build_content(items, accuracy_budget=accuracy_budget)
    discard(path for path, _, _ in leftovers(paths.pdf, REPORT_KIND))  # of a write killed earlier
    with staged(paths.pdf, REPORT_KIND) as staging:
        _write_set(content, paths.within(staging), html=html)
        names = [p.name for p in paths.members(html=html)]
        finish(staging, REPORT_KIND, names)
        stale = [paths.html] if not html and paths.html.is_file() and not paths.html.is_symlink() and _is_report_html(paths.html) else []
        commit_files(staging, {p.name: p for p in paths.members(html=html)}, remove=stale)
    return paths


def _write_set(content: ReportContent, paths: ReportPaths, *, html: bool) -> None:
    """Write the report's files at `paths` (inside the staging folder)."""
    with report_style():
        decision = decision_page(content.decisions, content.subtitle)
        figures = figure_pages(content)
        pdf_pages = [decision, *summary_pages(content.summary, content.subtitle)] + [fig for _, fig in figures] + notes_pages(content.notes, content.subtitle)
        write_pdf(pdf_pages, paths.pdf, title=TITLE, footer=f"{TITLE} · {content.subtitle.split(' · ')[0]}")
        if html:
            categories = content.summary["verdict_category"].tolist()
            table = summary_html(display_rows(content.summary), categories, footnotes(content.summary))
            opening = decision_html(content.decisions, decision)
            write_html(paths.html, title=TITLE, subtitle=content.subtitle, summary=table, figures=figures, notes=content.notes, decision=opening)
    for table, target in ((content.summary, paths.summary_csv), (full_table(content.runs), paths.results_csv)):
        write_frame(table, target, float_format=CSV_FLOAT)
