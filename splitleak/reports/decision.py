"""The decision: which defense and setting to ship for an accuracy budget, with seeds as an axis.

Runs that differ only in the training seed (same dataset, architecture, cut, defense and
parameters, the rest of the training config, the data config and the evaluation) form one
*setting*. Per setting: its seeds, the mean task accuracy and the mean worst-case leakage (the
per-image worst case over the attacks, rows ``attack = "worst"``; results without them: the attack
that leaks most) over the seeds, each with a 95% t-interval over the seeds' means; a setting with
one seed keeps that run's own interval (Wilson for accuracy, the bootstrap over test images for
leakage) and says "1 seed".

The rule (docs/report.md, "The decision"), per (dataset, arch, cut): the baseline is the
undefended setting there (the one with most seeds, then the most accurate); a setting is feasible
when its mean accuracy is at least the baseline's minus the budget (points / 100); the choice is
the feasible setting with the lowest worst-case leakage by the primary metric (SSIM, lower leaks
less), ties to the more accurate. Whether the choice is private is the report's verdict rule
(`splitleak.policy.VERDICT_RULE`: mean SSIM <= 0.3 through its 95% CI) applied to the seed
interval. No torch, no matplotlib: the page draws from these records (decision_page.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from splitleak.cuts import Cut
from splitleak.dataspec import LOCATION_FIELDS
from splitleak.errors import InputError
from splitleak.metrics.specs import METRICS, PRIMARY_METRIC
from splitleak.policy import SSIM_UNRECOGNISABLE, VERDICT_RULE, WORST, Measure, threshold_failures
from splitleak.reports.runs import Run
from splitleak.reports.tables import attack_summary, wilson_interval

DEFAULT_ACCURACY_BUDGET = 3.0
"""Accuracy points a defense may cost below the undefended model (the decision page's default)."""

UNDEFENDED = "none"
_LEAKAGE = {PRIMARY_METRIC: "ssim", "lpips": "lpips", "semantic_accuracy": "semantic"}


def check_budget(budget: float) -> float:
    """The accuracy budget in points, checked (InputError: one line)."""
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget) or not 0 <= budget <= 100:
        raise InputError(f"the accuracy budget is in points between 0 and 100, got {budget!r}")
    return float(budget)


# ---------------------------------------------------------------------------------------------
# Estimates over seeds


@dataclass(frozen=True)
class Estimate:
    """A mean with its 95% interval; ``basis`` says what the interval is over ("seeds": a t-interval
    over the seeds' means; "images": one run's own interval; "" when there is no value)."""

    value: float
    low: float
    high: float
    n: int  # seeds with a value
    basis: str

    @property
    def known(self) -> bool:
        return math.isfinite(self.value)

    def text(self, digits: int = 2) -> str:
        """'0.60 [0.55, 0.65]' ('n/a' without a value, no interval without one)."""
        if not self.known:
            return "n/a"
        ci = f" [{self.low:.{digits}f}, {self.high:.{digits}f}]" if math.isfinite(self.low) and math.isfinite(self.high) else ""
        return f"{self.value:.{digits}f}{ci}"


