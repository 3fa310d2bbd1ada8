"""Privacy regression gate: a policy, checked against a results table, gives a verdict.

A policy (:mod:`splitleak.policy`: the rules, their TOML format and the default policy) holds
threshold rules (``[[rule]]``: "the worst case's mean SSIM stays <= 0.3") and baseline rules
(``[[baseline]]``: "the worst case's mean SSIM may not rise more than 0.02 above the
baseline's"). Every rule is checked on every run (checkpoint) of a results folder; the verdict
passes when every check passed, and never on no evidence: a rule a run has no rows for, or a
baseline rule without a (matching) baseline, is a failed check, and a verdict with no checks
does not pass. A policy or results folder the gate cannot use (an empty table among them) raises
:class:`GateError` (a ValueError: the CLI turns it into exit code 2). Everything here is a pure
function of its inputs except :func:`load_policy`, :func:`run_gate` and
:func:`write_starter_policy`, which read or write the files they are given. Reference: docs/ci.md.
"""

from __future__ import annotations

import json
import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from splitleak._io import write_text_atomic
from splitleak._printable import printable
from splitleak.cuts import Cut, parse_cut
from splitleak.policy import (  # noqa: F401  (re-exported: the gate's public names)
    COMPARISONS,
    DEFAULT_POLICY,
    MODEL,
    POLICY_VERSION,
    STARTER_POLICY,
    STATISTICS,
    VERDICT_RULE,
    WORST,
    BaselineRule,
    DecisionRule,
    Measurement,
    Comparison,
    GateError,
    Measure,
    Policy,
    Statistic,
    ThresholdRule,
    _flipped,
    _fmt,
    load_policy,
    parse_policy,
    reading,
    render_policy,
    threshold_failures,
    worse_direction,
    worst_measure,
)
from splitleak.results import MODEL_LEVEL, Results
from splitleak.uncertainty import CONFIDENCE, bootstrap_mean_ci

DEFAULT_POLICY_FILE = "splitleak-policy.toml"

Status = Literal["pass", "fail", "skip"]


class _CannotCheck(Exception):
    """The evidence one rule needs is missing for one run: that check fails with this reason."""


# ---------------------------------------------------------------------------------------------
# Runs of a results table and their cells


@dataclass(frozen=True)
class RunIdentity:
    """One run (checkpoint, evaluation seed) of a results table and the configuration it tests."""

    id: str
    run: str
    seed: int
    dataset: str
    arch: str
    cut: Cut
    defense: str
    defense_params: str

    @property
    def config(self) -> tuple[str, str, Cut, str, str]:
        """What baseline matching compares: (dataset, arch, cut, defense, defense_params)."""
        return (self.dataset, self.arch, self.cut, self.defense, self.defense_params)

    def describe(self) -> str:
        params = "" if self.defense_params in ("", "{}") else f" {self.defense_params}"
        return f"{self.defense}{params}, {self.arch} cut {self.cut}, {self.dataset}"


