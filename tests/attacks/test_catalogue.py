"""docs/attacks.md's attack table is the registry's (`splitleak attacks --markdown`)."""

from pathlib import Path

from splitleak.attacks import ATTACKS
from splitleak.attacks._catalogue import markdown_table
from splitleak.cli import main

DOCS = Path(__file__).resolve().parents[2] / "docs" / "attacks.md"


def test_the_docs_table_is_the_registrys() -> None:
    own = [name for name, cls in sorted(ATTACKS.items()) if cls.__module__.startswith("splitleak.")]
    assert markdown_table(own) in DOCS.read_text(encoding="utf-8"), "regenerate it: splitleak attacks --markdown"


def test_every_registered_attack_has_a_row(capsys) -> None:
    assert main(["attacks", "--markdown"]) == 0
    printed = capsys.readouterr().out
    assert all(f"| `{name}` |" in printed for name in ATTACKS)