MISSING = Estimate(math.nan, math.nan, math.nan, 0, "")


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval of the mean of ``values`` (NaN bounds for fewer than 2)."""
    data = np.asarray(values, dtype=np.float64)
    mean = float(data.mean()) if len(data) else math.nan
    if len(data) < 2:
        return mean, math.nan, math.nan
    from scipy.stats import t as student_t  # scipy comes with scikit-image / scikit-learn

    half = float(student_t.ppf(0.5 + confidence / 2, len(data) - 1)) * float(data.std(ddof=1)) / math.sqrt(len(data))
    return mean, mean - half, mean + half


def over_seeds(per_seed: Sequence[Estimate], bounds: tuple[float, float] = (-math.inf, math.inf)) -> Estimate:
    """The mean over the seeds that have a value, with a t-interval clipped to the metric's range
    (`bounds`: two seeds give t = 12.7); one seed keeps its own interval."""
    known = [e for e in per_seed if e.known]
    if not known:
        return MISSING
    if len(known) == 1:
        only = known[0]
        return Estimate(only.value, only.low, only.high, 1, "images")
    mean, low, high = t_interval([e.value for e in known])
    return Estimate(mean, max(low, bounds[0]), min(high, bounds[1]), len(known), "seeds")


# ---------------------------------------------------------------------------------------------
# Per run, then per setting


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def train_seed(run: Run) -> int | None:
    """The run's training seed as its checkpoint recorded it (None if unknown)."""
    meta = run.meta
    if meta is None:
        return None
    if meta.seed is not None:
        return meta.seed
    seed = (meta.train or {}).get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def setting_key(run: Run) -> str:
    """What makes runs one setting: everything recorded about the model and its evaluation except
    the training seed (and where files were, and the device). A short hash."""
    meta = run.meta
    train = {k: v for k, v in ((meta.train if meta else None) or {}).items() if k not in ("seed", "device")}
    data = {k: v for k, v in ((meta.data if meta else None) or {}).items() if k not in LOCATION_FIELDS}
    evaluation = {k: v for k, v in run.provenance.evaluation.items() if k not in ("device", "lpips_weights")}
    if isinstance(evaluation.get("attacks"), list):
        evaluation["attacks"] = sorted(evaluation["attacks"])
    identity = [str(run.first("dataset")), str(run.first("arch")), run.cut, run.defense, run.params, train, data, evaluation, int(run.first("seed"))]
    return hashlib.sha256(_canonical(identity).encode()).hexdigest()[:10]


def _leak(summary: pd.DataFrame, metric: str) -> tuple[Estimate, str]:
    """The run's worst-case mean of ``metric``: the per-image worst case, else the worst attack."""
    rows = summary[(summary["metric"] == metric) & summary["mean"].notna()]
    if rows.empty:
        return MISSING, ""
    if (rows["attack"] == WORST).any():
        row = rows[rows["attack"] == WORST].iloc[0]
    else:
        up = METRICS[metric].leakage_direction == "higher"
        row = rows.iloc[int(rows["mean"].to_numpy().argmax() if up else rows["mean"].to_numpy().argmin())]
    return Estimate(float(row["mean"]), float(row["ci_low"]), float(row["ci_high"]), 1, "images"), str(row["attack"])


def _accuracy(run: Run) -> Estimate:
    rows = run.table[(run.table["attack"] == "") & (run.table["metric"] == "accuracy")]
    if rows.empty:
        return MISSING
    value, n = float(rows["value"].iloc[0]), int(rows["n"].iloc[0])
    low, high = wilson_interval(value, n)
    return Estimate(value, low, high, 1, "images")


@dataclass(frozen=True)
class Setting:
    """One model configuration over its training seeds, with estimates over the seeds."""

    key: str
    label: str  # the defense's label and the cut, e.g. "NoPeek α=20, cut 2"
    dataset: str
    arch: str
    cut: Cut
    defense: str
    defense_label: str
    strength: float
    rank: int
    runs: tuple[str, ...]
    seeds: tuple[int | None, ...]
    accuracy: Estimate
    ssim: Estimate
    lpips: Estimate
    semantic: Estimate
    attacks: tuple[str, ...]  # the attacks that ran (on every seed's run)
    releases: tuple[int, ...]  # releases per image the attacker combined (1: a plain passive attacker)
    registered: Mapping[str, Mapping[str, Any]]  # attacks registered where it was evaluated (from provenance)
    tag: str = ""  # what tells it apart from settings of the same label, e.g. "[6 attacks]" (else empty)

    @property
    def group(self) -> tuple[str, str, Cut]:
        return (self.dataset, self.arch, self.cut)

    @property
    def n_seeds(self) -> int:
        return len(self.runs)

    def seeds_text(self) -> str:
        return "1 seed" if self.n_seeds == 1 else f"{self.n_seeds} seeds"


