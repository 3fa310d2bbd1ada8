"""evaluate(checkpoint, config, splits) -> Results: run the attacks, score them, keep provenance."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from splitleak._config import FromDict
from splitleak._random import drawing_from, generator
from splitleak._validate import all_finite, device_string, positive_int, resolve_device, torch_seed
from splitleak.adaptive import Adaptive, adaptive_for, check_observations
from splitleak.attacks import ATTACKS, Access, TrainingServer, make_attack
from splitleak.data import LOCATION_FIELDS, ArraySplit, DataConfig, Splits
from splitleak.defenses import defense_record
from splitleak.errors import InputError, NumericalError
from splitleak.memory import peak_memory, reset_cuda_peak
from splitleak.metrics import PRIMARY_METRIC, reconstruction_metrics
from splitleak.metrics.dependence_scale import DEFAULT_MEMORY_BUDGET
from splitleak.models.checkpoint import Checkpoint
from splitleak.progress import ProgressFactory, silent
from splitleak.provenance import environment
from splitleak.records import CheckpointRecord, Provenance, RunProvenance
from splitleak.resume import AttackProgress
from splitleak.results import MODEL_LEVEL, Results
from splitleak.streaming import DEFAULT_ACTIVATION_MEMORY, ActivationPlan, Releases, client_outputs, observed
from splitleak.timing import Stopwatch, training_seconds
from splitleak.scoring import (
    AccuracyScorer,
    DependenceScorer,
    LpipsScorer,
    ModelOutputs,
    ReconstructionDependenceScorer,
    ReconstructionScorer,
    Reconstructions,
    Score,
    Scorer,
    ScoringContext,
    SemanticScorer,
    check_scores,
    extremes,
)
from splitleak.worst_case import with_worst_case

log = logging.getLogger(__name__)

LPIPS_NETS = ("alex", "vgg", "squeeze")
SSIM_WINDOW = 11  # the Gaussian window of the ssim metric (docs/metrics.md)
MIN_TEST_IMAGES = 5  # the dCor jackknife leaves one of up to 100 groups out and needs 4 samples left


@dataclass(frozen=True)
class EvalConfig(FromDict):
    """Which attacks to run with which budgets, on how many test images, with which seed.

    `attack_params` maps an attack's name to options of its config (e.g. {"rmle": {"steps": 500}});
    `budget_scale` then multiplies every attack's budget fields (epochs, steps).

    `limit` test images are attacked and scored; dCor(x, z) uses the first `dcor_samples` test
    images (None: the scored ones). `observations`: how many releases of each image the attacker
    combines against a defense that draws (a number, or "epochs": the checkpoint's training
    epochs; 1: the non-adaptive attacker; splitleak.adaptive). `activation_memory` (bytes) bounds
    the activation tensors evaluate holds at once: above it, it streams (splitleak.streaming) and
    dCor(x, z) uses at most the images whose activations fit. `lpips` names the LPIPS backbone (None: skip LPIPS); when its
    real ImageNet weights are missing LPIPS is reported unavailable, or raises with `require_lpips` (and
    always when `lpips_weights` names a file that is not those weights).
    """

    what: ClassVar[str] = "evaluation"

    attacks: tuple[str, ...] = ("decoder",)
    attack_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    budget_scale: float = 1.0
    metrics: tuple[str, ...] = ("ssim", "psnr", "mse")
    limit: int | None = 1000
    dcor_samples: int | None = None
    dcor_memory: int = DEFAULT_MEMORY_BUDGET
    lpips: str | None = "alex"
    lpips_weights: str | None = None
    require_lpips: bool = False
    gallery: int = 16
    semantic_epochs: int = 5
    seed: int = 0
    device: str = "cpu"
    observations: int | str = 1
    activation_memory: int = DEFAULT_ACTIVATION_MEMORY

    def __post_init__(self) -> None:
        object.__setattr__(self, "observations", check_observations(self.observations))
        object.__setattr__(self, "attacks", tuple(self.attacks))
        object.__setattr__(self, "metrics", tuple(self.metrics))
        object.__setattr__(self, "attack_params", {k: dict(v) for k, v in dict(self.attack_params).items()})
        if not self.attacks:
            raise InputError("evaluate needs at least one attack")
        for name in (*self.attacks, *self.attack_params):
            ATTACKS.get_entry(name)  # unknown names fail here, listing the registered ones
        for name in dict.fromkeys((*self.attacks, *self.attack_params)):  # bad budgets fail now, not an hour in
            make_attack(name, self.attack_params.get(name), budget_scale=self.budget_scale)
        selectable = reconstruction_metrics()
        for name in self.metrics:
            if name not in selectable:
                raise InputError(f"unknown reconstruction metric {name!r}; choose from {sorted(selectable)}")
        if self.lpips is not None and self.lpips not in LPIPS_NETS:
            raise InputError(f"unknown LPIPS backbone {self.lpips!r}; choose from {list(LPIPS_NETS)} or None")
        if self.require_lpips and self.lpips is None:
            raise InputError("require_lpips needs an LPIPS backbone")
        positive_int("limit", self.limit, allow_none=True)
        positive_int("dcor_samples", self.dcor_samples, allow_none=True)
        positive_int("dcor_memory", self.dcor_memory)
        positive_int("activation_memory", self.activation_memory)
        torch_seed("seed", self.seed)
        object.__setattr__(self, "device", resolve_device(self.device))
        device_string("device", self.device)
        for name in ("gallery", "semantic_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InputError(f"{name} must be a whole number >= 0, got {value!r}")


    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields; `observations` only when it is not 1 and `activation_memory` only when
        it is not the default, so that the records (and sweep cell keys) of evaluations that do not
        set them read as before they existed."""
        values = {**asdict(self), "attacks": list(self.attacks), "metrics": list(self.metrics)}
        if self.observations == 1:
            del values["observations"]
        if self.activation_memory == DEFAULT_ACTIVATION_MEMORY:
            del values["activation_memory"]
        return values

    def test_images_needed(self) -> int | None:
        """How many test images evaluate reads (None: all)."""
        if self.limit is None or self.dcor_samples is None:
            return self.limit if self.dcor_samples is None else None
        return max(self.limit, self.dcor_samples)