class _Cells:
    """Read-only view of a validated table by run, attack and metric (cells built on demand)."""

    def __init__(self, table: pd.DataFrame, what: str) -> None:
        self.what = what
        keys = ["run", "seed"]
        firsts = table.drop_duplicates(keys)
        seeds_per_run = firsts.groupby("run")["seed"].nunique()
        self.runs = tuple(
            RunIdentity(
                id=r.run if seeds_per_run[r.run] == 1 else f"{r.run}@seed{r.seed}", run=r.run, seed=int(r.seed),
                dataset=r.dataset, arch=r.arch, cut=parse_cut(r.cut), defense=r.defense, defense_params=r.defense_params,
            )
            for r in firsts.itertuples()
        )
        self._groups = {k: g for k, g in table.groupby(["run", "seed", "attack", "metric"], sort=False)}
        self._cache: dict[tuple[str, int, str, str], Measurement] = {}

    def attacks(self, run: RunIdentity, metric: str) -> list[str]:
        return sorted(a for (r, s, a, m) in self._groups if (r, s, m) == (run.run, run.seed, metric))

    def has(self, run: RunIdentity, attack: str, metric: str) -> bool:
        return (run.run, run.seed, attack, metric) in self._groups

    def cell(self, run: RunIdentity, attack: str, metric: str) -> Measurement:
        key = (run.run, run.seed, attack, metric)
        if key not in self._cache:
            group = self._groups[key]
            values = group["value"].to_numpy(dtype="float64")
            if group["sample"].notna().any():
                finite = values[np.isfinite(values)]
                self._cache[key] = Measurement("sample", finite, bootstrap_mean_ci(finite, confidence=CONFIDENCE, seed=0), len(values))
            else:
                ci = (float(group["ci_low"].iloc[0]), float(group["ci_high"].iloc[0]))
                self._cache[key] = Measurement("set", values[:1], ci, int(group["n"].iloc[0]))
        return self._cache[key]

    def measure(self, run: RunIdentity, rule: ThresholdRule | BaselineRule) -> Measure:
        """The rule's statistic on this run; for WORST, of the per-image worst case over the attacks
        (the rows `attack = "worst"`, splitleak.worst_case), or, in results without them, of the
        attack that leaks most as the rule reads it (:func:`splitleak.policy.worst_measure`).

        Raises _CannotCheck when the run lacks the evidence (no rows for the metric or the attack,
        no finite values, too few samples for a CI) and GateError when the policy asks something
        the table's shape rules out (an attack of a model-level metric, or the reverse).
        """
        present = self.attacks(run, rule.metric)
        shown = _attack_label(rule.attack)
        if not present:
            raise _CannotCheck(f"no rows for metric {rule.metric}, attack {shown} in the {self.what} (run {run.id}): cannot check")
        per_attack = [a for a in present if a != MODEL_LEVEL]
        if rule.attack == WORST:
            if not per_attack:
                raise GateError(f"rule {rule.name!r}: {rule.metric} is a model-level metric in the {self.what}; omit attack (or write attack = \"model\")")
            # the per-image worst case when the table holds it; results of an earlier release: the attack that leaks most
            candidates = [WORST] if WORST in per_attack else per_attack
        elif rule.attack in present:
            candidates = [rule.attack]
        elif rule.attack == MODEL_LEVEL or not per_attack:
            hint = f"it is measured per attack ({', '.join(per_attack)})" if per_attack else "it is model-level: omit attack"
            raise GateError(f"rule {rule.name!r}: the {self.what} have no {rule.metric} rows for attack {shown!r} (run {run.id}); {hint}")
        else:
            raise _CannotCheck(f"no rows for metric {rule.metric}, attack {shown} in the {self.what} (run {run.id} has {', '.join(per_attack)}): cannot check")
        return worst_measure(rule, [self._measure(run, a, rule) for a in candidates])

    def _measure(self, run: RunIdentity, attack: str, rule: ThresholdRule | BaselineRule) -> Measure:
        cell = self.cell(run, attack, rule.metric)
        where = f"{rule.metric} under {_attack_label(attack)} in the {self.what} (run {run.id})"
        if cell.values.size == 0:
            raise _CannotCheck(f"no finite values of {where}: cannot check")
        measure = Measure(attack, STATISTICS[rule.statistic].fn(cell), cell.ci[0], cell.ci[1], cell.n)
        needs_ci = rule.use != "point" or rule.statistic in ("ci_low", "ci_high")
        has_ci = math.isfinite(measure.ci_low) and math.isfinite(measure.ci_high)
        if needs_ci and not has_ci and cell.level == "set":
            raise GateError(f"rule {rule.name!r}: the {self.what} give no 95% CI for {rule.metric} under {_attack_label(attack)!r} (run {run.id}); set-level metrics without an estimator CI (accuracy) need use = \"point\" and statistic = \"mean\"")
        if needs_ci and not has_ci:
            raise _CannotCheck(f"no 95% CI of {where} (fewer than 2 finite values): cannot check")
        if not math.isfinite(measure.value):
            raise _CannotCheck(f"no finite {rule.statistic} of {where}: cannot check")
        return measure


def _attack_label(attack: str) -> str:
    return MODEL if attack == MODEL_LEVEL else attack


