"""The Markdown documentation renders: every table has a header row, a separator and rows of the
header's width (a table pasted without its header renders as a paragraph of pipes)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = sorted([ROOT / "README.md", ROOT / "BENCHMARKS.md", *(ROOT / "docs").glob("*.md")])
SEPARATOR = re.compile(r"\|(\s*:?-{3,}:?\s*\|)+")


def cells(row: str) -> int:
    """Columns of a table row: pipes outside code spans, not escaped, between the outer ones."""
    row = re.sub(r"`[^`]*`", "code", row.replace("\\|", ""))
    return row.strip().count("|") - 1


def tables(text: str) -> list[tuple[int, list[str]]]:
    """(first line number, rows) of each table outside fenced code; a line starting with '||'
    is a norm in a formula, not a table."""
    found: list[tuple[int, list[str]]] = []
    block: list[str] = []
    start, fenced = 0, False
    for number, line in enumerate([*text.splitlines(), ""], start=1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fenced = not fenced
        if not fenced and stripped.startswith("|") and not stripped.startswith("||"):
            start = start if block else number
            block.append(stripped)
        elif block:
            found.append((start, block))
            block = []
    return found


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_table_has_a_header_and_rows_of_its_width(path: Path) -> None:
    for line, rows in tables(path.read_text(encoding="utf-8")):
        assert len(rows) >= 2 and SEPARATOR.fullmatch(rows[1]), f"{path.name}:{line}: a table without a header and separator row: {rows[0][:80]}"
        width = cells(rows[0])
        for offset, row in enumerate(rows):
            assert cells(row) == width, f"{path.name}:{line + offset}: {cells(row)} columns, the header has {width}: {row[:80]}"


def test_the_checker_finds_a_table_without_its_header() -> None:
    assert tables("text\n\n| a | 1 |\n| b | 2 |\n\nmore") == [(3, ["| a | 1 |", "| b | 2 |"])]
    assert not SEPARATOR.fullmatch("| b | 2 |") and SEPARATOR.fullmatch("|---|:---:|")
    assert cells("| `a|b` | c \\| d |") == 2 and tables("```\n| x |\n```\n||f(x)||") == []
