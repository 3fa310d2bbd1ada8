"""Conformance checks: one list of small, named checks every attack, defense and metric passes.

In the spirit of scikit-learn's `parametrize_with_checks` and torchmetrics' shared tester: a
new attack, defense or metric is covered by the same contract as the built-in ones, on a tiny
split model and tiny random data built here (1x8x8 images in [-1, 1], `small-cnn` cut 1, two
classes), each check well under two seconds on a CPU.

    from splitleak.testing import attack_checks, check_attack

    check_attack("decoder")                 # every check; AssertionError names the failing one

    @pytest.mark.parametrize("check", attack_checks(MyAttack), ids=str)
    def test_my_attack(check):              # one test per check
        check()

`attack_checks` takes a name registered in `splitleak.attacks.ATTACKS` (built with
`make_attack` at a tiny budget) or a factory returning a fresh attack (a class whose defaults
are cheap, or e.g. `lambda: MyAttack(MyConfig(epochs=1))`); `defense_checks` a name in
`splitleak.defenses.DEFENSES` or a defense instance; `metric_checks` a name in
`splitleak.metrics.METRICS` or a `MetricSpec`. A check that cannot run here (a metric whose
external weights are missing) raises `unittest.SkipTest`, which pytest reports as a skip with
the reason; `check_*` re-raises it after running the others.

What is checked:

* attacks: `fit` returns self; output shape, dtype, device and value range; same seed, same
  output (a different seed may differ -- not required); a second `fit` starts over (same output,
  budget and history as one fresh fit); `budget()` and the config are JSON-able and the config
  round-trips through `from_dict`; a `ThreatModel` with a summary is declared; each capability
  the threat model needs, when missing, raises ThreatModelError before any work (no query, no
  forward pass, no progress bar) -- for a training-time attack (`ThreatModel.trained_by`) the
  tiny victim is first served by that registered server, and a victim trained honestly is
  what is missing; fit + reconstruct leave torch's global generator and what
  they were handed (weights, gradients, auxiliary data) as they were.
* defenses: `params()` is JSON-able and rebuilds an equal defense (through `make_defense` for a
  registered one); the penalty is None or a finite scalar that gradients flow through; the
  transform is None or keeps shape and dtype (train and eval mode) and passes gradients; given
  the same generator it draws the same values, and it never touches torch's global generator.
* metrics: level and direction are declared; a per-sample metric returns [B], a set metric a
  scalar (or a `DcorEstimate`, whose `v` and `u2` are both checked); results are finite,
  deterministic, leave inputs and the global generator alone; matching inputs (a
  reconstruction equal to the original, activations equal to the inputs, labels the classifier
  gives) are at the leaking end of the declared direction against unrelated ones, and at the
  known extreme where one is defined (ssim 1, psnr inf, mse 0, lpips 0, dcor 1).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import math
import unittest
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from splitleak._random import build, drawing_from, generator
from splitleak.attacks import Access, Attack, ThreatModel, ThreatModelError, TrainingServer, make_attack
from splitleak.data import ArraySplit, InputSpec
from splitleak.defenses import DEFENSES, Defense, make_defense
from splitleak.metrics import METRICS, MetricSpec
from splitleak.metrics.dependence_scale import DcorEstimate
from splitleak.models.architectures import get_architecture
from splitleak.models.split import SplitModel
from splitleak.progress import ProgressFactory, silent
from splitleak.protocol import ServerSetup, check_server_params, make_server, server_modules
from splitleak.weights import WeightsUnavailable

TINY_BUDGET = 0.01
"""`budget_scale` of a registered attack under check: every budget field becomes 1 or 2."""


@dataclass(frozen=True)
class Check:
    """One named conformance check of one subject; call it to run it."""

    subject: str
    name: str
    run: Callable[[], None]

    def __call__(self) -> None:
        self.run()

    def __str__(self) -> str:
        return f"{self.subject}-{self.name}"


def _run_all(checks: list[Check]) -> None:
    skipped: list[str] = []
    for check in checks:
        try:
            check()
        except unittest.SkipTest as skip:
            skipped.append(f"{check}: {skip}")
        except AssertionError as err:
            raise AssertionError(f"{check} failed: {err}") from err
    if skipped:
        raise unittest.SkipTest("; ".join(skipped))


@contextmanager
def _global_rng_untouched(what: str) -> Iterator[None]:
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    yield
    assert torch.equal(cpu, torch.get_rng_state()), f"{what} changed torch's global (CPU) generator"
    if cuda is not None:
        after = torch.cuda.get_rng_state_all()
        assert all(torch.equal(a, b) for a, b in zip(cuda, after)), f"{what} changed torch's global CUDA generator"


def _json(value: Any, what: str) -> None:
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError) as err:
        raise AssertionError(f"{what} is not JSON-able: {err}") from None


# --------------------------------------------------------------------------------------------
# attacks
# --------------------------------------------------------------------------------------------

_SHAPE = (1, 8, 8)
_RANGE = (-1.0, 1.0)
_CLASSES = 2
_CUT = 1
_ARCH = "small-cnn"


@dataclass
class _Counter:
    calls: int = 0


class _TinyVictim:
    """A fresh small-cnn split at cut 1 on 1x8x8 inputs in [-1, 1], its auxiliary data and test
    activations, and an Access with every capability (query, weights, head, labelled data,
    architecture, the training server) whose use is counted.

    With `server` (a training-time attack's `ThreatModel.trained_by`), that registered server
    serves the victim for `_SERVED_STEPS` protocol steps on the auxiliary data first, so the
    Access holds what it kept; the victim's weights stay as built (only the server learns)."""

    def __init__(self, seed: int = 0, aux_size: int = 32, server: str | None = None) -> None:
        self.spec = InputSpec(shape=_SHAPE, value_range=_RANGE)
        arch = get_architecture(_ARCH)
        self.model = build(
            lambda: SplitModel(*arch.build(_SHAPE, _CLASSES, _CUT), self.spec, arch=_ARCH, cut=_CUT), generator(0, "conformance", "victim")
        ).eval()
        data = generator(0, "conformance", "data")
        low, high = _RANGE
        x = low + (high - low) * torch.rand(aux_size + 6, *_SHAPE, generator=data)
        y = torch.randint(0, _CLASSES, (aux_size + 6,), generator=data)
        self.aux = ArraySplit(x[:aux_size], y[:aux_size], torch.arange(aux_size))
        self.x_test = x[aux_size:]
        with torch.no_grad():
            self.z_test = self.model.client(self.x_test)
        self.queries, self.forwards = _Counter(), _Counter()
        self.model.register_forward_pre_hook(lambda *_: setattr(self.forwards, "calls", self.forwards.calls + 1))
        self.model.encoder.register_forward_pre_hook(lambda *_: setattr(self.forwards, "calls", self.forwards.calls + 1))
        self.model.head.register_forward_pre_hook(lambda *_: setattr(self.forwards, "calls", self.forwards.calls + 1))
        self.seed = seed
        self.server = TrainingServer(name="honest", params={"lr": 1e-3}) if server is None else self._served(server)
        self.forwards.calls = 0  # serving is the victim's past, not the attack's work

    def _served(self, name: str) -> TrainingServer:
        """Run `name` for a few protocol steps against the victim and keep what it kept."""
        setup = ServerSetup(params=check_server_params(name, {}), aux=self.aux, generator=generator(0, "conformance", "server"), lr=1e-3)
        server = make_server(name, self.model, setup)
        for _ in range(_SERVED_STEPS):
            reply = server.respond(self.model.client(self.aux.x[:16]), self.aux.y[:16])
            server.zero_grad()
            reply.loss.backward()
            server.update()
        for p in self.model.parameters():
            p.grad = None  # the client's optimiser is not run: the victim keeps its weights
        return TrainingServer(name=name, params=server.describe()["params"], state=server_modules(server))

    def query(self, x: Tensor) -> Tensor:
        self.queries.calls += 1
        return self.model(x)[1]

    def access(self, **overrides: Any) -> Access:
        values: dict[str, Any] = dict(
            spec=self.spec, activation_shape=tuple(self.z_test.shape[1:]), query=self.query, encoder=self.model, head=self.model.head,
            aux=self.aux, arch=_ARCH, cut=_CUT, num_classes=_CLASSES, device="cpu", seed=self.seed, labelled=True,
            observed=self.z_test, server=self.server,
        )
        values.update(overrides)
        return Access(**values)

    def snapshot(self) -> dict[str, Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()} | {"aux.x": self.aux.x.clone(), "aux.y": self.aux.y.clone()}


_SERVED_STEPS = 2

_MISSING: dict[str, dict[str, Any]] = {
    "encoder_weights": {"encoder": None},
    "query_access": {"query": None},
    "server_head": {"head": None},
    "aux_data": {"aux": None},
    "aux_labels": {"labelled": False},
    "architecture": {"arch": None, "cut": None, "clone": None},
    "trained_by": {"server": TrainingServer(name="honest")},
}
"""For each capability a ThreatModel can require: the Access fields that take it away."""


def _attack_maker(attack: str | Callable[[], Attack], params: Mapping[str, Any] | None) -> tuple[str, Callable[..., Attack]]:
    if isinstance(attack, str):
        name = attack

        def make(progress: ProgressFactory = silent) -> Attack:
            return make_attack(name, params, budget_scale=TINY_BUDGET, progress=progress)

        return name, make
    if params:
        raise ValueError("params apply to a registered attack's name; put them in the factory instead")
    factory = attack
    label = getattr(factory, "name", None) or getattr(factory, "__name__", "attack")
    return str(label), lambda progress=silent: factory()


def _attack_class(make: Callable[..., Attack]) -> type:
    return type(make())


def attack_checks(attack: str | Callable[[], Attack], params: Mapping[str, Any] | None = None) -> list[Check]:
    """The conformance checks of `attack` (a registered name, or a factory of fresh attacks)."""
    label, make = _attack_maker(attack, params)
    subject = f"attack-{label}"

    def tiny(**kwargs: Any) -> _TinyVictim:
        """The tiny victim; trained by the attack's server first if its threat model says so."""
        return _TinyVictim(server=_attack_class(make).threat_model.trained_by, **kwargs)

    def fit_returns_self() -> None:
        a = make()
        assert a.fit(tiny().access()) is a, "fit() must return the attack itself"

    def reconstruct_before_fit_raises() -> None:
        try:
            make().reconstruct(tiny().z_test)
        except RuntimeError:
            return
        raise AssertionError("reconstruct() before fit() must raise RuntimeError")

    def output_in_the_input_spec() -> None:
        victim = tiny()
        x_hat = make().fit(victim.access()).reconstruct(victim.z_test)
        x = victim.x_test
        assert isinstance(x_hat, Tensor), f"reconstruct() returned {type(x_hat).__name__}, not a Tensor"
        assert x_hat.shape == x.shape, f"reconstruct() returned shape {tuple(x_hat.shape)}, the inputs are {tuple(x.shape)}"
        assert x_hat.dtype == x.dtype, f"reconstruct() returned {x_hat.dtype}, the inputs are {x.dtype}"
        assert x_hat.device.type == "cpu", f"reconstruct() returned a tensor on {x_hat.device}, not the CPU"
        assert bool(torch.isfinite(x_hat).all()), "reconstruct() returned NaN or infinite values"
        low, high = victim.spec.value_range
        assert x_hat.min().item() >= low - 1e-5 and x_hat.max().item() <= high + 1e-5, (
            f"reconstructions span [{x_hat.min().item():.3g}, {x_hat.max().item():.3g}], outside the spec's range {victim.spec.value_range}"
        )

    def same_seed_same_output() -> None:
        victim = tiny()
        first = make().fit(victim.access()).reconstruct(victim.z_test)
        second = make().fit(tiny().access()).reconstruct(victim.z_test)
        assert torch.equal(first, second), "two fresh attacks fitted with the same seed reconstruct differently"

    def refit_starts_over() -> None:
        victim = tiny()
        fresh = make().fit(victim.access())
        expected, expected_budget = fresh.reconstruct(victim.z_test), fresh.budget()
        again = make()
        again.fit(victim.access(seed=victim.seed + 1)).reconstruct(victim.z_test)  # another seed first
        again.fit(victim.access())
        got = again.reconstruct(victim.z_test)
        assert torch.equal(got, expected), "fit() after a fit() with another seed does not give what one fresh fit() gives"
        assert json.dumps(again.budget(), sort_keys=True) == json.dumps(expected_budget, sort_keys=True), (
            f"budget() after a second fit() is {again.budget()}, after one fit() {expected_budget}"
        )
        if hasattr(fresh, "history"):
            assert list(again.history) == list(fresh.history), "history after a second fit() differs (appended to, not replaced?)"

    def budget_and_config_are_json() -> None:
        a = make()
        _json(a.budget(), "budget() before fit()")
        victim = tiny()
        a.fit(victim.access()).reconstruct(victim.z_test)
        _json(a.budget(), "budget() after fit()")
        config = getattr(a, "config", None)
        assert config is not None and dataclasses.is_dataclass(config), "the attack has no dataclass `config`"
        as_dict = dataclasses.asdict(config)
        _json(as_dict, "the attack's config")
        from_dict = getattr(type(config), "from_dict", None)
        if from_dict is not None:
            assert from_dict(as_dict) == config, "the config does not round-trip through from_dict(asdict(config))"

    def threat_model_declared() -> None:
        cls = _attack_class(make)
        name = getattr(cls, "name", None)
        assert isinstance(name, str) and name, "the attack class declares no `name`"
        if isinstance(attack, str):
            assert name == attack, f"registered as {attack!r} but named {name!r}"
        model = getattr(cls, "threat_model", None)
        assert isinstance(model, ThreatModel), f"`threat_model` is {type(model).__name__}, not a ThreatModel"
        assert isinstance(model.summary, str) and model.summary.strip(), "the threat model has no summary"
        _json(model.to_dict(), "the threat model")

    def unmet_threat_model_fails_before_work() -> None:
        model: ThreatModel = _attack_class(make).threat_model
        cases = [(flag, fields) for flag, fields in _MISSING.items() if getattr(model, flag)]
        if model.aux_data and model.min_aux > 1:
            cases.append((f"min_aux={model.min_aux}", {"aux": "short"}))
        if not cases:
            raise unittest.SkipTest("the threat model requires nothing, so nothing can be missing")
        for what, fields in cases:
            victim = tiny(aux_size=max(32, model.min_aux))
            if fields.get("aux") == "short":
                fields = {"aux": victim.aux.head(model.min_aux - 1)}
            bars = _Counter()

            def progress(*args: Any, **kwargs: Any) -> Any:
                bars.calls += 1
                return silent(*args, **kwargs)

            a = make(progress=progress)
            try:
                a.fit(victim.access(**fields))
            except ThreatModelError:
                pass
            else:
                raise AssertionError(f"fit() without {what} did not raise ThreatModelError")
            work = {"queries": victim.queries.calls, "forward passes": victim.forwards.calls, "progress bars": bars.calls}
            assert not any(work.values()), f"fit() without {what} did work before raising ThreatModelError: {work}"

    def leaves_global_rng_and_inputs_untouched() -> None:
        victim = tiny()
        before = victim.snapshot()
        with _global_rng_untouched("fit() + reconstruct()"):
            make().fit(victim.access()).reconstruct(victim.z_test)
        after = victim.snapshot()
        changed = [k for k in before if not torch.equal(before[k], after[k])]
        assert not changed, f"fit() + reconstruct() changed what it was handed: {changed[:5]}"
        grads = [n for n, p in victim.model.named_parameters() if p.grad is not None]
        assert not grads, f"fit() + reconstruct() wrote gradients into the victim's parameters: {grads[:5]}"

    checks = [
        fit_returns_self, reconstruct_before_fit_raises, output_in_the_input_spec, same_seed_same_output, refit_starts_over,
        budget_and_config_are_json, threat_model_declared, unmet_threat_model_fails_before_work, leaves_global_rng_and_inputs_untouched,
    ]
    return [Check(subject, fn.__name__, fn) for fn in checks]


def check_attack(attack: str | Callable[[], Attack], params: Mapping[str, Any] | None = None) -> None:
    """Run every attack check; AssertionError names the first that fails."""
    _run_all(attack_checks(attack, params))


# --------------------------------------------------------------------------------------------
# defenses
# --------------------------------------------------------------------------------------------


def _defense_inputs() -> tuple[Tensor, Tensor]:
    data = generator(0, "conformance", "defense")
    return torch.rand(8, *_SHAPE, generator=data), torch.randn(8, 4, 4, 4, generator=data)


def defense_checks(defense: str | Defense) -> list[Check]:
    """The conformance checks of `defense` (a registered name with default parameters, or an instance)."""
    instance = make_defense(defense) if isinstance(defense, str) else defense
    subject = f"defense-{getattr(instance, 'name', type(instance).__name__)}"

    def name_declared() -> None:
        name = getattr(type(instance), "name", None)
        assert isinstance(name, str) and name, "the defense class declares no `name`"
        if isinstance(defense, str):
            assert name == defense, f"registered as {defense!r} but named {name!r}"

    def params_rebuild_the_defense() -> None:
        params = instance.params()
        _json(params, "params()")
        name = type(instance).name
        rebuilt = make_defense(name, params) if name in DEFENSES else type(instance)(**params)
        assert rebuilt == instance, f"params() {params} rebuild {rebuilt!r}, not {instance!r}"

    def penalty_is_a_differentiable_scalar() -> None:
        x, z = _defense_inputs()
        z.requires_grad_(True)
        with _global_rng_untouched("penalty()"):
            penalty = instance.penalty(x, z)
        if penalty is None:
            return
        assert isinstance(penalty, Tensor) and penalty.dim() == 0, f"penalty() returned {penalty!r}, not a scalar tensor or None"
        assert bool(torch.isfinite(penalty)), f"penalty() is {penalty.item()}"
        penalty.backward()
        assert z.grad is not None and bool(torch.isfinite(z.grad).all()), "no finite gradient flows from penalty() to the activations"

    def transform_keeps_shape_and_passes_gradients() -> None:
        layer = instance.transform(torch.Generator().manual_seed(0))
        if layer is None:
            return
        assert isinstance(layer, nn.Module), f"transform() returned {type(layer).__name__}, not an nn.Module or None"
        for training in (True, False):
            _, z = _defense_inputs()
            z.requires_grad_(True)
            out = layer.train(training)(z)
            mode = "train" if training else "eval"
            assert out.shape == z.shape and out.dtype == z.dtype, f"{mode} mode: transform maps {tuple(z.shape)} {z.dtype} to {tuple(out.shape)} {out.dtype}"
            assert bool(torch.isfinite(out).all()), f"{mode} mode: the transform returned NaN or infinite values"
            out.sum().backward()
            assert z.grad is not None and bool(torch.isfinite(z.grad).all()), f"{mode} mode: no finite gradient flows through the transform"

    def transform_draws_only_from_its_generator() -> None:
        if instance.transform() is None:
            return
        _, z = _defense_inputs()
        with _global_rng_untouched("the transform"):
            a = instance.transform(torch.Generator().manual_seed(1))(z)
            b = instance.transform(torch.Generator().manual_seed(1))(z)
            lent = instance.transform()
            with drawing_from(lent, torch.Generator().manual_seed(1)):
                c = lent(z)
            d, e = instance.transform()(z), instance.transform()(z)
        assert torch.equal(a, b), "the same generator gives different transforms"
        assert torch.equal(a, c), "drawing_from(transform, generator) draws other values than transform(generator)"
        assert torch.equal(d, e), "transform() without a generator is not reproducible"

    checks = [name_declared, params_rebuild_the_defense, penalty_is_a_differentiable_scalar, transform_keeps_shape_and_passes_gradients, transform_draws_only_from_its_generator]
    return [Check(subject, fn.__name__, fn) for fn in checks]


def check_defense(defense: str | Defense) -> None:
    """Run every defense check; AssertionError names the first that fails."""
    _run_all(defense_checks(defense))


# --------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------

KNOWN_EXTREMES: dict[str, float] = {
    "ssim": 1.0, "psnr": math.inf, "mse": 0.0, "lpips": 0.0, "dcor": 1.0, "dcor_u2": 1.0, "dcor_recon": 1.0, "dcor_recon_u2": 1.0,
}
"""A metric's value on matching inputs (identical images, activations equal to the inputs),
where one is defined: the full-leakage end of its scale."""

_B = 8
_METRIC_SHAPE = (1, 16, 16)  # ssim's window is 11 pixels


@dataclass(frozen=True)
class _Case:
    """How to call a metric: on matching inputs, on unrelated ones, with keyword options."""

    matching: tuple[Any, ...]
    unrelated: tuple[Any, ...]
    kwargs: dict[str, Any]


def _metric_case(spec: MetricSpec) -> _Case:
    """Inputs for `spec.fn`, chosen by the names of its leading parameters."""
    names = tuple(p.name for p in inspect.signature(spec.function).parameters.values() if p.default is inspect.Parameter.empty)
    data = generator(0, "conformance", "metric")
    x = torch.rand(_B, *_METRIC_SHAPE, generator=data)
    kwargs = {"data_range": 1.0} if spec.takes_data_range else {}
    if names == ("x", "y"):  # an image and its reconstruction
        return _Case((x, x.clone()), (x, torch.rand(_B, *_METRIC_SHAPE, generator=data)), kwargs)
    if names == ("x", "z"):  # inputs and activations (or reconstructions)
        return _Case((x, x.clone()), (x, torch.randn(_B, 8, generator=data)), kwargs)
    if names == ("classifier", "x", "y"):  # a classifier, images and their labels
        classifier = build(lambda: nn.Sequential(nn.Flatten(), nn.Linear(math.prod(_METRIC_SHAPE), 3)), generator(0, "conformance", "classifier")).eval()
        with torch.no_grad():
            given = classifier(x).argmax(1)
        return _Case((classifier, x, given), (classifier, x, (given + 1) % 3), kwargs)
    if names == ("y",):  # labels alone (a chance level): one class everywhere vs balanced classes
        return _Case((torch.zeros(_B, dtype=torch.long),), (torch.arange(_B) % 3,), kwargs)
    if names == ("logits", "y"):  # logits and labels
        logits = torch.randn(_B, 3, generator=data)
        return _Case((logits, logits.argmax(1)), (logits, (logits.argmax(1) + 1) % 3), kwargs)
    raise AssertionError(f"splitleak.testing does not know how to call {spec.name}'s function{names}; extend _metric_case")


def _call(spec: MetricSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        return spec.function(*args, **kwargs)
    except (WeightsUnavailable, ImportError) as err:
        raise unittest.SkipTest(f"{spec.name} needs external weights or packages that are not available here: {str(err).splitlines()[0]}") from None


def _values(spec: MetricSpec, out: Any) -> list[float]:
    """The scalar(s) a result stands for, after checking it has the form its level promises."""
    if spec.level == "sample":
        assert isinstance(out, Tensor) and out.shape == (_B,), f"a per-sample metric must return a tensor [B] = [{_B}], got {_describe(out)}"
        return [float(v) for v in out]
    if isinstance(out, Tensor):
        assert out.dim() == 0, f"a set-level metric must return a scalar, got a tensor of shape {tuple(out.shape)}"
        return [out.item()]
    if isinstance(out, (int, float)) and not isinstance(out, bool):
        return [float(out)]
    if isinstance(out, DcorEstimate):  # dcor_recon and dcor_recon_u2 share one call: both estimates
        return [out.v, out.u2]
    raise AssertionError(f"a set-level metric must return a scalar, got {_describe(out)}")


def _describe(out: Any) -> str:
    return f"tensor of shape {tuple(out.shape)}" if isinstance(out, Tensor) else type(out).__name__


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor):
        return isinstance(b, Tensor) and torch.equal(a, b)
    if isinstance(a, nn.Module):
        return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    return a == b


def metric_checks(metric: str | MetricSpec) -> list[Check]:
    """The conformance checks of `metric` (a name registered in METRICS, or a MetricSpec)."""
    spec = METRICS[metric] if isinstance(metric, str) else metric
    subject = f"metric-{spec.name}"

    def declared() -> None:
        assert isinstance(spec, MetricSpec), f"{type(spec).__name__} is not a MetricSpec"
        if isinstance(metric, str):
            assert spec.name == metric, f"registered as {metric!r} but named {spec.name!r}"
        assert spec.level in ("sample", "set"), f"level {spec.level!r}"
        assert spec.leakage_direction in ("higher", "lower"), f"leakage_direction {spec.leakage_direction!r}"
        assert spec.description.strip(), "no description"

    def returns_its_level() -> None:
        case = _metric_case(spec)
        saved = copy.deepcopy(case.unrelated)
        with _global_rng_untouched(f"{spec.name}"):
            first = _call(spec, case.unrelated, case.kwargs)
            second = _call(spec, case.unrelated, case.kwargs)
        values = _values(spec, first)
        assert all(math.isfinite(v) for v in values), f"non-finite values on unrelated inputs: {values}"
        assert _values(spec, second) == values, "two calls on the same inputs disagree"
        assert all(_same(a, b) for a, b in zip(saved, case.unrelated)), "the metric changed its inputs"

    def matching_inputs_leak_most() -> None:
        case = _metric_case(spec)
        matching = _values(spec, _call(spec, case.matching, case.kwargs))
        unrelated = _values(spec, _call(spec, case.unrelated, case.kwargs))
        mean = lambda values: sum(values) / len(values)  # noqa: E731
        if spec.leakage_direction == "higher":
            assert mean(matching) > mean(unrelated), f"direction 'higher', but matching inputs give {mean(matching):.4g} <= unrelated {mean(unrelated):.4g}"
        else:
            assert mean(matching) < mean(unrelated), f"direction 'lower', but matching inputs give {mean(matching):.4g} >= unrelated {mean(unrelated):.4g}"
        extreme = KNOWN_EXTREMES.get(spec.name)
        if extreme is not None:
            ok = all(v == extreme if math.isinf(extreme) else math.isclose(v, extreme, abs_tol=1e-4) for v in matching)
            assert ok, f"matching inputs should give {extreme}, got {matching}"

    checks = [declared, returns_its_level, matching_inputs_leak_most]
    return [Check(subject, fn.__name__, fn) for fn in checks]


def check_metric(metric: str | MetricSpec) -> None:
    """Run every metric check; AssertionError names the first that fails."""
    _run_all(metric_checks(metric))


__all__ = [
    "KNOWN_EXTREMES", "TINY_BUDGET", "Check", "attack_checks", "check_attack", "check_defense", "check_metric", "defense_checks", "metric_checks",
]
