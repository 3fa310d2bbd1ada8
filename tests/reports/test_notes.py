"""The method notes pages: readable type sizes, tables within the page, no nearly empty last page."""

from __future__ import annotations

from splitleak.reports.canvas import CONTENT_BOTTOM, CONTENT_TOP
from splitleak.reports.notes import LAST_PAGE_MIN, MONO_CHARS, Block, _flow, _lines, _used, notes_pages
from splitleak.reports.style import report_style


def _blocks(paragraphs: int) -> list[Block]:
    text = "A sentence of the method notes that wraps over the width of the page. " * 6
    table = Block("table", rows=(("model", "setting"), *(("NoPeek α=20, cut 2", "x" * 200),) * 3))
    return [Block("heading", "Notes"), table, *(Block("text", text) for _ in range(paragraphs))]


def test_notes_are_set_in_screen_readable_sizes_and_tables_fit_the_width() -> None:
    with report_style():
        figures = notes_pages(_blocks(3), "subtitle")
    body = [t for fig in figures for t in fig.texts[2:]]  # after the page title and subtitle
    assert body and min(t.get_fontsize() for t in body) >= 8
    assert all(len(line) <= MONO_CHARS for b in _blocks(1) if b.kind == "table" for _, line, _ in _lines(b))


def test_a_nearly_empty_last_page_is_balanced_with_the_one_before() -> None:
    capacity = CONTENT_TOP - CONTENT_BOTTOM
    for paragraphs in range(8, 40):  # find a flow whose last page holds only a few lines
        lines = [line for b in _blocks(paragraphs) for line in _lines(b)]
        natural = _flow(lines)
        if len(natural) >= 2 and _used(natural[-1]) < 0.2 * capacity:
            break
    else:
        raise AssertionError("no nearly empty last page found to balance")
    with report_style():
        figures = notes_pages(_blocks(paragraphs), "subtitle")
    assert len(figures) == len(natural)  # the same pages, the break moved up
    last_texts = len(figures[-1].texts) - 2
    assert last_texts > sum(1 for kind, _, _ in natural[-1] if kind != "gap")
    floors = [CONTENT_BOTTOM] * (len(natural) - 2) + [CONTENT_TOP - (_used(natural[-2]) + _used(natural[-1])) / 2]
    assert _used(_flow(lines, floors)[-1]) >= LAST_PAGE_MIN * capacity


def test_each_runs_time_line_ends_with_its_peak_memory() -> None:
    from types import SimpleNamespace

    from splitleak.records import RunProvenance
    from splitleak.reports.notes import _time_blocks

    memory = {"peak_rss_bytes": 2.5e9, "streamed": True, "chunk_images": 4096}
    runs = [SimpleNamespace(label="ResNet-18 layer1", provenance=RunProvenance(stages={"activations": 12.0}, memory=memory)),
            SimpleNamespace(label="older results", provenance=RunProvenance(stages={"activations": 1.0}))]
    lines = [b.text for b in _time_blocks(runs)]  # type: ignore[arg-type]
    assert "peak memory" in lines[0]
    assert lines[1:] == ["ResNet-18 layer1: activations 12.0 s · peak memory 2.5 GB (process RSS); activations streamed in chunks of 4,096 images",
                         "older results: activations 1.0 s"]
