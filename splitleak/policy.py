"""Privacy policies: threshold and baseline rules, how they read a measure, the TOML format, and
the default policy that both the report's verdict and ``splitleak gate --init`` use.

A policy holds threshold rules ("the worst case's mean SSIM stays <= 0.3") and baseline rules
("the worst case's mean SSIM may not rise more than 0.02 above the baseline's"). This module
knows what a rule says and how one rule reads one measure (:func:`worst_measure`,
:func:`threshold_failures`); :mod:`splitleak.gate` applies a policy to every run of a results
table, and :func:`splitleak.reports.tables.verdict` reads the default policy's
:data:`VERDICT_RULE` to give each checkpoint its verdict. No torch here (numpy only): the report
and the gate import it. Reference: docs/ci.md (the format), docs/report.md (the verdict).
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from splitleak._parse import loads_toml, read_settings_text
from splitleak.errors import InputError
from splitleak.metrics.specs import METRICS
from splitleak.results import MODEL_LEVEL, WORST_CASE

POLICY_VERSION = 1
WORST = WORST_CASE
MODEL = "model"  # the policy's spelling of model-level rows (attack "" in the results table)

SSIM_UNRECOGNISABLE = 0.3
"""He, Zhang, Lee (ACSAC 2019): reconstructions with SSIM below 0.3 are unrecognisable. The one
place this number lives: the default policy's :data:`VERDICT_RULE`, the report's verdict and
its plots' reference lines read it from here."""


class GateError(InputError):
    """A policy, results folder or baseline the gate cannot use (exit code 2 on the CLI)."""


# ---------------------------------------------------------------------------------------------
# What is measured: one (run, attack, metric) cell, its statistics and how a rule compares them


@dataclass(frozen=True, eq=False)
class Measurement:
    """The rows of one (run, attack, metric) in a results table.

    Per-sample metrics keep their finite values (infinite ones, e.g. PSNR of identical images,
    are left out as in ``summary.csv``) and a seeded 95% bootstrap CI of their mean; set-level
    metrics keep their one value and the CI their estimator reported (NaN when none).
    """

    level: Literal["sample", "set"]
    values: np.ndarray
    ci: tuple[float, float]
    n: int  # how many samples the values rest on (the table's `n`)


@dataclass(frozen=True)
class Statistic:
    """A named summary of a cell; ``per_sample_only`` ones are undefined for set-level metrics."""

    name: str
    description: str
    fn: Callable[[Measurement], float]
    per_sample_only: bool = False


_STATISTICS = (
    Statistic("mean", "mean of the per-sample values (set-level metrics: the value)", lambda c: float(np.mean(c.values))),
    Statistic("median", "median of the per-sample values (set-level metrics: the value)", lambda c: float(np.median(c.values))),
    Statistic("p95", "95th percentile of the per-sample values (linear interpolation)", lambda c: float(np.quantile(c.values, 0.95)), per_sample_only=True),
    Statistic("ci_low", "lower end of the 95% CI of the mean (bootstrap; set-level: the estimator's CI)", lambda c: c.ci[0]),
    Statistic("ci_high", "upper end of the 95% CI of the mean (bootstrap; set-level: the estimator's CI)", lambda c: c.ci[1]),
)
STATISTICS: dict[str, Statistic] = {s.name: s for s in _STATISTICS}
"""Statistics a rule can name. Treat as read-only."""


@dataclass(frozen=True)
class Measure:
    """A rule's statistic for one attack of one run, with the 95% CI of the mean beside it."""

    attack: str
    value: float
    ci_low: float
    ci_high: float
    n: int


@dataclass(frozen=True)
class Comparison:
    """How a rule reads a measure: which number it holds to an upper limit, which to a lower, and
    how much worse than a baseline's a measure counts (for a metric where higher is worse)."""

    name: str
    description: str
    against_max: Callable[[Measure], float]
    against_min: Callable[[Measure], float]
    worsening: Callable[[Measure, Measure], float]  # (current, baseline) -> compared with the tolerance
    fails_as: str  # how a failed threshold reads: "mean 0.35 {fails_as} above max 0.3"