def data_config_for(checkpoint: Checkpoint, **overrides: Any) -> DataConfig:
    """The checkpoint's own data splits (same dataset, seed and attacker pool), with `overrides`.

    What the checkpoint records is data, never an instruction: its `data_dir` and `download`
    (`LOCATION_FIELDS`) are dropped, so the files are looked for only where `overrides` (the
    command line), $SPLITLEAK_DATA_DIR and the default roots say, and nothing is downloaded
    unless `overrides` say `download=True`. None in `overrides` means "not given".
    """
    recorded = checkpoint.meta.data
    if not recorded:
        raise InputError(f"{checkpoint.path} records no dataset; pass the data explicitly")
    if not isinstance(recorded, Mapping):
        raise InputError(f"{checkpoint.path} records its data config as {type(recorded).__name__}, not a table")
    ignored = [k for k in LOCATION_FIELDS if recorded.get(k) not in (None, False)]
    if ignored:
        log.info("%s: not using the recorded %s (only the caller says where data is and whether to download)", checkpoint.path, " and ".join(ignored))
    values = {k: v for k, v in recorded.items() if k not in LOCATION_FIELDS}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return DataConfig.from_dict(values)


@torch.no_grad()
def _activation_shape(checkpoint: Checkpoint, x: Tensor, config: EvalConfig) -> tuple[int, ...]:
    """One image's activation shape, from a release drawn from a stream used for nothing else."""
    model = checkpoint.model.to(config.device).eval()
    with drawing_from(model, generator(config.seed, "evaluate", "shape")):
        return tuple(model(x[:1].to(config.device))[1].shape[1:])


