"""A separate package adds an attack, a defense and a metric through entry points, and every
command uses them with no edit in splitleak: the worked example of docs/architecture.md,
examples/plugin/, installed here as its files plus a .dist-info with its entry points."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from splitleak.results import Results

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plugin"
TINY = ["--dataset", "digits", "--limit-train", "300", "--aux-pool", "200", "--limit-test", "100", "--quiet"]


def _entry_points() -> str:
    """The entry points examples/plugin/pyproject.toml declares, in entry_points.txt form."""
    groups = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]["entry-points"]
    return "".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()) + "\n" for group, points in groups.items())


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    (root / "slplugin.py").write_text((EXAMPLE / "slplugin.py").read_text())
    info = root / "slplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: slplugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(_entry_points())
    return root


def _run(plugin_path: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_path), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "splitleak.cli", *argv], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def test_a_plugin_joins_every_command(plugin_path: Path, tmp_path: Path) -> None:
    listed = _run(plugin_path, "attacks", cwd=tmp_path)
    assert listed.returncode == 0 and "meanimage" in listed.stdout and "has auxiliary data only" in listed.stdout, listed.stderr

    ckpt = tmp_path / "clip.safetensors"
    trained = _run(plugin_path, "train", *TINY, "--epochs", "1", "--defense", "clip", "--defense-param", "clip.bound=2", "--out", str(ckpt), cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "defense clip {'bound': 2}" in trained.stdout

    out = tmp_path / "res"
    evaluated = _run(
        plugin_path, "evaluate", str(ckpt), "--out", str(out), "--attacks", "decoder,meanimage", "--metrics", "ssim,l1",
        "--attack-param", "decoder.epochs=1", "--attack-param", "meanimage.shrink=0.5", "--limit", "20", "--aux-size", "32",
        "--lpips", "none", "--semantic-epochs", "0", "--quiet", cwd=tmp_path,
    )
    assert evaluated.returncode == 0, evaluated.stderr
    table = (out / "results.csv").read_text()
    assert ",meanimage,l1," in table and ",clip," in table
    provenance = Results.load(out).provenance.only
    assert provenance.attacks["meanimage"]["budget"]["shrink"] == 0.5

    reported = _run(plugin_path, "report", str(out), "--out", str(tmp_path / "report.pdf"), cwd=tmp_path)
    assert reported.returncode == 0, reported.stderr
    assert "meanimage" in (tmp_path / "report.summary.csv").read_text()

    policy = tmp_path / "policy.toml"
    policy.write_text('[[rule]]\nmetric = "l1"\nattack = "meanimage"\nmin = 0.0\n[[rule]]\nmetric = "l1"\nattack = "worst"\nmin = 0.0\n')
    gated = _run(plugin_path, "gate", str(out), "--policy", str(policy), cwd=tmp_path)
    assert gated.returncode == 0, gated.stdout + gated.stderr
    assert "meanimage" in gated.stdout

    grid = tmp_path / "grid.toml"
    grid.write_text('[grid]\ndataset = ["digits"]\ncut = [1]\nattack = ["meanimage", "decoder"]\n[[defense]]\nname = "clip"\nbound = [1, 3]\n[data]\nlimit_train = 200\n[train]\nepochs = 1\n')
    dry = _run(plugin_path, "sweep", str(grid), "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "meanimage" in dry.stdout and "clip" in dry.stdout and "4 cells" in dry.stdout


def test_a_broken_plugin_is_named_in_one_line(tmp_path: Path) -> None:
    info = tmp_path / "broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[splitleak.attacks]\nghost = no_such_module:Ghost\n")
    done = _run(tmp_path, "attacks", cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "attack plugin 'ghost'" in lines[0] and "no_such_module" in lines[0], done.stderr