def _releases(run: Run) -> int:
    value = run.provenance.adaptive.get("releases", 1) if run.provenance.adaptive else 1
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else 1


def _setting(key: str, runs: Sequence[Run]) -> Setting:
    first = runs[0]
    summaries = [attack_summary(r) for r in runs]
    leak = {metric: [_leak(s, metric)[0] for s in summaries] for metric in _LEAKAGE}
    attacks = [a for a in first.attacks if all(a in r.attacks for r in runs)]
    registered = first.provenance.environment.get("registered_attacks")
    label = f"{first.defense_label}, cut {first.cut}"
    return Setting(
        key=key, label=label, dataset=str(first.first("dataset")), arch=str(first.first("arch")), cut=first.cut,
        defense=first.defense, defense_label=first.defense_label, strength=first.strength, rank=first.rank,
        runs=tuple(r.run for r in runs), seeds=tuple(train_seed(r) for r in runs),
        accuracy=over_seeds([_accuracy(r) for r in runs], (0.0, 1.0)), ssim=over_seeds(leak[PRIMARY_METRIC], (-1.0, 1.0)),
        lpips=over_seeds(leak["lpips"], (0.0, math.inf)), semantic=over_seeds(leak["semantic_accuracy"], (0.0, 1.0)),
        attacks=tuple(attacks), releases=tuple(sorted({_releases(r) for r in runs})),
        registered=dict(registered) if isinstance(registered, Mapping) else {},
    )


def group_settings(runs: Sequence[Run]) -> tuple[Setting, ...]:
    """The runs grouped into settings (runs that differ only in the training seed), in run order;
    each setting's runs are ordered by seed."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(setting_key(run), []).append(run)
    ordered = [sorted(members, key=lambda r: (train_seed(r) is None, train_seed(r) or 0, r.run)) for members in groups.values()]
    settings = [_setting(key, members) for key, members in zip(groups, ordered)]
    return _unique_labels(settings)


def _unique_labels(settings: list[Setting]) -> tuple[Setting, ...]:
    """Labels with the architecture / dataset where those vary, and the key where still equal."""
    def varies(attr: str) -> bool:
        return len({getattr(s, attr) for s in settings}) > 1

    out = []
    for s in settings:
        label = ", ".join([s.label, *([s.arch] if varies("arch") else []), *([s.dataset] if varies("dataset") else [])])
        out.append(dataclasses.replace(s, label=label))
    same: dict[str, list[Setting]] = {}
    for s in out:
        same.setdefault(s.label, []).append(s)

    def tag(s: Setting) -> str:
        """What tells a setting apart from others of the same label: what attacked it where that
        differs (a study extended by more attacks on some of its runs), else the setting's key."""
        group = same[s.label]
        if len(group) == 1:
            return ""
        if len({g.attacks for g in group}) == len(group):
            return f"[{len(s.attacks)} attack{'s' if len(s.attacks) != 1 else ''}]"
        return f"[{s.key[:6]}]"

    tagged = [(s, tag(s)) for s in out]
    return tuple(dataclasses.replace(s, label=f"{s.label} {t}" if t else s.label, tag=t) for s, t in tagged)


# ---------------------------------------------------------------------------------------------
# The decision


def pareto_front(leakage: np.ndarray, utility: np.ndarray) -> np.ndarray:
    """Mask of points no other point beats: at most as much leakage and at least as much utility,
    strictly better in one. NaN points are never on the front."""
    leakage, utility = np.asarray(leakage, dtype=float), np.asarray(utility, dtype=float)
    ok = np.isfinite(leakage) & np.isfinite(utility)
    no_more = (leakage[None, :] <= leakage[:, None]) & (utility[None, :] >= utility[:, None])  # [i, j]: j at least as good as i
    better = (leakage[None, :] < leakage[:, None]) | (utility[None, :] > utility[:, None])
    dominated = (no_more & better & ok[None, :]).any(axis=1)
    return ok & ~dominated


