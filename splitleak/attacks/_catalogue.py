"""The attack table of docs/attacks.md and `splitleak attacks --markdown`, made from the registry.

Each row comes from an attack class: its name, `threat_model` and `reference` (a short citation;
the `label` when a class has none), so a new attack, built in or from a plugin, is listed
without an edit here; tests/attacks/test_catalogue.py keeps the docs' copy equal to it.
"""

from __future__ import annotations

from typing import Any

from splitleak.attacks.base import ATTACKS

BEGIN, END = "<!-- attacks table: made by `splitleak attacks --markdown` -->", "<!-- end of attacks table -->"


def _mark(flag: bool) -> str:
    return "✓" if flag else "–"


def _row(name: str, cls: Any) -> str:
    tm = cls.threat_model
    aux = "–" if not tm.aux_data else f"✓ (≥ {tm.min_aux}{', with labels' if tm.aux_labels else ''})"
    trained = f"by the `{tm.trained_by}` server" if tm.trained_by else "any"
    cells = [f"`{name}`", trained, _mark(tm.encoder_weights), _mark(tm.query_access), _mark(tm.server_head), aux, _mark(tm.architecture),
             tm.summary, getattr(cls, "reference", "") or getattr(cls, "label", name)]
    return "| " + " | ".join(cells) + " |"


def markdown_table(names: list[str] | None = None) -> str:
    """The attacks (default: every registered one, by name) as a Markdown table between markers."""
    chosen = sorted(ATTACKS) if names is None else names
    lines = [
        BEGIN,
        "| attack | checkpoint trained | encoder weights | query access | server head | aux data | encoder architecture + cut | threat model | reference |",
        "|---|---|:---:|:---:|:---:|:---:|:---:|---|---|",
        *(_row(name, ATTACKS[name]) for name in chosen),
        END,
    ]
    return "\n".join(lines)