class _Rows:
    """Collects tidy rows that share the run's identifying columns."""

    def __init__(self, base: dict[str, Any]) -> None:
        self.base = base
        self.frames: list[pd.DataFrame] = []

    def add(self, attack: str, score: Score) -> None:
        self._add(attack, score.metric, score.values, score.samples, score.n, score.ci)

    def _add(self, attack: str, metric: str, values: np.ndarray, samples: np.ndarray | None, n: int, ci: tuple[float, float] | None) -> None:
        count = len(values)
        low, high = ci if ci is not None else (np.nan, np.nan)
        self.frames.append(
            pd.DataFrame(
                {
                    **{k: [v] * count for k, v in self.base.items()},
                    "attack": attack,
                    "metric": metric,
                    "value": values,
                    "sample": pd.array(samples if samples is not None else [pd.NA] * count, dtype="Int64"),
                    "n": n,
                    "ci_low": low if samples is None else np.nan,
                    "ci_high": high if samples is None else np.nan,
                }
            )
        )

    def table(self) -> pd.DataFrame:
        return pd.concat(self.frames, ignore_index=True)


def scorers_for(config: EvalConfig) -> list[Scorer]:
    """The scorers of an evaluation, in the order of their rows: model-level rows come from
    accuracy, dcor (x vs z) and the semantic reference; each attack's from its reconstruction
    metrics (config.metrics), LPIPS, semantic accuracy and dcor_recon."""
    dcor = {"memory_budget": config.dcor_memory, "seed": config.seed}
    return [
        AccuracyScorer(),
        DependenceScorer(**dcor),
        *(ReconstructionScorer(reconstruction_metrics()[name]) for name in config.metrics),
        LpipsScorer(config.lpips, weights=config.lpips_weights, require=config.require_lpips),
        SemanticScorer(epochs=config.semantic_epochs),
        ReconstructionDependenceScorer(**dcor),
    ]


def _access(
    checkpoint: Checkpoint, splits: Splits, config: EvalConfig, activation_shape: tuple[int, ...], observed: Tensor | None = None, adaptive: Adaptive | None = None
) -> Access:
    """Everything an attacker may be handed; each attack takes only what its threat model allows.
    An adaptive attacker's queries answer with its estimate over several releases."""
    model, meta = checkpoint.model, checkpoint.meta
    arch, cut, clone = checkpoint.architecture
    query = adaptive.query(model.client) if adaptive is not None else lambda x: model(x)[1]
    return Access(
        activation_memory=config.activation_memory,
        server=_training_server(checkpoint),
        spec=model.spec, activation_shape=activation_shape, query=query, encoder=model,
        head=model.head if checkpoint.has_head else None, aux=splits.aux, arch=arch, cut=cut,
        num_classes=meta.num_classes or None, device=config.device, seed=config.seed, clone=clone, labelled=splits.labelled,
        observed=observed,
    )


ALL_ATTACKS = "all"
"""`evaluate --attacks all`: every registered attack whose threat model the checkpoint and data meet."""


def attacks_that_can_run(checkpoint: Checkpoint, splits: Splits, config: EvalConfig) -> tuple[tuple[str, ...], dict[str, list[str]]]:
    """The registered attacks (registry order) whose threat model `checkpoint` and `splits` meet
    under `config`, and for each other attack what it would need (its threat model's gaps)."""
    access = _access(checkpoint, splits, config, ())
    can, cannot = [], {}
    for name, attack in ATTACKS.items():
        gaps = attack.threat_model.missing(access)
        if gaps:
            cannot[name] = gaps
        else:
            can.append(name)
    return tuple(can), cannot