def _upper_worsening(current: Measure, baseline: Measure) -> float:
    """Upper end of the 95% CI of (current - baseline): the difference of the means plus the two
    CIs' half-widths on the worse side, added in quadrature (independent samples; current and
    baseline scored on the same test images are positively correlated, which only narrows the
    true interval, so this errs on the strict side)."""
    spread = math.hypot(max(current.ci_high - current.value, 0.0), max(baseline.value - baseline.ci_low, 0.0))
    return current.value - baseline.value + spread


_COMPARISONS = (
    Comparison("point", "compare the statistic itself", lambda m: m.value, lambda m: m.value, lambda c, b: c.value - b.value, "is"),
    Comparison(
        "ci",
        "conservative: fail when any part of the 95% CI of the mean is on the wrong side "
        "(a max rule fails when ci_high > max, a min rule when ci_low < min; a baseline rule "
        "when the upper end of the 95% CI of the worsening exceeds the tolerance)",
        lambda m: m.ci_high,
        lambda m: m.ci_low,
        _upper_worsening,
        "reaches",
    ),
    Comparison(
        "ci-lenient",
        "lenient: fail only when the whole 95% CI of the mean is on the wrong side "
        "(a max rule fails when ci_low > max, a min rule when ci_high < min; a baseline rule "
        "only when the two CIs separate by more than the tolerance)",
        lambda m: m.ci_low,
        lambda m: m.ci_high,
        lambda c, b: c.ci_low - b.ci_high,
        "lies entirely",
    ),
)
COMPARISONS: dict[str, Comparison] = {c.name: c for c in _COMPARISONS}
"""Values of a rule's ``use`` key. Treat as read-only."""


def _flipped(m: Measure) -> Measure:
    """The measure of the negated metric: turns "lower is worse" into "higher is worse"."""
    return Measure(m.attack, -m.value, -m.ci_high, -m.ci_low, m.n)


def worse_direction(metric: str) -> Literal["higher", "lower"]:
    """Which direction of ``metric`` a baseline rule counts as worse: more leakage, less utility."""
    spec = METRICS[metric]
    if spec.kind == "utility":  # its leakage_direction says which way means more utility
        return "lower" if spec.leakage_direction == "higher" else "higher"
    return spec.leakage_direction


# ---------------------------------------------------------------------------------------------
# The policy


@dataclass(frozen=True)
class ThresholdRule:
    """``statistic`` of ``metric`` under ``attack`` must stay within [min, max] on every run."""

    name: str
    metric: str
    attack: str  # an attack name, WORST, or MODEL_LEVEL ("") for model-level rows
    statistic: str = "mean"
    max: float | None = None
    min: float | None = None
    use: str = "point"
    description: str = ""

    def limit(self) -> str:
        """The limit in words, e.g. ``<= 0.3 (ci)``."""
        parts = [f">= {self.min:g}" if self.min is not None else "", f"<= {self.max:g}" if self.max is not None else ""]
        return " and ".join(p for p in parts if p) + f" ({self.use})"


@dataclass(frozen=True)
class BaselineRule:
    """``statistic`` of ``metric`` under ``attack`` may get worse than the baseline by at most ``tolerance``."""

    name: str
    metric: str
    attack: str
    tolerance: float
    statistic: str = "mean"
    use: str = "point"
    description: str = ""

    def limit(self) -> str:
        return f"worse by <= {self.tolerance:g} ({self.use})"


@dataclass(frozen=True)
class DecisionRule:
    """The report's decision budget as a gate rule: every run's task accuracy stays within
    ``accuracy_budget`` points of the undefended model's (the mean over the undefended runs of the
    same dataset, arch and cut: in the results, else in the --baseline results)."""

    accuracy_budget: float
    name: str = "accuracy-within-budget"
    description: str = ""

    def limit(self) -> str:
        return f">= undefended - {self.accuracy_budget:g} points (point)"


@dataclass(frozen=True)
class Policy:
    """Threshold and baseline rules, in the order the policy file lists them, and the optional
    decision budget (``[decision]``).

    Two policies are equal when their rules are: ``source`` (where it was read from) is left out.
    """

    rules: tuple[ThresholdRule, ...]
    baseline: tuple[BaselineRule, ...] = ()
    source: str = field(default="<policy>", compare=False)
    decision: DecisionRule | None = None


