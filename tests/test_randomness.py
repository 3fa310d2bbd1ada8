"""Randomness is passed in: no global seeding anywhere in splitleak, train / evaluate / attacks
leave torch's global generator as it was, and generator-drawn weights match PyTorch's defaults."""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

import splitleak
from splitleak._random import Stochastic, build, derive_seed, drawing_from, init_module
from splitleak.attacks import passive_attacks
from splitleak.defenses import make_defense
from splitleak.evaluation import EvalConfig, evaluate
from splitleak.models import load_checkpoint, save_checkpoint
from splitleak.testing import TINY_BUDGET
from splitleak.training import TrainConfig, train

PACKAGE = Path(splitleak.__file__).parent

SEEDING = {
    "torch.manual_seed", "torch.seed", "torch.random.manual_seed", "torch.random.seed", "torch.cuda.manual_seed",
    "torch.cuda.manual_seed_all", "torch.cuda.seed", "torch.cuda.seed_all", "numpy.random.seed", "random.seed",
}
GLOBAL_STATE = {"torch.set_rng_state", "torch.random.set_rng_state", "torch.cuda.set_rng_state", "torch.cuda.set_rng_state_all"}
DRAWS = {"rand", "randn", "randint", "randperm", "rand_like", "randn_like", "randint_like", "normal", "bernoulli", "multinomial", "poisson"}
IN_PLACE_DRAWS = {"uniform_", "normal_", "bernoulli_", "random_", "exponential_", "geometric_", "cauchy_", "log_normal_"}
NUMPY_GLOBAL_OK = {"default_rng", "Generator", "SeedSequence", "PCG64", "Philox", "SFC64", "MT19937", "BitGenerator"}


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def _global_random_calls(path: Path, root: Path = PACKAGE.parent) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func, aliases) or ""
        kwargs = {k.arg for k in node.keywords}
        where = f"{path.relative_to(root)}:{node.lineno} {name or ast.unparse(node.func)}"
        if name in SEEDING:
            found.append(f"{where} (seeds a global generator)")
        elif name in GLOBAL_STATE and path.name != "_random.py":
            found.append(f"{where} (sets a global generator's state outside splitleak/_random.py)")
        elif name.startswith("torch.") and name.rsplit(".", 1)[-1] in DRAWS and name.count(".") == 1 and "generator" not in kwargs:
            found.append(f"{where} (draws from torch's global generator)")
        elif name.startswith("torch.nn.init.") and name.endswith("_") and "generator" not in kwargs and name.rsplit(".", 1)[-1] not in ("zeros_", "ones_", "constant_", "eye_", "dirac_"):
            found.append(f"{where} (initialises from torch's global generator)")
        elif isinstance(node.func, ast.Attribute) and node.func.attr in IN_PLACE_DRAWS and not name.startswith("torch.nn.init.") and "generator" not in kwargs:
            found.append(f"{where} (draws in place from torch's global generator)")
        elif name.startswith("numpy.random.") and name.rsplit(".", 1)[-1] not in NUMPY_GLOBAL_OK:
            found.append(f"{where} (numpy's global generator)")
        elif name.startswith("random.") and aliases.get("random") == "random":
            found.append(f"{where} (Python's global random module)")
    return found


def test_no_code_in_splitleak_seeds_or_draws_from_a_global_generator() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 40
    found = [hit for path in files for hit in _global_random_calls(path)]
    assert not found, "\n".join(found)


def test_the_scan_finds_what_it_looks_for(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import torch\nimport numpy as np\nimport random\nfrom torch import manual_seed as ms\n"
        "torch.manual_seed(0)\nms(1)\nnp.random.seed(2)\nrandom.seed(3)\ntorch.randn(3)\n"
        "torch.randn(3, generator=g)\nt.uniform_(0, 1)\ntorch.nn.init.kaiming_uniform_(w)\nnp.random.default_rng(0)\nnp.random.rand(2)\n"
        "torch.set_rng_state(s)\n"
    )
    hits = _global_random_calls(probe, tmp_path)
    assert len(hits) == 9, hits  # everything but the generator= draw and default_rng


def test_init_module_draws_what_pytorch_draws_from_the_same_state() -> None:
    def layers() -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(5, 6), nn.ConvTranspose2d(4, 2, 4, stride=2), nn.Conv1d(2, 3, 1, bias=False),
            nn.Embedding(5, 3, padding_idx=1), nn.Bilinear(2, 3, 4), nn.LayerNorm(3),
        )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        reference = layers()
    state = torch.get_rng_state()
    ours = init_module(layers(), torch.Generator().manual_seed(7))
    for (name, a), b in zip(reference.state_dict().items(), ours.state_dict().values()):
        assert torch.equal(a, b), name
    state = torch.get_rng_state()
    built = build(layers, torch.Generator().manual_seed(7))
    again = build(layers, torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), state), "build() changed torch's global generator"
    assert all(torch.equal(a, b) for a, b in zip(built.state_dict().values(), again.state_dict().values()))