def match_baseline(current: tuple[RunIdentity, ...], baseline: tuple[RunIdentity, ...]) -> tuple[dict[str, RunIdentity], tuple[str, ...]]:
    """Pair each current run with a baseline run; return the pairs by run id and notes.

    One run on each side: they are paired whatever their configurations (a note says where they
    differ). Otherwise runs pair by (dataset, arch, cut, defense, defense_params); a current run
    with no such baseline run is left unpaired (its baseline checks fail, with a note), and two
    baseline runs with the same configuration are ambiguous (GateError).
    """
    if len(current) == 1 and len(baseline) == 1:
        cur, base = current[0], baseline[0]
        notes = () if cur.config == base.config else (f"run {cur.id} ({cur.describe()}) is compared with the baseline's only run {base.id} ({base.describe()})",)
        return {cur.id: base}, notes
    pairs: dict[str, RunIdentity] = {}
    notes: list[str] = []
    for run in current:
        matches = [b for b in baseline if b.config == run.config]
        if len(matches) > 1:
            raise GateError(f"baseline runs {[b.id for b in matches]} share run {run.id}'s configuration ({run.describe()}); keep one per configuration")
        if matches:
            pairs[run.id] = matches[0]
        else:
            notes.append(f"no baseline run has run {run.id}'s configuration ({run.describe()}); its baseline rules fail")
    return pairs, tuple(notes)


# ---------------------------------------------------------------------------------------------
# The verdict


@dataclass(frozen=True)
class Check:
    """One rule on one run: its status, what was measured and why it passed or failed."""

    rule: str
    kind: Literal["threshold", "baseline", "decision"]
    run: str
    run_config: str
    status: Status
    metric: str
    attack: str  # the attack measured (for "worst": the one that leaked most); "model" for model-level
    statistic: str
    use: str
    limit: str
    message: str
    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    baseline_run: str | None = None
    baseline_attack: str | None = None
    baseline_value: float | None = None
    baseline_ci_low: float | None = None
    baseline_ci_high: float | None = None
    description: str = ""


@dataclass(frozen=True)
class PolicyVerdict:
    """Every check of a policy against a results folder (and a baseline)."""

    checks: tuple[Check, ...]
    policy: str
    results: str
    baseline: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        """True when there are checks and every one passed: no evidence is no pass."""
        return bool(self.checks) and all(c.status == "pass" for c in self.checks)

    @property
    def exit_code(self) -> int:
        """0 when the verdict passed, 1 when it did not (a check failed or nothing was checked)."""
        return 0 if self.passed else 1

    def counts(self) -> dict[str, int]:
        return {status: sum(c.status == status for c in self.checks) for status in ("pass", "fail", "skip")}


def _check_threshold(rule: ThresholdRule, run: RunIdentity, cells: _Cells) -> Check:
    common = dict(rule=rule.name, kind="threshold", run=run.id, run_config=run.describe(), metric=rule.metric, statistic=rule.statistic, use=rule.use, limit=rule.limit(), description=rule.description)
    try:
        m = cells.measure(run, rule)
    except _CannotCheck as missing:
        return Check(status="fail", attack=_attack_label(rule.attack), message=str(missing), **common)  # type: ignore[arg-type]
    reasons = threshold_failures(rule, m)
    message = "; ".join(reasons) if reasons else f"{reading(rule, m)} within {rule.limit()}"
    return Check(
        status="fail" if reasons else "pass", attack=_attack_label(m.attack), message=message, value=m.value,
        ci_low=_finite(m.ci_low), ci_high=_finite(m.ci_high), **common,  # type: ignore[arg-type]
    )


