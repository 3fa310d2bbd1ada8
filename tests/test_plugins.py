"""A separate package adds an attack, a defense and a metric through entry points, and every
command uses them with no edit in splitleak (docs/architecture.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGIN = '''
"""A tiny splitleak plugin: the mean-image attack, a clipping defense and an L1 metric."""

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from splitleak.attacks.base import Access, AttackConfig, ThreatModel, WorkSize
from splitleak.metrics.specs import MetricSpec


@dataclass(frozen=True)
class MeanImageConfig(AttackConfig):
    what: ClassVar[str] = "meanimage"
    shrink: float = 1.0


class MeanImageAttack:
    """Guesses the auxiliary data's mean image for every activation."""

    name: ClassVar[str] = "meanimage"
    label: ClassVar[str] = "Mean image"
    config_class: ClassVar[type] = MeanImageConfig
    threat_model: ClassVar[ThreatModel] = ThreatModel(summary="has auxiliary data only", aux_data=True, min_aux=2)

    @classmethod
    def estimate_seconds(cls, config: MeanImageConfig, size: WorkSize) -> float:
        return 0.001 * size.aux

    def __init__(self, config: MeanImageConfig | None = None, *, progress: Any = None) -> None:
        self.config = config or MeanImageConfig()
        self.mean: Tensor | None = None

    def fit(self, access: Access) -> "MeanImageAttack":
        self.threat_model.check(self.name, access)
        self.mean = access.aux.x.mean(0) * self.config.shrink
        return self

    def reconstruct(self, z: Tensor) -> Tensor:
        return self.mean.expand(len(z), *self.mean.shape).clone()

    def budget(self) -> dict[str, Any]:
        return asdict(self.config)


class Clip(nn.Module):
    def __init__(self, bound: float) -> None:
        super().__init__()
        self.bound = bound

    def forward(self, z: Tensor) -> Tensor:
        return z.clamp(-self.bound, self.bound)


@dataclass(frozen=True)
class ClipDefense:
    """Clips every activation to [-bound, bound]."""

    bound: float = 1.0
    name: ClassVar[str] = "clip"
    label: ClassVar[str] = "clip"
    strength: ClassVar[str] = "bound"
    symbol: ClassVar[str] = "c"
    training_speed: ClassVar[float] = 1.0

    def penalty(self, x: Tensor, z: Tensor) -> Tensor | None:
        return None

    def transform(self) -> nn.Module | None:
        return Clip(self.bound)

    def params(self) -> dict[str, Any]:
        return asdict(self)


def l1(x: Tensor, x_hat: Tensor) -> Tensor:
    return (x - x_hat).abs().flatten(1).mean(1)


L1 = MetricSpec(name="l1", level="sample", leakage_direction="lower", description="Mean absolute error per sample.", fn=l1, reconstruction=True, label="L1")
'''

ENTRY_POINTS = """
[splitleak.attacks]
meanimage = slplugin:MeanImageAttack

[splitleak.defenses]
clip = slplugin:ClipDefense

[splitleak.metrics]
l1 = slplugin:L1
"""

TINY = ["--dataset", "digits", "--limit-train", "300", "--aux-pool", "200", "--limit-test", "100", "--quiet"]


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    (root / "slplugin.py").write_text(textwrap.dedent(PLUGIN))
    info = root / "slplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: slplugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
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
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["attacks"]["meanimage"]["budget"]["shrink"] == 0.5

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
