"""The report as one self-contained HTML file: the summary and notes as HTML tables, every
figure page as an embedded PNG. Deterministic like the PDF (no dates; PNGs without metadata)."""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from splitleak._io import write_text_atomic
from splitleak.reports.decision import Decision
from splitleak.reports.notes import Block
from splitleak.reports.tables import DISPLAY_HEADERS, TableCell

PNG_DPI = 110
STYLE = """
body { font-family: "DejaVu Sans", Arial, sans-serif; margin: 2em auto; max-width: 1300px; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; } .sub { color: #666; font-size: 0.85em; display: block; }
.reconstructable { background: #f6c9c4; } .borderline { background: #fbe3a6; }
.unrecognisable { background: #cde8cd; } .unknown { background: #e6e6e6; }
.note { color: #444; font-size: 0.85em; } img { max-width: 100%; border: 1px solid #eee; }
td.mono { font-family: "DejaVu Sans Mono", monospace; font-size: 0.9em; }
"""


def png_data_uri(fig: Figure, dpi: int = PNG_DPI) -> str:
    """The figure as a base64 PNG data URI (no tEXt metadata, so the bytes are reproducible)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _cell(cell: TableCell, css: str = "") -> str:
    sub = f'<span class="sub">{html.escape(cell.sub)}</span>' if cell.sub else ""
    klass = f' class="{css}"' if css else ""
    return f"<td{klass}>{html.escape(cell.text)}{sub}</td>"


def summary_html(rows: Sequence[Sequence[TableCell]], categories: Sequence[str], footnotes: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in DISPLAY_HEADERS)
    body = []
    for cells, category in zip(rows, categories):
        body.append("<tr>" + "".join(_cell(c, category if j == len(cells) - 1 else "") for j, c in enumerate(cells)) + "</tr>")
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in footnotes)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{notes}"


def blocks_html(blocks: Sequence[Block]) -> str:
    out = []
    for block in blocks:
        if block.kind == "heading":
            out.append(f"<h3>{html.escape(block.text)}</h3>")
        elif block.kind == "text":
            out.append(f"<p>{html.escape(block.text)}</p>")
        else:
            header, *rows = block.rows
            head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
            body = "".join("<tr>" + "".join(f'<td class="mono">{html.escape(v)}</td>' for v in row) + "</tr>" for row in rows)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    return "\n".join(out)


def decision_html(decisions: Sequence[Decision], page: Figure) -> str:
    """The decision: its paragraph(s) as text, the caveats as a list, the page (table, plot) as a PNG."""
    several = len(decisions) > 1
    paragraphs = "".join(
        f"<p>{html.escape((f'Cut {d.group[2]} ({d.group[1]}, {d.group[0]}): ' if several else '') + d.paragraph)}</p>" for d in decisions
    )
    caveats = "".join(f"<li>{html.escape(c)}</li>" for c in dict.fromkeys(c for d in decisions for c in d.caveats))
    return f'{paragraphs}<ul class="note">{caveats}</ul><img alt="Decision" src="{png_data_uri(page)}">'


def write_html(
    path: str | os.PathLike[str], *, title: str, subtitle: str, summary: str, figures: Sequence[tuple[str, Figure]], notes: Sequence[Block], decision: str = ""
) -> Path:
    """One HTML file: title, the decision, summary table, each (title, figure) as a PNG, then the notes."""
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}</style></head><body>',
        f"<h1>{html.escape(title)}</h1><p class=\"note\">{html.escape(subtitle)}</p>",
        *(["<h2>Decision</h2>", decision] if decision else []),
        "<h2>Leakage summary</h2>",
        summary,
    ]
    for heading, fig in figures:
        parts.append(f'<h2>{html.escape(heading)}</h2><img alt="{html.escape(heading)}" src="{png_data_uri(fig)}">')
    parts += ["<h2>Method notes</h2>", blocks_html(notes), "</body></html>"]
    path = Path(path)
    write_text_atomic(path, "\n".join(parts) + "\n")
    return path
