"""The README runs as written: its command blocks, in order, in a fresh folder.

Every ```bash block (but the set-up's `make` commands, which install and would run this suite)
runs line by line through bash from an empty temporary folder, then the ```python block. Budgets
are the one thing changed, so the run takes a minute instead of an hour: flags appended to each
`splitleak train / evaluate` line (argparse takes the last value), a copy of the sweep's grid
with small numbers, and keyword values in the Python snippet. Each rewrite must match the
README exactly where expected, so a README edit that a rewrite no longer fits fails here
instead of silently running the full budget.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from splitleak.data import DataConfig, DataError, load_splits

README = Path(__file__).resolve().parents[1] / "README.md"
EXAMPLES = README.parent / "examples"

TRAIN_BUDGET = "--limit-train 800 --limit-test 64 --epochs 1 --batch-size 128"
EVALUATE_BUDGET = "--limit 32 --aux-size 300 --budget-scale 0.05 --semantic-epochs 1 --dcor-samples 32"
GRID_BUDGET = {  # the sweep grid's lines -> small values (each must occur once)
    "cut = [1, 2, 3]": "cut = [2]",
    "alpha = [1, 5, 20]": "alpha = [20]",
    "aux_size = 5000": "aux_size = 300\nlimit_train = 800",
    "limit_test = 500": "limit_test = 64",
    "epochs = 2": "epochs = 1",
    "limit = 500": "limit = 32",
    "semantic_epochs = 3": "semantic_epochs = 1",
    "epochs = 10": "epochs = 1",
    "steps = 200": "steps = 10",
}
PYTHON_BUDGET = {  # the Python snippet's calls -> the same calls with small budgets
    'DataConfig(dataset="fashion-mnist")': 'DataConfig(dataset="fashion-mnist", limit_train=800, limit_test=64, aux_size=300)',
    "epochs=3)": "epochs=1)",
    'EvalConfig(attacks=("decoder", "rmle"))': 'EvalConfig(attacks=("decoder", "rmle"), limit=32, budget_scale=0.05, semantic_epochs=1, dcor_samples=32)',
}
EXPECTED_EXIT = {"splitleak gate results/": (0, 1)}  # the gate's verdict on a reconstructable model may be "fail"


def blocks(language: str) -> list[str]:
    """The README's fenced blocks of one language, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def commands(block: str) -> list[str]:
    """A shell block's commands: continuation lines joined, comments and blank lines dropped."""
    joined = block.replace("\\\n", " ")
    return [line for line in (raw.split(" #")[0].strip() for raw in joined.splitlines()) if line and not line.startswith("#")]


def with_budget(command: str, grid: Path) -> str:
    """The command with small budgets (see the module docstring)."""
    words = shlex.split(command)
    if words[:2] == ["splitleak", "train"]:
        return f"{command} {TRAIN_BUDGET}"
    if words[:2] == ["splitleak", "evaluate"]:
        return f"{command} {EVALUATE_BUDGET}"
    if words[:2] == ["splitleak", "sweep"] and "--dry-run" not in words:
        return command.replace("examples/nopeek_tradeoff.toml", str(grid))
    return command


def small_grid(folder: Path) -> Path:
    text = (EXAMPLES / "nopeek_tradeoff.toml").read_text()
    for old, new in GRID_BUDGET.items():
        assert len(re.findall(rf"^{re.escape(old)}(?![\w.])", text, flags=re.M)) == 1, f"the grid no longer has one line {old!r}"
        text = re.sub(rf"^{re.escape(old)}(?![\w.])", new, text, flags=re.M)
    path = folder / "grid.toml"
    path.write_text(text)
    return path


def small_python(snippet: str) -> str:
    for old, new in PYTHON_BUDGET.items():
        assert snippet.count(old) == 1, f"the README's Python snippet no longer has one {old!r}"
        snippet = snippet.replace(old, new)
    return snippet


@pytest.mark.slow
def test_the_readme_runs_as_written(tmp_path: Path) -> None:
    try:
        load_splits(DataConfig(dataset="fashion-mnist", limit_train=10, limit_test=10))
    except DataError as err:
        pytest.skip(f"the README's examples need Fashion-MNIST ({err})")
    work = tmp_path / "fresh"
    work.mkdir()
    (work / "examples").symlink_to(EXAMPLES)  # the README's paths are relative to a clone's root
    grid = small_grid(tmp_path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    shell = [c for block in blocks("bash") for c in commands(block) if not c.startswith("make ")]
    assert len(shell) >= 10, "the README's command blocks were not found"
    for command in shell:
        run = subprocess.run(["bash", "-c", with_budget(command, grid)], cwd=work, env=env, capture_output=True, text=True, timeout=600)
        allowed = next((codes for prefix, codes in EXPECTED_EXIT.items() if command.startswith(prefix)), (0,))
        assert run.returncode in allowed, f"{command!r} exited {run.returncode}:\n{run.stderr[-2000:]}"
    (python,) = blocks("python")
    run = subprocess.run([sys.executable, "-c", small_python(python)], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"the README's Python snippet failed:\n{run.stderr[-2000:]}"
    for written in ("nopeek.safetensors", "none.safetensors", "results/none/results.csv", "report.pdf", "gate.xml", "runs/tradeoff/results.csv"):
        assert (work / written).exists(), f"{written} was not written"


def test_every_readme_command_gets_a_budget_or_needs_none(tmp_path: Path) -> None:
    """The fast half: the blocks are found, each rewrite matches, and every splitleak command
    that computes is one the budgets cover."""
    grid = small_grid(tmp_path)
    small_python(blocks("python")[0])
    for command in (c for block in blocks("bash") for c in commands(block)):
        words = shlex.split(command)
        if words[0] == "splitleak" and words[1] in {"train", "evaluate", "sweep", "demo"} and "--dry-run" not in words:
            assert with_budget(command, grid) != command, f"{command!r} would run at full budget in the README test"
