"""The whole report: pages, determinism, CSVs, HTML, the CLI and bad input."""

from pathlib import Path

import pandas as pd
import pytest

import splitleak
from splitleak.cli import main
from splitleak.reports.document import build_content, figure_pages
from splitleak.reports.notes import notes_pages
from tests._pdf import minimal_pdf
from splitleak.reports.style import report_style

FIGURE_PAGES = 1 + 1 + 1 + 1 + 1  # decision, summary, trade-off, dCor vs alpha, distributions (3 checkpoints fit on one)


def _page_count(pdf: Path) -> int:
    return pdf.read_bytes().count(b"/Type /Page\n") or pdf.read_bytes().count(b"/Type /Page ")


@pytest.fixture(scope="module")
def written(report_dirs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.pdf"
    assert splitleak.report(report_dirs, out, html=True) == out
    return out


def _expected_pages(dirs) -> int:
    content = build_content(dirs)
    with report_style():
        notes = len(notes_pages(content.notes, content.subtitle))
    return FIGURE_PAGES + len(content.runs) + notes


def test_report_writes_pdf_csvs_and_html(written, report_dirs) -> None:
    assert written.read_bytes().startswith(b"%PDF")
    assert _page_count(written) == _expected_pages(report_dirs)
    summary = pd.read_csv(written.with_name("report.summary.csv"))
    assert len(summary) == 3 and list(summary.defense) == ["none", "nopeek", "noise"]
    assert summary.verdict.str.match(r"(reconstructable|unrecognisable|borderline) \(").all()
    full = pd.read_csv(written.with_name("report.results.csv"))
    assert len(full) == sum(len(pd.read_csv(d / "results.csv")) for d in report_dirs) and "label" in full
    html = written.with_name("report.html").read_text()
    assert html.count("data:image/png;base64,") == FIGURE_PAGES - 1 + 3 and "reconstructable" in html
    assert html.index("<h2>Decision</h2>") < html.index("<h2>Leakage summary</h2>")


def test_same_results_give_a_byte_identical_pdf(written, report_dirs, tmp_path) -> None:
    again = splitleak.report(report_dirs, tmp_path / "report.pdf", html=True)
    assert again.read_bytes() == written.read_bytes()
    assert (tmp_path / "report.html").read_bytes() == written.with_name("report.html").read_bytes()
    assert b"CreationDate" not in again.read_bytes()


def test_every_page_renders_in_another_reader_and_the_first_is_the_decision(written) -> None:
    """PDFium (Chrome's PDF engine, the dev extra's pypdfium2) opens the file, draws every page
    with something on it, and reads the decision page's title off page 1."""
    import pypdfium2

    pdf = pypdfium2.PdfDocument(written)
    try:
        assert len(pdf) == _page_count(written)
        for index in range(len(pdf)):
            pixels = pdf[index].render(scale=50 / 72).to_numpy()
            assert pixels.shape[0] > 300 and pixels.shape[1] > 500  # A4 landscape at 50 dpi: 413 x 585
            assert pixels[..., :3].std() > 5, f"page {index + 1} is blank"  # 0-255: text and rules, not an empty page
        first = pdf[0].get_textpage().get_text_range()
        assert "Decision" in first and "accuracy budget" in first and "Ship " in first, first[:300]
    finally:
        pdf.close()


def test_without_nopeek_the_dcor_page_is_left_out(report_results) -> None:
    content = build_content([report_results["none"], report_results["noise"]])
    with report_style():
        titles = [title for title, _ in figure_pages(content)]
    assert not any("NoPeek" in t for t in titles) and len(titles) == FIGURE_PAGES - 3 + 2
    assert any("No NoPeek runs" in block.text for block in content.notes)


def test_cli_writes_the_report(report_dirs, tmp_path, capsys) -> None:
    code = main(["report", str(report_dirs[0]), "--out", str(tmp_path / "sub" / "r.pdf")])
    assert code == 0
    assert (tmp_path / "sub" / "r.pdf").is_file() and (tmp_path / "sub" / "r.summary.csv").is_file()
    assert "r.results.csv" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: [str(tmp / "missing")], "no such results folder"),
        (lambda tmp: [str(tmp)], "not a results folder"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(make, message, tmp_path, capsys) -> None:
    code = main(["report", *make(tmp_path), "--out", str(tmp_path / "r.pdf")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and err.startswith("splitleak: error:")
    assert not (tmp_path / "r.pdf").exists()


def test_cli_rejects_an_output_that_is_not_a_pdf(report_dirs, tmp_path, capsys) -> None:
    assert main(["report", str(report_dirs[0]), "--out", str(tmp_path / "r.png")]) == 2
    assert "must end in .pdf" in capsys.readouterr().err


def test_the_notes_say_how_many_releases_the_attacker_combined(report_dirs) -> None:
    from splitleak.reports.notes import _attacker

    cells = [cell for block in build_content(report_dirs).notes if block.kind == "table" for row in block.rows for cell in row]
    assert any(cell.endswith("attacker sees one release per image") for cell in cells)
    assert _attacker({"releases": 2, "estimator": "noise.estimate"}) == "adaptive attacker: 2 releases per image, combined by noise.estimate"


def test_the_notes_say_where_each_runs_time_went(report_dirs) -> None:
    content = build_content(report_dirs)
    lines = [block.text for block in content.notes if block.kind == "text" and " · " in block.text]
    timed = [r for r in content.runs if r.provenance.stages]
    assert timed and len(lines) == len(timed)  # one line per run that recorded its stages
    assert all(line.startswith(f"{r.label}: ") and "scoring" in line for line, r in zip(lines, timed))


# ---------------------------------------------------------------------------------------------
# the report's files are one set: replaced whole or not at all


def _quick_results(accuracy: float):
    from tests.reports.synthetic import run_results

    return [run_results("none", {}, 0, accuracy, {"decoder": 0.8}, spread=0.02)]


def _set(folder: Path) -> dict[str, bytes | None]:
    return {p.name: p.read_bytes() if p.is_file() else None for p in sorted(folder.iterdir())}


@pytest.fixture
def quick_writers(monkeypatch):
    """The PDF and HTML writers replaced by instant ones writing what the claims recognise (the
    real ones are tested above): these tests are about the set, not the pages."""
    from splitleak.reports import document

    def pdf(pages, path, **_):
        Path(path).write_bytes(minimal_pdf(objects=3 + len(pages)))

    def html(path, **kw):
        Path(path).write_text(f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{document.TITLE}</title> {kw["subtitle"]}')

    monkeypatch.setattr(document, "write_pdf", pdf)
    monkeypatch.setattr(document, "write_html", html)
    monkeypatch.setattr(document, "figure_pages", lambda content: [])
    return document


def test_an_interrupted_report_leaves_the_old_set_whole(tmp_path, monkeypatch, quick_writers) -> None:
    document = quick_writers
    out = tmp_path / "r.pdf"
    document.write_report(_quick_results(0.9), out, html=True)
    old = _set(tmp_path)
    assert sorted(old) == ["r.html", "r.pdf", "r.results.csv", "r.summary.csv"]
    real_frame, real_commit = document.write_frame, document.commit_files
    for where in ("second CSV", "PDF", "HTML", "moving the set into place"):
        frames = []

        def write_frame(*args, **kwargs):
            frames.append(1)
            if where == "second CSV" and len(frames) == 2:
                raise KeyboardInterrupt
            return real_frame(*args, **kwargs)

        def stop(*args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(document, "write_frame", write_frame)
        monkeypatch.setattr(document, "commit_files", stop if where == "moving the set into place" else real_commit)
        for name, writer in (("PDF", "write_pdf"), ("HTML", "write_html")):
            if where == name:
                monkeypatch.setattr(document, writer, stop)
        with pytest.raises(KeyboardInterrupt):
            document.write_report(_quick_results(0.5), out, html=True)
        assert _set(tmp_path) == old, where  # every old file as it was, no temporary beside them
    monkeypatch.undo()


def test_a_new_set_replaces_the_old_one_whole(tmp_path, quick_writers) -> None:
    document = quick_writers
    out = tmp_path / "r.pdf"
    document.write_report(_quick_results(0.9), out, html=True)
    old = _set(tmp_path)
    leftover = tmp_path / ".r.pdf.splitleak-new-abcd1234"  # a set a SIGKILL left half moved
    leftover.mkdir()
    (leftover / ".splitleak.json").write_text('{"format": "splitleak-output", "kind": "report", "files": ["r.pdf"]}')
    (leftover / "r.pdf").write_text("stale")
    document.write_report(_quick_results(0.5), out)  # without --html: the old page goes with the old set
    new = _set(tmp_path)
    assert sorted(new) == ["r.pdf", "r.results.csv", "r.summary.csv"] and new["r.summary.csv"] != old["r.summary.csv"]


def test_a_report_written_into_a_results_folder_leaves_the_results_alone(tmp_path, quick_writers) -> None:
    document = quick_writers
    results = tmp_path / "res"
    _quick_results(0.9)[0].save(results)
    before = _set(results)
    (results / ".r.pdf.splitleak-new-zzzz9999").mkdir()  # not splitleak's (no marker): kept
    document.write_report([results], results / "r.pdf")
    after = _set(results)
    assert {k: after[k] for k in before} == before
    assert sorted(set(after) - set(before)) == [".r.pdf.splitleak-new-zzzz9999", "r.pdf", "r.results.csv", "r.summary.csv"]


def test_the_report_csvs_escape_names_a_spreadsheet_would_run(tmp_path, quick_writers) -> None:
    from splitleak.results import Results

    (run,) = _quick_results(0.9)
    hostile = Results(run.table.assign(dataset="=HYPERLINK(\"http://x\")", checkpoint="@evil"), run.provenance)
    paths = quick_writers.write_report([hostile], tmp_path / "r.pdf")
    for csv_path in (paths.summary_csv, paths.results_csv):
        table = pd.read_csv(csv_path, keep_default_na=False)
        assert (table["dataset"] == "'=HYPERLINK(\"http://x\")").all(), csv_path
    full = pd.read_csv(paths.results_csv, keep_default_na=False)
    assert (full["checkpoint"] == "'@evil").all() and pd.api.types.is_numeric_dtype(full["value"])