def _check_baseline(rule: BaselineRule, run: RunIdentity, cells: _Cells, base_run: RunIdentity | None, base_cells: _Cells | None) -> Check:
    common = dict(rule=rule.name, kind="baseline", run=run.id, run_config=run.describe(), metric=rule.metric, statistic=rule.statistic, use=rule.use, limit=rule.limit(), description=rule.description)
    if base_cells is None or base_run is None:
        reason = "no --baseline given" if base_cells is None else f"no baseline run has this run's configuration ({run.describe()})"
        return Check(status="fail", attack=_attack_label(rule.attack), message=f"{reason}: cannot check a regression without a baseline", **common)  # type: ignore[arg-type]
    try:
        cur, base = cells.measure(run, rule), base_cells.measure(base_run, rule)
    except _CannotCheck as missing:
        return Check(status="fail", attack=_attack_label(rule.attack), message=str(missing), baseline_run=base_run.id, **common)  # type: ignore[arg-type]
    comparison = COMPARISONS[rule.use]
    if worse_direction(rule.metric) == "higher":
        worsening, change = comparison.worsening(cur, base), cur.value - base.value
    else:
        worsening, change = comparison.worsening(_flipped(cur), _flipped(base)), base.value - cur.value
    failed = worsening > rule.tolerance
    if rule.use == "point":
        detail = f"{rule.statistic} {_fmt(cur.value)} vs baseline {_fmt(base.value)}"
    else:
        detail = f"95% CI [{_fmt(cur.ci_low)}, {_fmt(cur.ci_high)}] vs baseline [{_fmt(base.ci_low)}, {_fmt(base.ci_high)}]"
    verdict = f"worse by {_fmt(worsening)} > tolerance {rule.tolerance:g}" if failed else f"worse by {_fmt(max(worsening, 0.0))} <= tolerance {rule.tolerance:g}"
    if rule.use == "ci":
        mean = f"mean {'worse' if change > 0 else 'better'} by {_fmt(abs(change))}"
        bound = f"worse by up to {_fmt(worsening)}" if worsening > 0 else "not worse"
        verdict = f"{mean}, {bound} within the 95% CI of the difference {'>' if failed else '<='} tolerance {rule.tolerance:g}"
    if rule.use == "ci-lenient" and not failed:
        verdict = "CIs do not separate by more than the tolerance"
    if cur.n != base.n:
        verdict += f" (n {cur.n} vs baseline n {base.n}: compare at equal n)"
    return Check(
        status="fail" if failed else "pass", attack=_attack_label(cur.attack), message=f"{detail}: {verdict}",
        value=cur.value, ci_low=_finite(cur.ci_low), ci_high=_finite(cur.ci_high), baseline_run=base_run.id,
        baseline_attack=_attack_label(base.attack), baseline_value=base.value, baseline_ci_low=_finite(base.ci_low),
        baseline_ci_high=_finite(base.ci_high), **common,  # type: ignore[arg-type]
    )


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


UNDEFENDED = "none"


def _undefended_accuracy(run: RunIdentity, *sources: _Cells | None) -> tuple[float, int, str] | None:
    """Mean accuracy of the undefended runs at the run's (dataset, arch, cut): in the first source
    that has any; (mean, how many runs, where) or None."""
    for cells in sources:
        if cells is None:
            continue
        peers = [r for r in cells.runs if r.defense == UNDEFENDED and (r.dataset, r.arch, r.cut) == (run.dataset, run.arch, run.cut)]
        values = [float(cells.cell(r, MODEL_LEVEL, "accuracy").values[0]) for r in peers if cells.has(r, MODEL_LEVEL, "accuracy")]
        if values:
            return float(np.mean(values)), len(values), cells.what
    return None


def _check_decision(rule: DecisionRule, run: RunIdentity, cells: _Cells, base_cells: _Cells | None) -> Check:
    """The run's accuracy is at most ``rule.accuracy_budget`` points below the undefended model's."""
    common = dict(rule=rule.name, kind="decision", run=run.id, run_config=run.describe(), metric="accuracy", attack=MODEL, statistic="mean", use="point", limit=rule.limit(), description=rule.description)
    if not cells.has(run, MODEL_LEVEL, "accuracy"):
        return Check(status="fail", message=f"no accuracy rows in the results (run {run.id}): cannot check", **common)  # type: ignore[arg-type]
    accuracy = float(cells.cell(run, MODEL_LEVEL, "accuracy").values[0])
    reference = _undefended_accuracy(run, cells, base_cells)
    if reference is None:
        where = "the results or the baseline" if base_cells is not None else "the results (and no --baseline given)"
        return Check(status="fail", value=accuracy, message=f"no undefended run ({run.arch} cut {run.cut}, {run.dataset}) in {where} to measure the budget against: cannot check", **common)  # type: ignore[arg-type]
    undefended, count, where = reference
    drop = (undefended - accuracy) * 100
    failed = drop > rule.accuracy_budget + 1e-9
    shown = f"{abs(drop):.2f} points {'below' if drop >= 0 else 'above'} the undefended {_fmt(undefended)} (mean of {count} run{'s' if count != 1 else ''} in the {where})"
    verdict = f"more than the {rule.accuracy_budget:g}-point budget" if failed else f"within the {rule.accuracy_budget:g}-point budget"
    return Check(status="fail" if failed else "pass", value=accuracy, message=f"accuracy {_fmt(accuracy)} is {shown}: {verdict}", baseline_value=undefended, **common)  # type: ignore[arg-type]