def test_named_streams_are_distinct_and_stable() -> None:
    assert derive_seed(0, "train", "init") == derive_seed(0, "train", "init")
    seeds = {derive_seed(s, *names) for s in (0, 1) for names in (("train", "init"), ("train", "order"), ("attack", "shadow", "init"))}
    assert len(seeds) == 6 and all(0 <= s < 2**63 for s in seeds)
    with pytest.raises(ValueError, match="whole number"):
        derive_seed(1.5, "x")  # type: ignore[arg-type]


def test_a_drawing_transform_uses_only_the_generator_it_is_lent() -> None:
    noise = make_defense("noise", {"scale": 1.0}).transform(torch.Generator().manual_seed(3))
    assert isinstance(noise, Stochastic)
    own = noise.generator
    z = torch.zeros(4, 5)
    state = torch.get_rng_state()
    with drawing_from(nn.Sequential(noise), torch.Generator().manual_seed(9)):
        lent = noise(z)
    assert noise.generator is own and torch.equal(torch.get_rng_state(), state)
    assert torch.equal(lent, make_defense("noise", {"scale": 1.0}).transform(torch.Generator().manual_seed(9))(z))
    assert torch.equal(noise(z), make_defense("noise", {"scale": 1.0}).transform(torch.Generator().manual_seed(3))(z))


def test_train_and_evaluate_leave_the_global_generator_alone(tiny_splits, tmp_path: Path) -> None:
    """With a drawing defense (noise), every attack and the semantic classifier (LPIPS: its
    conformance check)."""
    small = replace(tiny_splits, train=tiny_splits.train.head(64), aux=tiny_splits.aux.head(32))
    state = torch.get_rng_state()
    trained = train(TrainConfig(cut=1, epochs=1, batch_size=32, defense="noise", defense_params={"scale": 0.3}), small)
    assert torch.equal(torch.get_rng_state(), state), "train changed torch's global generator"
    path = save_checkpoint(tmp_path / "noisy.safetensors", trained.model, trained.meta)
    tiny = {"decoder": {"epochs": 1}, "rmle": {"steps": 2}, "shadow": {"shadow_epochs": 1, "decoder_epochs": 1, "rmle_steps": 2}, "unsplit": {"outer_steps": 1, "input_steps": 2, "model_steps": 2}}
    passive = passive_attacks()  # fsha: below
    config = EvalConfig(  # every budget cut to the conformance checks' (an attack without tiny options above too)
        attacks=passive, attack_params={k: v for k, v in tiny.items() if k in passive}, budget_scale=TINY_BUDGET, limit=8, lpips=None, semantic_epochs=1, gallery=2
    )
    state = torch.get_rng_state()
    results = evaluate(load_checkpoint(path), config, small)
    assert torch.equal(torch.get_rng_state(), state), "evaluate changed torch's global generator"
    # the noisy client's draws for an attack are that attack's own: alone it scores the same
    alone = evaluate(load_checkpoint(path), replace(config, attacks=("decoder",), semantic_epochs=0), small).table
    key = ["attack", "metric", "sample"]
    pick = lambda t: t[t.attack.isin(["", "decoder"]) & ~t.metric.str.startswith("semantic")].sort_values(key, ignore_index=True)  # noqa: E731
    pd.testing.assert_frame_equal(pick(results.table), pick(alone))


def test_the_fsha_server_and_attack_leave_the_global_generator_alone(tiny_splits, tmp_path: Path) -> None:
    small = replace(tiny_splits, train=tiny_splits.train.head(32), aux=tiny_splits.aux.head(32))
    config = TrainConfig(cut=2, epochs=1, batch_size=32, server="fsha", server_params={"critic_width": 8, "critic_blocks": 1, "decoder_width": 16})
    state = torch.get_rng_state()
    trained = train(config, small)
    assert torch.equal(torch.get_rng_state(), state), "training with the fsha server changed torch's global generator"
    path = save_checkpoint(tmp_path / "fsha.safetensors", trained.model, trained.meta, server_state=trained.server_state)
    evaluate(load_checkpoint(path), EvalConfig(attacks=("fsha",), limit=8, lpips=None, semantic_epochs=0, gallery=2), small)
    assert torch.equal(torch.get_rng_state(), state), "evaluating fsha changed torch's global generator"