def _leaks_up() -> bool:
    return METRICS[PRIMARY_METRIC].leakage_direction == "higher"


def leakage_key(setting: Setting) -> float:
    """The primary metric's worst case as 'higher leaks more' (NaN when unknown)."""
    return setting.ssim.value if _leaks_up() else -setting.ssim.value


def privacy(setting: Setting) -> str:
    """The verdict rule on the setting's seed interval: unrecognisable, borderline, reconstructable
    or unknown (the report's verdict categories)."""
    if not setting.ssim.known:
        return "unknown"
    measure = Measure(WORST, setting.ssim.value, setting.ssim.low, setting.ssim.high, setting.ssim.n)
    point = dataclasses.replace(VERDICT_RULE, use="point")
    if threshold_failures(point, measure):
        return "reconstructable"
    has_ci = math.isfinite(setting.ssim.low) and math.isfinite(setting.ssim.high)
    if not has_ci or threshold_failures(VERDICT_RULE, measure):
        return "borderline"
    return "unrecognisable"


@dataclass(frozen=True)
class Decision:
    """The decision for one (dataset, arch, cut): its settings, which are feasible and on the
    Pareto front, the baseline, the choice and the recommendation in words."""

    budget: float  # accuracy points
    group: tuple[str, str, int]
    settings: tuple[Setting, ...]
    feasible: tuple[bool, ...]
    front: tuple[bool, ...]
    baseline: Setting | None
    choice: Setting | None
    verdict: str  # privacy(choice), or "none"
    paragraph: str
    caveats: tuple[str, ...]

    @property
    def floor(self) -> float:
        """The lowest feasible accuracy (NaN without a baseline)."""
        return self.baseline.accuracy.value - self.budget / 100 if self.baseline is not None else math.nan


def _baseline(settings: Sequence[Setting]) -> Setting | None:
    undefended = [s for s in settings if s.defense == UNDEFENDED and s.accuracy.known]
    if not undefended:
        return None
    return max(undefended, key=lambda s: (s.n_seeds, s.accuracy.value))


def _choose(settings: Sequence[Setting], feasible: Sequence[bool]) -> Setting | None:
    candidates = [s for s, ok in zip(settings, feasible) if ok and s.ssim.known]
    if not candidates:
        return None
    return min(candidates, key=lambda s: (leakage_key(s), -s.accuracy.value))


def decide(settings: Sequence[Setting], budget: float = DEFAULT_ACCURACY_BUDGET) -> tuple[Decision, ...]:
    """One decision per (dataset, arch, cut), in the settings' order."""
    budget = check_budget(budget)
    groups: dict[tuple[str, str, int], list[Setting]] = {}
    for s in settings:
        groups.setdefault(s.group, []).append(s)
    return tuple(_decide_group(group, members, budget) for group, members in groups.items())


def _decide_group(group: tuple[str, str, int], settings: list[Setting], budget: float) -> Decision:
    baseline = _baseline(settings)
    if baseline is None:
        feasible = [False] * len(settings)
    else:
        floor = baseline.accuracy.value - budget / 100
        feasible = [s.accuracy.known and s.accuracy.value >= floor - 1e-12 for s in settings]
    leak = np.array([leakage_key(s) for s in settings], dtype=float)
    front = pareto_front(leak, np.array([s.accuracy.value for s in settings], dtype=float))
    choice = _choose(settings, feasible)
    verdict = privacy(choice) if choice is not None else "none"
    decision = Decision(budget, group, tuple(settings), tuple(feasible), tuple(bool(f) for f in front), baseline, choice, verdict, "", ())
    return dataclasses.replace(decision, paragraph=recommendation(decision), caveats=tuple(caveats(decision)))


# ---------------------------------------------------------------------------------------------
# In words


def _points(s: Setting, baseline: Setting) -> str:
    drop = (baseline.accuracy.value - s.accuracy.value) * 100
    if s is baseline:
        return "the undefended model"
    if abs(drop) < 0.05:
        return f"level with undefended {baseline.accuracy.value:.2f}"
    return f"{abs(drop):.1f} points {'below' if drop > 0 else 'above'} undefended {baseline.accuracy.value:.2f}"