def _training_server(checkpoint: Checkpoint) -> TrainingServer | None:
    """The server that trained the checkpoint, as recorded, with the modules it kept (None: not recorded)."""
    recorded = checkpoint.meta.server
    if not recorded or not isinstance(recorded.get("name"), str):
        return None
    params = recorded.get("params")
    state = getattr(checkpoint, "server_state", None) or {}
    return TrainingServer(name=recorded["name"], params=dict(params) if isinstance(params, Mapping) else {}, state=dict(state))


def evaluate(
    checkpoint: Checkpoint, config: EvalConfig, splits: Splits, *, progress: ProgressFactory = silent, store: AttackProgress | None = None
) -> Results:
    """Score the checkpoint's leakage under each attack in `config` on `splits.test`.

    With `store`, each finished attack is saved there and, when the store resumes, attacks it
    already holds are loaded instead of run (same numbers: every attack has its own streams).

    Randomness comes from named streams of `config.seed` (splitleak._random), never from torch's
    global generator: a drawing defense transform (noise, dropout) draws from
    "evaluate/activations" for the scored activations and from "evaluate/attack/<name>" while
    that attack queries the client; each attack derives its own streams from the seed. Above
    `config.activation_memory` the activations are streamed (splitleak.streaming), each chunk's
    release from its own stream "evaluate/activations/chunk/<k>".
    """
    reset_cuda_peak(config.device)
    model, meta = checkpoint.model, checkpoint.meta
    if tuple(splits.spec.shape) != tuple(model.spec.shape):
        raise InputError(f"data shape {splits.spec.shape} does not match the model's input {model.spec.shape}")
    height, width = model.spec.shape[-2:]
    if "ssim" in config.metrics and min(height, width) < SSIM_WINDOW:
        raise InputError(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, the model takes {height}x{width}; drop it from the metrics")
    for name in config.attacks:  # what the evaluation cannot give an attack fails now, before any work
        ATTACKS[name].threat_model.check(name, _access(checkpoint, splits, config, ()))
    test = _head(splits.test, config.limit)
    dcor_set = _head(splits.test, config.dcor_samples or len(test))
    if min(len(test), len(dcor_set)) < MIN_TEST_IMAGES:
        raise InputError(f"evaluate needs at least {MIN_TEST_IMAGES} test images, got {min(len(test), len(dcor_set))}")
    scorers = scorers_for(config)
    context = ScoringContext(
        spec=model.spec, test=test, aux=splits.aux, labelled=splits.labelled, num_classes=meta.num_classes,
        arch=meta.arch, has_head=checkpoint.has_head, seed=config.seed, device=config.device, progress=progress,
    )
    adaptive = adaptive_for(config.observations, meta.defense.name, meta.defense.params, meta.train, model)
    plan = ActivationPlan(config.activation_memory, _activation_shape(checkpoint, test.x, config), len(test), len(dcor_set), copies=1 if adaptive is None else 2)
    if plan.dcor_images < MIN_TEST_IMAGES:
        raise InputError(
            f"activation_memory of {config.activation_memory} bytes holds the activations (shape {list(plan.activation_shape)}) of only "
            f"{plan.dcor_images} images for dCor(x, z), which needs {MIN_TEST_IMAGES}; give it more memory"
        )
    if plan.dcor_images < len(dcor_set):
        log.info("dCor(x, z) on the first %d of the %d images asked: their activations fill activation_memory (%d bytes)", plan.dcor_images, len(dcor_set), config.activation_memory)
    dcor_set = _head(dcor_set, plan.dcor_images)
    stages = Stopwatch()
    trained = training_seconds(meta.log)
    if trained is not None:
        stages.add("train", trained)
    for scorer in scorers:  # once: LPIPS's availability, the semantic classifier
        with stages.time(f"prepare/{scorer_name(scorer)}"):
            scorer.prepare(context)
    model.to(config.device).eval()
    z_observed: Tensor | None = None  # whole only when it fits the budget
    releases = Releases(model, test.x, plan, adaptive, device=config.device, seed=config.seed) if plan.streamed else None
    with stages.time("activations"):
        if releases is not None:  # first: the chunks' releases are not held beside dCor's activations
            logits = releases.logits()
        with drawing_from(model, generator(config.seed, "evaluate", "activations")):
            z_dcor, _ = client_outputs(model, dcor_set.x, config.device, plan.batch)
            if releases is None:
                z_test, logits = client_outputs(model, test.x, config.device, plan.batch)
                # what the attacker observes: the scored release, or its estimate over several (adaptive)
                z_observed = observed(model, adaptive, test.x, z_test, config.device)
                del z_test
    rows = _Rows(
        {
            "run": checkpoint.sha256[:12],
            "checkpoint": str(checkpoint.path),
            "checkpoint_sha256": checkpoint.sha256,
            "dataset": splits.dataset,
            "arch": meta.arch,
            "cut": meta.cut,
            "defense": meta.defense.name,
            "defense_params": json.dumps(meta.defense.params, sort_keys=True),
            "seed": config.seed,
        }
    )
    outputs = ModelOutputs(x=test.x, y=test.y, logits=logits, dependence_x=dcor_set.x, dependence_z=z_dcor)
    del z_dcor
    for scorer in scorers:  # model-level rows, once
        with stages.time(f"score/{scorer_name(scorer)}"):
            _add_scores(rows, MODEL_LEVEL, scorer, scorer.score_model(outputs))
    del outputs

    samples = test.indices.numpy()
    shown = min(config.gallery, len(test))
    reconstructions = {"indices": test.indices[:shown].clone(), "original": test.x[:shown].clone()}
    access = _access(checkpoint, splits, config, plan.activation_shape, observed=z_observed, adaptive=adaptive)
    attack_log: dict[str, Any] = {}
    if store is not None:
        store.bind(checkpoint_sha256=checkpoint.sha256, evaluation=config.to_dict(), data={**splits.config.to_dict(), "origin": splits.origin}, lpips=_logs(scorers)["lpips"])
    for name in config.attacks:
        finished = store.load(name) if store is not None else None
        if finished is not None:
            rows.frames.append(finished.frame(rows.base))
            reconstructions.update(finished.reconstructions)
            attack_log[name] = finished.log
            for step in ("fit", "reconstruct"):  # what the interrupted run measured (its scoring time is not kept)
                if isinstance(finished.log.get(f"{step}_seconds"), (int, float)):
                    stages.add(f"attack/{name}/{step}", finished.log[f"{step}_seconds"])
            continue
        first_row, known = len(rows.frames), set(reconstructions)
        attack = make_attack(name, config.attack_params.get(name), budget_scale=config.budget_scale, progress=progress)
        # each attack's randomness is its own: neither the attacks before it nor a resume change it
        with drawing_from(model, generator(config.seed, "evaluate", "attack", name)):
            if releases is None:
                with stages.time(f"attack/{name}/fit"):
                    attack.fit(access)
                with stages.time(f"attack/{name}/reconstruct"):
                    x_hat = attack.reconstruct(z_observed)
            else:
                x_hat = _streamed_attack(name, attack, access, releases, stages)
        if x_hat.shape != test.x.shape:  # the attack's own bug, not the user's input
            raise RuntimeError(f"attack {name!r} returned reconstructions of shape {tuple(x_hat.shape)} for images of shape {tuple(test.x.shape)}")
        if not all_finite(x_hat):
            raise NumericalError(f"attack {name!r} returned non-finite reconstructions: its optimisation diverged (a smaller learning rate may help)")
        x_hat = x_hat.clamp(*model.spec.value_range)
        batch = Reconstructions(attack=name, x=test.x, x_hat=x_hat, y=test.y, samples=samples, value_range=model.spec.value_range)
        with progress(total=len(scorers), desc=f"{name} attack: scoring") as bar:
            for scorer in scorers:
                with stages.time(f"score/{scorer_name(scorer)}"):
                    scores = _add_scores(rows, name, scorer, scorer.score(batch))
                for score in scores:
                    if score.metric == PRIMARY_METRIC:
                        reconstructions.update(extremes(name, score.values, test, x_hat))
                bar.update(1)
        reconstructions[f"attack/{name}"] = x_hat[:shown].clone()
        attack_log[name] = {
            "threat_model": attack.threat_model.to_dict(),
            "budget": attack.budget(),
            "fit_seconds": stages.seconds[f"attack/{name}/fit"],
            "reconstruct_seconds": stages.seconds[f"attack/{name}/reconstruct"],
            "aux_size": len(splits.aux),
        }
        log.info("attack %s: fit %.1fs", name, stages.seconds[f"attack/{name}/fit"])
        if store is not None:
            added = {k: v for k, v in reconstructions.items() if k not in known}
            store.save(name, pd.concat(rows.frames[first_row:], ignore_index=True), added, attack_log[name])
    provenance = RunProvenance(
        checkpoint=CheckpointRecord(path=str(checkpoint.path), sha256=checkpoint.sha256, meta=meta),
        environment={**environment(), "registered_attacks": registered_attacks()},
        model=checkpoint.describe(),
        defense=defense_record(meta.defense.name, meta.defense.params),
        resumed_attacks=tuple(store.reused) if store is not None else (),
        evaluation=config.to_dict(),
        adaptive=adaptive.describe() if adaptive is not None else {},
        data={**splits.config.to_dict(), "aux_size": len(splits.aux), "test_size": len(test), "origin": splits.origin, "labelled": splits.labelled},
        attacks=attack_log,
        **_logs(scorers),  # task_accuracy, dcor, lpips, semantic_classifier
        gallery_indices=tuple(reconstructions["indices"].tolist()),
        stages=dict(stages.seconds),
        memory={**plan.to_dict(), **peak_memory(config.device)},
    )
    table = with_worst_case(rows.table())  # attack "worst": each image's best reconstruction over the attacks
    return Results(table=table, provenance=Provenance.single(rows.base["run"], provenance), reconstructions=reconstructions)


def _streamed_attack(name: str, attack: Any, access: Access, releases: Releases, stages: Stopwatch) -> Tensor:
    """Fit `attack` with the first chunk's observation as `Access.observed`, then reconstruct
    chunk by chunk (that chunk reused, each later one drawn again from its own stream)."""
    with stages.time("activations"):
        z = releases.observed(0)
    with stages.time(f"attack/{name}/fit"):
        attack.fit(dataclasses.replace(access, observed=z))
    parts = []
    for k in range(len(releases.spans)):
        if k:
            with stages.time("activations"):
                z = releases.observed(k)
        with stages.time(f"attack/{name}/reconstruct"):
            parts.append(attack.reconstruct(z))
        del z
    return torch.cat(parts)


def registered_attacks() -> dict[str, dict[str, Any]]:
    """Every attack registered here with its threat model, so a report (without torch) can say
    which attacks did not run and which need a malicious training server (the decision's caveats)."""
    return {name: ATTACKS[name].threat_model.to_dict() for name in sorted(ATTACKS)}


def scorer_name(scorer: Scorer) -> str:
    """How a scorer's stage is named: what it records, else its metrics ('ssim', 'psnr', ...)."""
    return scorer.record or "+".join(spec.name for spec in scorer.specs)


def _logs(scorers: Sequence[Scorer]) -> dict[str, Any]:
    """What the scorers record in the provenance, by key."""
    return {scorer.record: scorer.log for scorer in scorers if scorer.record}


def _add_scores(rows: _Rows, attack: str, scorer: Scorer, scores: Sequence[Score]) -> Sequence[Score]:
    check_scores(scorer, scores)
    for score in scores:
        rows.add(attack, score)
    return scores


def _head(split: ArraySplit, n: int | None) -> ArraySplit:
    return split if n is None else split.head(min(n, len(split)))