_TOP_KEYS = {"version": "policy format version (1)", "rule": "threshold rules", "baseline": "baseline rules", "decision": "the accuracy budget of the report's decision"}
_DECISION_KEYS = ("accuracy_budget", "name", "description")
_COMMON_KEYS = ("name", "metric", "attack", "statistic", "use", "description")
_RULE_KEYS = (*_COMMON_KEYS, "max", "min")
_BASELINE_KEYS = (*_COMMON_KEYS, "tolerance")


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Parse a TOML policy; anything malformed raises GateError with a one-line reason."""
    try:
        data = loads_toml(text)
    except tomllib.TOMLDecodeError as err:
        raise GateError(f"policy {source} is not valid TOML: {err}") from None
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise GateError(f"policy {source}: unknown top-level key(s) {unknown}; known: {sorted(_TOP_KEYS)}")
    version = data.get("version", POLICY_VERSION)
    if version != POLICY_VERSION or isinstance(version, bool):
        raise GateError(f"policy {source}: version must be {POLICY_VERSION}, got {version!r}")
    rules = tuple(_parse_rule(entry, f"policy {source}: rule {i + 1}", threshold=True) for i, entry in enumerate(_tables(data, "rule", source)))
    baseline = tuple(_parse_rule(entry, f"policy {source}: baseline rule {i + 1}", threshold=False) for i, entry in enumerate(_tables(data, "baseline", source)))
    decision = _parse_decision(data.get("decision"), source)
    if not rules and not baseline and decision is None:
        raise GateError(f"policy {source} has no rules; add [[rule]] or [[baseline]] tables (splitleak gate --init writes an example)")
    names = [r.name for r in (*rules, *baseline, *([decision] if decision else []))]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise GateError(f"policy {source}: rule names must be unique, {duplicates} repeat; give each a distinct name = \"...\"")
    return Policy(rules=rules, baseline=baseline, source=source, decision=decision)  # type: ignore[arg-type]


def _parse_decision(entry: Any, source: str) -> DecisionRule | None:
    """The ``[decision]`` table: ``accuracy_budget`` in points (0 to 100), optional name, description."""
    if entry is None:
        return None
    where = f"policy {source}: [decision]"
    if not isinstance(entry, dict):
        raise GateError(f"{where} must be a table, written [decision]")
    unknown = sorted(set(entry) - set(_DECISION_KEYS))
    if unknown:
        raise GateError(f"{where}: unknown key(s) {unknown}; known: {sorted(_DECISION_KEYS)}")
    budget = _number(entry, "accuracy_budget", where)
    if budget is None:
        raise GateError(f"{where}: give accuracy_budget = ... (accuracy points below the undefended model, e.g. 3)")
    if not 0 <= budget <= 100:
        raise GateError(f"{where}: accuracy_budget is in points between 0 and 100, got {budget:g}")
    name = _string(entry, "name", where, default=DecisionRule.name)
    return DecisionRule(accuracy_budget=budget, name=name, description=_string(entry, "description", where, default=""))


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and parse a policy file."""
    path = Path(path)
    if not path.is_file():
        raise GateError(f"policy file {path} not found (write a starter one with: splitleak gate --init --policy {path})")
    try:
        text = read_settings_text(path, "policy")
    except InputError as err:
        raise GateError(str(err)) from None
    return parse_policy(text, str(path))