def describe(s: Setting, baseline: Setting | None) -> str:
    """'NoPeek α=20: accuracy 0.80 [0.79, 0.82] (2.9 points below undefended 0.83), worst-case SSIM 0.60
    [0.55, 0.65] over 3 seeds'."""
    where = f" ({_points(s, baseline)})" if baseline is not None and s.accuracy.known else ""
    interval = f"over {s.n_seeds} seeds" if s.n_seeds > 1 else "over 1 seed (CI over test images)"
    return f"{s.defense_label}: accuracy {s.accuracy.text()}{where}, worst-case SSIM {s.ssim.text()} {interval}"


def _line() -> str:
    return f"SSIM < {SSIM_UNRECOGNISABLE:g}"


def _best_tradeoff(decision: Decision) -> Setting | None:
    """Beyond the choice: the front's setting that reaches the privacy line at the highest accuracy,
    else the front's least leaky setting (None when that is the choice itself)."""
    front = [s for s, on in zip(decision.settings, decision.front) if on]
    private = [s for s in front if privacy(s) == "unrecognisable"]
    pick = max(private, key=lambda s: s.accuracy.value) if private else (min(front, key=leakage_key) if front else None)
    return None if pick is decision.choice else pick


def _next_steps(decision: Decision) -> str:
    steps = [f"a deeper cut than {decision.group[2]} (He et al. 2019: deeper cuts leak less)"]
    choice = decision.choice
    if choice is not None and choice.defense != UNDEFENDED:
        same = [s.strength for s in decision.settings if s.defense == choice.defense and math.isfinite(s.strength)]
        if same and math.isfinite(choice.strength) and choice.strength >= max(same):
            steps.append(f"a stronger {choice.defense} setting than {choice.defense_label}, the strongest tried here")
        else:
            steps.append(f"a stronger {choice.defense} setting")
    else:
        steps.append("a stronger setting")
    steps.append("another defense")
    if any(s.n_seeds < 3 for s in decision.settings):
        steps.append("3 or more training seeds per setting")
    return "try " + ", ".join(steps[:-1]) + " or " + steps[-1] + "."


def _attacks(s: Setting) -> str:
    return ", ".join(s.attacks) if s.attacks else "no attack"


def recommendation(decision: Decision) -> str:
    """The plain-words paragraph of the decision page."""
    budget = f"{decision.budget:g} point{'s' if decision.budget != 1 else ''}"
    baseline, choice = decision.baseline, decision.choice
    if baseline is None:
        least = min((s for s in decision.settings if s.ssim.known), key=leakage_key, default=None)
        tail = f" The least leaky setting measured: {describe(least, None)}." if least is not None else ""
        return (f"No decision: there is no undefended model at cut {decision.group[2]} to measure the {budget} accuracy budget against. "
                f"Evaluate the same architecture without a defense (defense none) alongside these models.{tail}")
    if choice is None:
        return (f"No setting within {budget} of the undefended model's accuracy {baseline.accuracy.value:.2f} has a worst-case SSIM "
                f"(no SSIM rows). Next: {_next_steps(decision)}")
    head = "Ship" if choice.defense != UNDEFENDED else "No defense within the budget leaks less than the undefended model; keep"
    text = f"{head} {describe(choice, baseline)} and the attacks {_attacks(choice)}; "
    verdict = decision.verdict
    if verdict == "unrecognisable":
        return text + f"unrecognisable ({_line()}, read through its 95% CI) to these attacks at these budgets."
    if verdict == "borderline":
        text += f"borderline: its mean is under {SSIM_UNRECOGNISABLE:g} but its 95% CI reaches above. "
    else:
        text += f"{verdict}: no setting within {budget} reaches {_line()}. "
    best = _best_tradeoff(decision)
    if best is not None:
        text += f"Best trade-off beyond it: {describe(best, baseline)} ({privacy(best)}). "
    return text + "Next: " + _next_steps(decision)