def check_policy(policy: Policy, results: Results, baseline: Results | None = None, *, results_name: str = "results", baseline_name: str | None = None) -> PolicyVerdict:
    """Apply every rule of ``policy`` to every run of ``results`` (baseline rules against ``baseline``).

    An empty results table (or an empty baseline, when one is given) raises GateError: a gate
    does not pass on no evidence. Baseline rules without ``baseline`` are failed checks.
    """
    cells = _Cells(results.table, "results")
    if not cells.runs:
        raise GateError(f"results {results_name} have no rows (no runs): there is nothing to check, and a gate never passes on no evidence")
    base_cells = _Cells(baseline.table, "baseline results") if baseline is not None else None
    if base_cells is not None and not base_cells.runs:
        raise GateError(f"baseline {baseline_name or 'results'} have no rows (no runs): there is nothing to compare against")
    pairs: dict[str, RunIdentity] = {}
    notes: tuple[str, ...] = ()
    if base_cells is not None and policy.baseline:
        pairs, notes = match_baseline(cells.runs, base_cells.runs)
    checks: list[Check] = []
    for run in cells.runs:
        checks.extend(_check_threshold(rule, run, cells) for rule in policy.rules)
        checks.extend(_check_baseline(rule, run, cells, pairs.get(run.id), base_cells) for rule in policy.baseline)
        if policy.decision is not None:
            checks.append(_check_decision(policy.decision, run, cells, base_cells))
    return PolicyVerdict(checks=tuple(checks), policy=policy.source, results=results_name, baseline=baseline_name, notes=notes)


def run_gate(results_dir: str | os.PathLike[str], policy_path: str | os.PathLike[str] | Policy, baseline_dir: str | os.PathLike[str] | None = None) -> PolicyVerdict:
    """Load the policy, the results folder and the optional baseline folder, and check them.

    ``policy_path`` may also be a :class:`Policy` (e.g. :data:`DEFAULT_POLICY`) to check as it is."""
    policy = policy_path if isinstance(policy_path, Policy) else load_policy(policy_path)
    results = Results.load(results_dir)
    baseline = Results.load(baseline_dir) if baseline_dir is not None else None
    return check_policy(policy, results, baseline, results_name=str(results_dir), baseline_name=None if baseline_dir is None else str(baseline_dir))


# ---------------------------------------------------------------------------------------------
# Rendering: terminal table, JSON, JUnit XML, Markdown


_SYMBOL = {"pass": "PASS", "fail": "FAIL", "skip": "SKIP"}
_EMOJI = {"pass": "✅ pass", "fail": "❌ fail", "skip": "⏭️ skip"}


def _ci_text(check: Check) -> str:
    return "-" if check.ci_low is None or check.ci_high is None else f"[{_fmt(check.ci_low)}, {_fmt(check.ci_high)}]"


def _rows(verdict: PolicyVerdict, status: Mapping[str, str]) -> list[list[str]]:
    return [
        [status[c.status], c.rule, c.run, c.attack, c.statistic, "-" if c.value is None else _fmt(c.value), _ci_text(c), c.limit, c.message]
        for c in verdict.checks
    ]


_HEADER = ["status", "rule", "run", "attack", "statistic", "value", "95% CI of mean", "limit", "detail"]


def _summary_line(verdict: PolicyVerdict) -> str:
    n = verdict.counts()
    state = "PASSED" if verdict.passed else "FAILED"
    nothing = " (nothing was checked, so nothing passes)" if not verdict.checks else ""
    return f"{state}: {n['fail']} failed, {n['pass']} passed, {n['skip']} skipped of {len(verdict.checks)} checks{nothing}"


def render_table(verdict: PolicyVerdict) -> str:
    """A plain-text table for the terminal, one line per check, then notes and the verdict."""
    rows = [[printable(cell) for cell in row] for row in (_HEADER, *_rows(verdict, _SYMBOL))]  # names from files stay text
    widths = [max(len(r[i]) for r in rows) for i in range(len(_HEADER) - 1)]
    head = f"splitleak gate: {verdict.results} against {verdict.policy}" + (f" (baseline {verdict.baseline})" if verdict.baseline else "")
    lines = [printable(head)]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)) + "  " + r[-1] for r in rows]
    lines += [f"note: {printable(n)}" for n in verdict.notes]
    lines.append(_summary_line(verdict))
    return "\n".join(lines) + "\n"