def _tables(data: Mapping[str, Any], key: str, source: str) -> list[Mapping[str, Any]]:
    entries = data.get(key, [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise GateError(f"policy {source}: {key!r} must be an array of tables, written [[{key}]]")
    return entries


def _parse_rule(entry: Mapping[str, Any], where: str, *, threshold: bool) -> ThresholdRule | BaselineRule:
    known = _RULE_KEYS if threshold else _BASELINE_KEYS
    unknown = sorted(set(entry) - set(known))
    if unknown:
        raise GateError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    metric = _string(entry, "metric", where, required=True)
    if metric not in METRICS:
        raise GateError(f"{where}: unknown metric {metric!r}; valid: {', '.join(sorted(METRICS))}")
    attack = _string(entry, "attack", where, default=MODEL)
    if not attack or not attack.replace("-", "_").replace(".", "_").isidentifier():
        raise GateError(f"{where}: attack must be an attack's name, {WORST!r}, or {MODEL!r} (or omit it) for model-level metrics, got {attack!r}")
    statistic = _string(entry, "statistic", where, default="mean")
    if statistic not in STATISTICS:
        raise GateError(f"{where}: unknown statistic {statistic!r}; valid: {', '.join(STATISTICS)}")
    if STATISTICS[statistic].per_sample_only and METRICS[metric].level == "set":
        raise GateError(f"{where}: statistic {statistic!r} needs per-sample values, but {metric} is one value per set; use mean")
    use = _string(entry, "use", where, default="point")
    if use not in COMPARISONS:
        raise GateError(f"{where}: use must be one of {list(COMPARISONS)}, got {use!r}")
    if use != "point" and statistic != "mean":
        raise GateError(f"{where}: use = \"{use}\" compares the 95% CI of the mean, so statistic must be \"mean\" (to hold one CI end to a limit, use statistic = \"ci_low\" or \"ci_high\" with use = \"point\")")
    description = _string(entry, "description", where, default="")
    attack_value = MODEL_LEVEL if attack == MODEL else attack
    if threshold:
        low, high = _number(entry, "min", where), _number(entry, "max", where)
        if low is None and high is None:
            raise GateError(f"{where}: give max = ... or min = ... (or both)")
        if low is not None and high is not None and low > high:
            raise GateError(f"{where}: min {low:g} is above max {high:g}")
        default_name = f"{metric}/{attack}/{statistic}" + (f" >= {low:g}" if low is not None else "") + (f" <= {high:g}" if high is not None else "")
        name = _string(entry, "name", where, default=default_name)
        return ThresholdRule(name=name, metric=metric, attack=attack_value, statistic=statistic, max=high, min=low, use=use, description=description)
    tolerance = _number(entry, "tolerance", where)
    if tolerance is None:
        raise GateError(f"{where}: give tolerance = ... (how much worse than the baseline is allowed, in {metric}'s units; 0 allows none)")
    if tolerance < 0:
        raise GateError(f"{where}: tolerance must be >= 0, got {tolerance:g}")
    name = _string(entry, "name", where, default=f"{metric}/{attack}/{statistic} vs baseline")
    return BaselineRule(name=name, metric=metric, attack=attack_value, tolerance=tolerance, statistic=statistic, use=use, description=description)


def _string(entry: Mapping[str, Any], key: str, where: str, *, default: str | None = None, required: bool = False) -> str:
    if key not in entry:
        if required:
            raise GateError(f"{where}: missing required key {key!r}")
        return default  # type: ignore[return-value]
    value = entry[key]
    if not isinstance(value, str) or (key != "description" and not value.strip()):
        raise GateError(f"{where}: {key} must be a non-empty string, got {value!r}")
    return value


def _number(entry: Mapping[str, Any], key: str, where: str) -> float | None:
    if key not in entry:
        return None
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GateError(f"{where}: {key} must be a finite number, got {value!r}")
    return float(value)



# ---------------------------------------------------------------------------------------------
# How one rule reads measures: which attack it judges, and whether that one is within the limit


def _fmt(value: float) -> str:
    return f"{value:.4f}"


def _leaks_up(metric: str) -> bool:
    return METRICS[metric].leakage_direction == "higher"


def worst_measure(rule: ThresholdRule | BaselineRule, measures: Sequence[Measure]) -> Measure:
    """Of the attacks' measures, the one a rule on the ``worst`` attack judges (the first on ties).

    That is the attack that leaks most as the rule reads it: by the statistic itself for
    ``use = "point"`` and for baseline rules; for a threshold rule read through the 95% CI, by the
    CI end the rule holds to its limit (``"ci"``: the highest ``ci_high`` of a metric where higher
    leaks more), so the conservative reading of "the worst attack's mean <= max" is "every
    attack's CI stays <= max". A missing (NaN) end never counts as the worst.
    """
    if not measures:
        raise ValueError("worst_measure needs at least one measure")
    up = _leaks_up(rule.metric)
    if isinstance(rule, BaselineRule):
        def key(m: Measure) -> float:
            return m.value
    else:
        comparison = COMPARISONS[rule.use]
        key = comparison.against_max if up else comparison.against_min
    sign = 1.0 if up else -1.0
    return max(measures, key=lambda m: sign * key(m) if math.isfinite(key(m)) else -math.inf)


def reading(rule: ThresholdRule, m: Measure) -> str:
    """What a threshold rule compares, in words: ``mean 0.3500`` or ``95% CI of the mean [a, b]``."""
    if rule.use == "point":
        return f"{rule.statistic} {_fmt(m.value)}"
    return f"95% CI of the mean [{_fmt(m.ci_low)}, {_fmt(m.ci_high)}]"


def threshold_failures(rule: ThresholdRule, m: Measure) -> list[str]:
    """Why ``m`` breaks ``rule`` (one reason per broken limit); empty when it is within the limits.

    A NaN the rule compares breaks nothing here: whoever builds the measure decides whether
    missing evidence fails (the gate does: "cannot check")."""
    comparison = COMPARISONS[rule.use]
    reasons = []
    if rule.max is not None and comparison.against_max(m) > rule.max:
        reasons.append(f"{reading(rule, m)} {comparison.fails_as} above max {rule.max:g}")
    if rule.min is not None and comparison.against_min(m) < rule.min:
        reasons.append(f"{reading(rule, m)} {comparison.fails_as} below min {rule.min:g}")
    return reasons


# ---------------------------------------------------------------------------------------------
# The default policy: the report's verdict and the gate's starter policy


VERDICT_RULE = ThresholdRule(
    name="reconstructions-unrecognisable",
    metric="ssim",
    attack=WORST,
    statistic="mean",
    max=SSIM_UNRECOGNISABLE,
    use="ci",
    description=f"He et al. (ACSAC 2019) call reconstructions with SSIM below {SSIM_UNRECOGNISABLE:g} unrecognisable.",
)
"""The rule behind the report's verdict: the mean SSIM of the per-image worst case over the attacks
stays <= 0.3, read conservatively (its 95% CI stays <= 0.3; in results without worst-case rows,
every attack's). Its point reading failing is
"reconstructable", only its CI reading failing "borderline", neither "unrecognisable"."""

DEFAULT_POLICY = Policy(
    rules=(
        VERDICT_RULE,
        ThresholdRule(
            name="labels-do-not-leak",
            metric="semantic_accuracy",
            attack=WORST,
            statistic="mean",
            max=0.3,  # a semantic-accuracy ceiling (chance is 0.1 for 10 classes), not the SSIM line
            use="ci",
            description="The attacker's own classifier should not recognise the reconstructions much better than chance (0.1 for 10 classes).",
        ),
        ThresholdRule(
            name="task-accuracy-floor",
            metric="accuracy",
            attack=MODEL_LEVEL,
            statistic="mean",
            min=0.8,
            use="point",
            description="Privacy bought by destroying the task is no privacy worth shipping.",
        ),
    ),
    baseline=(
        BaselineRule(
            name="ssim-no-regression",
            metric="ssim",
            attack=WORST,
            tolerance=0.02,
            statistic="mean",
            use="ci",
            description="The per-image worst case's mean SSIM may not rise by more than 0.02 above the baseline's anywhere in the 95% CI of the difference.",
        ),
        BaselineRule(
            name="accuracy-no-regression",
            metric="accuracy",
            attack=MODEL_LEVEL,
            tolerance=0.02,
            statistic="mean",
            use="point",
            description="Test accuracy may not drop more than 2 points below the baseline's.",
        ),
    ),
    source="splitleak default policy",
)
"""The policy ``splitleak gate --init`` writes (:data:`STARTER_POLICY` is it rendered as TOML) and
whose :data:`VERDICT_RULE` gives the report's verdict. Its thresholds are starting points for
28x28, 10-class data (Fashion-MNIST)."""


_STARTER_HEADER = f'''# splitleak privacy gate policy (format version {POLICY_VERSION}). Every key: docs/ci.md.
# This is splitleak's default policy; its first rule is the report's verdict (docs/report.md).
#
# [[rule]]      a threshold every run must meet: `statistic` of `metric` under `attack`
#               must be <= max and/or >= min.
# [[baseline]]  a regression check against `splitleak gate --baseline DIR`: the metric may not
#               get worse than the baseline's by more than `tolerance` ("worse" = more leakage;
#               for accuracy, lower). Without --baseline these rules FAIL ("no --baseline
#               given"); delete them until you have a baseline (docs/ci.md).
#
# attack:    an attack name (`splitleak attacks` lists them: decoder, rmle, sdar, ...), "worst" (each image's best
#            reconstruction over the attacks that ran), or omitted / "model" for model-level metrics (accuracy, dcor).
# statistic: mean, median, p95, ci_low, ci_high (ends of the 95% bootstrap CI of the mean).
# use:       "point" compares the statistic itself.
#            "ci" is conservative: a max rule fails when any part of the 95% CI of the mean
#            reaches above max (ci_high > max), a min rule
#            when it reaches below min; a baseline rule fails when the regression could exceed
#            the tolerance: when the upper end of the 95% CI of (current - baseline) in the worse
#            direction is above the tolerance.
#            "ci-lenient" gives noise the benefit of the doubt instead: it fails only when the
#            whole CI is on the wrong side (a baseline rule: when the CIs separate by more than
#            the tolerance). A mean of 0.33 with CI [0.29, 0.37] fails max = {SSIM_UNRECOGNISABLE:g} under "ci"
#            and passes it under "ci-lenient".
# [decision]    optional: accuracy_budget = 3 fails every run whose task accuracy is more than 3
#               points below the undefended model's (the mean over the undefended runs of the same
#               dataset, arch and cut, in the results or else in --baseline): the report's
#               decision page uses the same budget (splitleak report --accuracy-budget 3).
# Missing evidence never passes: a run with no rows for a rule's metric or attack fails that
# rule ("cannot check"); an empty results table is an error (exit 2).
# The thresholds below are starting points for 28x28, 10-class data (Fashion-MNIST); tune them.
'''


def _toml_value(value: str | float) -> str:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(float(value))


def render_policy(policy: Policy, header: str = "") -> str:
    """``policy`` as TOML that :func:`parse_policy` reads back to an equal Policy (``header``,
    comment lines, goes first). Keys at their defaults are written out, except a model-level attack."""
    lines = [header.rstrip("\n")] if header else []
    lines.append(f"version = {POLICY_VERSION}")
    for table, rules in (("rule", policy.rules), ("baseline", policy.baseline)):
        for rule in rules:
            lines += ["", f"[[{table}]]", f"name = {_toml_value(rule.name)}"]
            if rule.description:
                lines.append(f"description = {_toml_value(rule.description)}")
            lines.append(f"metric = {_toml_value(rule.metric)}")
            if rule.attack != MODEL_LEVEL:
                lines.append(f"attack = {_toml_value(rule.attack)}")
            lines.append(f"statistic = {_toml_value(rule.statistic)}")
            limits = ("max", "min") if isinstance(rule, ThresholdRule) else ("tolerance",)
            lines += [f"{key} = {_toml_value(getattr(rule, key))}" for key in limits if getattr(rule, key) is not None]
            lines.append(f"use = {_toml_value(rule.use)}")
    if policy.decision is not None:
        lines += ["", "[decision]", f"name = {_toml_value(policy.decision.name)}"]
        if policy.decision.description:
            lines.append(f"description = {_toml_value(policy.decision.description)}")
        lines.append(f"accuracy_budget = {_toml_value(policy.decision.accuracy_budget)}")
    return "\n".join(lines) + "\n"


STARTER_POLICY = render_policy(DEFAULT_POLICY, _STARTER_HEADER)
"""What ``splitleak gate --init`` writes: :data:`DEFAULT_POLICY` as commented TOML."""