def caveats(decision: Decision) -> list[str]:
    """What the decision does not cover: attacks not run, threat models, releases, single seeds."""
    out = []
    ran = sorted({a for s in decision.settings for a in s.attacks})
    registered = {}
    for s in decision.settings:
        registered.update(s.registered)
    if registered:
        missing = [name for name in sorted(registered) if name not in ran]
        training = [name for name in missing if (registered[name] or {}).get("trained_by")]
        passive = [name for name in missing if name not in training]
        if passive:
            out.append(f"Registered attacks not run here: {', '.join(passive)}; the verdict holds against {', '.join(ran) or 'no attack'} only.")
        for name in training:
            server = registered[name].get("trained_by")
            out.append(f"{name}: its threat model is a malicious server during training (the {server} server); no passive evaluation covers it.")
    else:
        out.append(f"The results do not record which attacks were registered; the verdict holds against {', '.join(ran) or 'no attack'} only.")
    partial = [name for name in ran if not all(name in s.attacks for s in decision.settings)]
    if partial:
        out.append(f"Not every setting faced the same attacks: {', '.join(partial)} ran on some settings only; their worst cases are over more attacks than the others'.")
    releases = sorted({r for s in decision.settings for r in s.releases})
    if releases == [1]:
        out.append("The attacker saw one release of each image; against a randomised defense an adaptive attacker combining several leaks more (docs/defenses.md).")
    elif releases:
        out.append(f"The attacker combined {'/'.join(map(str, releases))} releases of each image (adaptive attacker).")
    single = [s.label for s in decision.settings if s.n_seeds == 1]
    if single:
        out.append(f"1 seed: {'; '.join(single)}: intervals over test images only, not over retraining (NoPeek swings widely between seeds).")
    out.append("Pixels only: an unrecognisable reconstruction can still give its label away (semantic accuracy in the table).")
    return out


# ---------------------------------------------------------------------------------------------
# As a table (the page, the HTML and decision.csv)


DECISION_COLUMNS = (
    "dataset", "arch", "cut", "label", "defense", "strength", "n_seeds", "seeds", "runs",
    "accuracy", "accuracy_low", "accuracy_high", "ssim", "ssim_low", "ssim_high", "ci_basis",
    "lpips", "semantic_accuracy", "baseline", "feasible", "pareto", "choice", "privacy", "budget",
)


def decision_table(decisions: Sequence[Decision]) -> pd.DataFrame:
    """One row per setting of every decision (the page's table, also written as CSV)."""
    rows = []
    for d in decisions:
        for s, ok, on in zip(d.settings, d.feasible, d.front):
            rows.append({
                "dataset": s.dataset, "arch": s.arch, "cut": s.cut, "label": s.label, "defense": s.defense, "strength": s.strength,
                "n_seeds": s.n_seeds, "seeds": " ".join("?" if x is None else str(x) for x in s.seeds), "runs": " ".join(s.runs),
                "accuracy": s.accuracy.value, "accuracy_low": s.accuracy.low, "accuracy_high": s.accuracy.high,
                "ssim": s.ssim.value, "ssim_low": s.ssim.low, "ssim_high": s.ssim.high, "ci_basis": s.ssim.basis,
                "lpips": s.lpips.value, "semantic_accuracy": s.semantic.value, "baseline": s is d.baseline,
                "feasible": bool(ok), "pareto": bool(on), "choice": s is d.choice, "privacy": privacy(s), "budget": d.budget,
            })
    return pd.DataFrame(rows, columns=list(DECISION_COLUMNS))


__all__ = [
    "DEFAULT_ACCURACY_BUDGET", "Decision", "Estimate", "Setting", "caveats", "check_budget", "decide", "decision_table",
    "group_settings", "over_seeds", "pareto_front", "privacy", "recommendation", "setting_key", "t_interval",
]