def verdict_to_dict(verdict: PolicyVerdict) -> dict[str, Any]:
    """A JSON-ready dict: the verdict, counts, notes and every check (NaN as null)."""
    return {
        "passed": verdict.passed,
        "exit_code": verdict.exit_code,
        "counts": verdict.counts(),
        "policy": verdict.policy,
        "results": verdict.results,
        "baseline": verdict.baseline,
        "notes": list(verdict.notes),
        "checks": [asdict(c) for c in verdict.checks],
    }


def render_json(verdict: PolicyVerdict) -> str:
    return json.dumps(verdict_to_dict(verdict), indent=2, allow_nan=False) + "\n"


def render_junit(verdict: PolicyVerdict) -> str:
    """JUnit XML: one <testcase> per rule and run, failures as <failure>, skips as <skipped>."""
    n = verdict.counts()
    attrs = {"tests": str(len(verdict.checks)), "failures": str(n["fail"]), "errors": "0", "skipped": str(n["skip"])}
    root = ET.Element("testsuites", {"name": "splitleak gate", **attrs})
    suite = ET.SubElement(root, "testsuite", {"name": f"splitleak gate: {verdict.results}", **attrs})
    properties = ET.SubElement(suite, "properties")
    for key in ("policy", "results", "baseline"):
        ET.SubElement(properties, "property", {"name": key, "value": str(getattr(verdict, key) or "")})
    for check in verdict.checks:
        case = ET.SubElement(suite, "testcase", {"classname": f"splitleak.gate.{check.run}", "name": f"{check.rule} [{check.run}]", "time": "0"})
        text = f"{check.message}\nrun {check.run}: {check.run_config}\nmetric {check.metric}, attack {check.attack}, statistic {check.statistic}, limit {check.limit}"
        if check.description:
            text += f"\n{check.description}"
        if check.status == "fail":
            ET.SubElement(case, "failure", {"message": check.message, "type": check.kind}).text = text
        elif check.status == "skip":
            ET.SubElement(case, "skipped", {"message": check.message})
        else:
            ET.SubElement(case, "system-out").text = text
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


_MARKDOWN_ACTIVE = re.compile(r"([\\`*_\[\]<>&|~])")  # what could open HTML, a link, emphasis or a cell


def _md(text: str) -> str:
    """Text shown as text: every character that could start HTML (`<`, `&`), a link, emphasis, code
    or a table cell is backslash-escaped (CommonMark), line breaks become spaces."""
    return _MARKDOWN_ACTIVE.sub(r"\\\1", " ".join(str(text).splitlines()))


def _code(text: str) -> str:
    """`text` as a code span (no HTML or Markdown inside one), fenced by more backticks than it holds."""
    text = " ".join(str(text).splitlines())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def render_markdown(verdict: PolicyVerdict) -> str:
    """A Markdown summary (for $GITHUB_STEP_SUMMARY): verdict line, table, notes."""
    head = "✅ passed" if verdict.passed else "❌ failed"
    sources = f"Results {_code(verdict.results)}, policy {_code(verdict.policy)}" + (f", baseline {_code(verdict.baseline)}." if verdict.baseline else ", no baseline.")
    lines = [f"## splitleak privacy gate: {head}", "", f"{_summary_line(verdict)}. {sources}", ""]
    lines += ["| " + " | ".join(_HEADER) + " |", "|" + "---|" * len(_HEADER)]
    lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in _rows(verdict, _EMOJI)]
    runs = {c.run: c.run_config for c in verdict.checks}
    lines += ["", "Runs: " + "; ".join(f"{_code(run)} {_md(config)}" for run, config in runs.items())]
    lines += [f"- note: {_md(n)}" for n in verdict.notes]
    return "\n".join(lines) + "\n"


def write_starter_policy(path: str | os.PathLike[str]) -> Path:
    """Write :data:`STARTER_POLICY` to ``path`` atomically; never overwrite an existing file."""
    path = Path(path)
    if path.exists():
        raise GateError(f"{path} already exists; not overwriting it (remove it or pass --policy ANOTHER_PATH)")
    write_text_atomic(path, STARTER_POLICY)
    return path
