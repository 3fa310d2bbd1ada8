"""Layers point down: no import cycle between splitleak's rooms, every module imports alone, and the
readers of results (gate, reports) do not load torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "splitleak"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _room(module: str) -> str:
    """splitleak.models.checkpoint -> splitleak.models; splitleak.gate -> splitleak.gate."""
    return ".".join(module.split(".")[:2])


def _top_level_imports(path: Path) -> set[str]:
    """Modules imported when `path` is imported: module level, outside `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If) and not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)

    visit(tree.body)
    return {name for name in found if name == "splitleak" or name.startswith("splitleak.")}


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _room_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        room = _room(name)
        targets = {_room(t) for t in _top_level_imports(path) if t in modules or _room(t) in {_room(m) for m in modules}}
        graph.setdefault(room, set()).update(t for t in targets if t != room and t != "splitleak")
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := walk(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := walk(node)):
            return found
    return None


def test_no_import_cycle_between_rooms() -> None:
    graph = _room_graph()
    assert "splitleak.models" in graph and "splitleak.defenses" in graph  # the scan sees the package
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("module", sorted(_modules()))
def test_every_module_imports_alone(module: str) -> None:
    """In a fresh interpreter, so no import order elsewhere can hide a cycle."""
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("modules", [("splitleak.gate",), ("splitleak.reports", "splitleak.reports.document"), ("splitleak.results", "splitleak.metrics.specs"), ("splitleak.dataspec", "splitleak.records")])
def test_readers_of_results_leave_torch_unimported(modules: tuple[str, ...]) -> None:
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + "print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "False"


def test_gate_and_report_commands_leave_torch_unimported(tmp_path: Path) -> None:
    """`splitleak gate` and `splitleak report` on a results folder: parse, read, judge, draw; no torch."""
    import pandas as pd

    from splitleak.results import Results

    rows = [
        {"run": "r", "checkpoint": "m.safetensors", "checkpoint_sha256": "0" * 64, "dataset": "digits", "arch": "small-cnn", "cut": 1,
         "defense": "none", "defense_params": "{}", "attack": "decoder", "metric": "ssim", "value": v, "sample": i, "n": 8, "seed": 0}
        for i, v in enumerate([0.1, 0.2, 0.15, 0.12, 0.18, 0.11, 0.14, 0.16])
    ]
    Results(table=pd.DataFrame(rows)).save(tmp_path / "res")
    (tmp_path / "policy.toml").write_text('[[rule]]\nmetric = "ssim"\nattack = "worst"\nmax = 0.3\n')
    code = (
        "import sys\nfrom splitleak.cli import main\n"
        f"gate = main(['gate', {str(tmp_path / 'res')!r}, '--policy', {str(tmp_path / 'policy.toml')!r}])\n"
        f"report = main(['report', {str(tmp_path / 'res')!r}, '--out', {str(tmp_path / 'r.pdf')!r}])\n"
        "print(gate, report, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "0 0 False", done.stdout
