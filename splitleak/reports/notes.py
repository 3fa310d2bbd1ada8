"""Method notes: what was measured on which data with which budgets and software, as text blocks
(rendered to pages by `notes_pages`, to HTML by `splitleak.reports.html`)."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from matplotlib.figure import Figure

from splitleak import dp
from splitleak.errors import InputError
from splitleak.memory import memory_text
from splitleak.metrics.specs import METRICS
from splitleak.policy import SSIM_UNRECOGNISABLE
from splitleak.reports.canvas import CONTENT_BOTTOM, CONTENT_TOP, MARGIN, page, text_at
from splitleak.reports.runs import Run
from splitleak.reports.tables import chance_attacks
from splitleak.timing import stages_line


@dataclass(frozen=True)
class Block:
    """A heading, a paragraph or a table (first row = header) of the method notes."""

    kind: Literal["heading", "text", "table"]
    text: str = ""
    rows: tuple[tuple[str, ...], ...] = ()


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Block:
    return Block("table", rows=(tuple(header), *(tuple("" if v is None else str(v) for v in row) for row in rows)))


def _inline(values: Mapping[str, Any]) -> str:
    """{'epochs': 10, 'lr': 0.001} -> 'epochs 10, lr 0.001' (floats to 4 significant digits)."""
    parts = []
    for key, value in sorted(values.items()):
        shown = f"{value:.4g}" if isinstance(value, float) else json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        parts.append(f"{key} {shown}")
    return ", ".join(parts)


def _known(value: Any) -> Any:
    """A recorded value, or '?' when it is unknown."""
    return "?" if value is None else value


def _data_blocks(runs: Sequence[Run]) -> list[Block]:
    rows = []
    for r in runs:
        meta, data = r.meta, r.provenance.data
        shape = "x".join(str(s) for s in meta.input_spec.shape) if meta is not None else "?"
        value_range = str(list(meta.input_spec.value_range)) if meta is not None else "?"
        dcor = r.table[(r.table["attack"] == "") & (r.table["metric"] == "dcor")]
        rows.append((
            r.label, r.first("dataset"), shape, value_range, _known(meta and meta.train_size),
            f"{data.get('aux_size', '?')} of {data.get('aux_pool', '?')}", _known(meta and meta.test_size),
            data.get("test_size", "?"), int(dcor["n"].iloc[0]) if len(dcor) else "", data.get("split_seed", "?"),
        ))
    header = ("model", "dataset", "input CxHxW", "value range", "train", "aux (attacker)", "test (accuracy at training)", "test (scored)", "dCor n", "split seed")
    return [
        Block("heading", "Data and splits"),
        Block("text", "Train, aux and test are disjoint: the model trains on train, the attacker owns aux (its auxiliary data), "
              "and the attacks are scored on the first test images, which neither saw."),
        _table(header, rows),
    ]


def _checkpoint_blocks(runs: Sequence[Run]) -> list[Block]:
    rows, hashes = [], []
    for r in runs:
        train = (r.meta.train if r.meta is not None else None) or {}
        accuracy = r.meta.test_accuracy if r.meta is not None else None
        rows.append((
            r.run, r.label, r.first("arch"), r.cut, r.first("defense_params"),
            _inline({k: train[k] for k in ("epochs", "batch_size", "lr", "seed") if k in train}) or "?",
            f"{accuracy:.4f} (n={_known(r.meta and r.meta.test_size)})" if accuracy is not None else "?",
        ))
        hashes.append((r.run, r.first("checkpoint_sha256"), r.first("checkpoint"), r.source))
    return [
        Block("heading", "Checkpoints"),
        Block("text", "Two accuracies, both with the defense active: 'accuracy at training' was measured by splitleak train when "
              "training ended, on its test part (n here); the summary's and the decision page's accuracy is measured again by "
              "evaluate on the scored test images (n there). A defense that draws at inference (noise, dropout, dp-noise) draws "
              "afresh each time, so the two differ by sampling even on the same images; deterministic models agree on the same images."),
        _table(("run", "label", "arch", "cut", "defense params", "training", "accuracy at training (own draw)"), rows),
        _table(("run", "checkpoint sha256", "checkpoint path", "results from"), hashes),
        *(Block("text", line) for line in map(_guarantee, runs) if line),
        *(Block("text", f"{r.label}: trained elsewhere; {r.provenance.model['data_caveat']}.") for r in runs if r.provenance.model.get("data_caveat")),
    ]


def _guarantee(run: Run) -> str:
    """A dp-noise run's guarantee (docs/defenses.md#dp-noise), after its training epochs and after
    the releases its attacker combined; '' for other defenses."""
    if run.defense != "dp-noise":
        return ""
    epochs = ((run.meta.train if run.meta is not None else None) or {}).get("epochs")
    releases = run.provenance.adaptive.get("releases")
    params = run.params
    try:
        text = f"{run.run} ({run.defense_label}): {dp.guarantee(params, 1)}"
        if isinstance(epochs, int) and epochs > 1:
            text += f"; after its {epochs} training epochs (one release of each training image per epoch): (ε={dp.epsilon_after(params, epochs):.3g}, δ={params.get('delta', 1e-5):.3g})"
        if isinstance(releases, int) and releases > 1 and releases != epochs:
            text += f"; this attacker combined {releases} releases: (ε={dp.epsilon_after(params, releases):.3g})"
    except (InputError, TypeError, ValueError) as err:
        return f"{run.run}: no guarantee can be computed from the recorded dp-noise parameters {params} ({err})."
    return text + "."


def _attack_blocks(runs: Sequence[Run]) -> list[Block]:
    models: dict[str, Mapping[str, Any]] = {}
    budgets = []
    for r in runs:
        for attack, entry in sorted(r.provenance.attacks.items()):
            models.setdefault(attack, entry.get("threat_model") or {})
            budgets.append((
                r.label, attack, _inline(entry.get("budget") or {}), entry.get("aux_size", ""),
                f"{entry.get('fit_seconds', float('nan')):.1f}", f"{entry.get('reconstruct_seconds', float('nan')):.1f}",
            ))
    if not models:
        return [Block("heading", "Threat models and budgets"), Block("text", "No attack provenance recorded.")]

    def mark(flag: Any) -> str:
        return "yes" if flag else "-"

    threat = [
        (name, tm.get("summary", ""), mark(tm.get("encoder_weights")), mark(tm.get("query_access")), mark(tm.get("server_head")),
         f">= {tm.get('min_aux', 0)}" if tm.get("aux_data") else "-")
        for name, tm in sorted(models.items())
    ]
    return [
        Block("heading", "Threat models and budgets"),
        Block("text", "What each attacker has (docs/attacks.md): the client encoder's weights, query access to the client, the server's head, "
              "labelled or unlabelled auxiliary images from the same distribution."),
        _table(("attack", "threat model", "encoder weights", "queries", "server head", "aux data"), threat),
        _table(("model", "attack", "budget (and final loss)", "aux images", "fit s", "reconstruct s"), budgets),
    ]


def _attacker(adaptive: Mapping[str, Any]) -> str:
    """How many releases of each image the attacker combined (docs/defenses.md)."""
    if not adaptive:
        return "attacker sees one release per image"
    return f"adaptive attacker: {adaptive.get('releases', '?')} releases per image, combined by {adaptive.get('estimator', '?')}"


def _evaluation_blocks(runs: Sequence[Run]) -> list[Block]:
    keys = ("limit", "dcor_samples", "gallery", "semantic_epochs", "lpips", "seed", "device", "attack_params")
    groups: dict[str, list[str]] = {}
    for r in runs:
        evaluation = r.provenance.evaluation
        text = _inline({k: evaluation[k] for k in keys if k in evaluation}) or "not recorded"
        groups.setdefault(f"{text}; {_attacker(r.provenance.adaptive)}", []).append(r.run)
    semantic = []
    for r in runs:
        sc = r.provenance.semantic_classifier
        if sc.get("enabled"):
            chance = chance_attacks(r)
            semantic.append((r.label, sc.get("arch", ""), sc.get("epochs", ""), sc.get("train_size", ""), f"{sc.get('reference_accuracy', float('nan')):.3f}",
                             f"{sc['chance']:.3f}" if isinstance(sc.get("chance"), float) else "n/a", ", ".join(chance) or "none"))
        else:
            semantic.append((r.label, "off", "", "", sc.get("reason", "not recorded"), "", ""))
    return [
        Block("heading", "Evaluation settings"),
        _table(("settings", "runs"), [(text, " ".join(ids)) for text, ids in groups.items()]),
        Block("text", "Semantic leakage: the attacker trains its own classifier on its auxiliary images; a reconstruction leaks its label "
              "when that classifier labels it correctly. Reference = the classifier's accuracy on the same test images' originals: "
              "a reference, not a bound (a reconstruction can be recognised where its original is not, so an attack's semantic accuracy may "
              "exceed it within its CI). Chance = the most frequent true label's share among those images, what a constant prediction "
              "gets: garbage reconstructions that the classifier maps to one class score at most this. An attack is at chance when its "
              "semantic accuracy's 95% CI reaches down to chance."),
        _table(("model", "classifier", "epochs", "trained on", "reference accuracy / reason off", "chance", "attacks at chance"), semantic),
        *_time_blocks(runs),
    ]


def _time_blocks(runs: Sequence[Run]) -> list[Block]:
    """Where each run's time went, one line per run (wall time; results of earlier releases record none)."""
    lines = [f"{r.label}: " + " · ".join(filter(None, (stages_line(r.provenance.stages), memory_text(r.provenance.memory)))) for r in runs if r.provenance.stages]
    if not lines:
        return []
    return [Block("text", "Time per stage (wall clock; a sweep's model sums its cells; scorers' preparation includes training the semantic classifier) "
                          "and peak memory (the evaluating process's peak resident set; a sweep's model: its largest cell's):"),
            *(Block("text", line) for line in lines)]


def _metric_blocks(runs: Sequence[Run]) -> list[Block]:
    present = sorted({m for r in runs for m in r.table["metric"]})
    rows = [(name, METRICS[name].level, METRICS[name].leakage_direction if METRICS[name].kind == "leakage" else "(utility)", METRICS[name].description)
            for name in present if name in METRICS]
    lpips = sorted({str(r.provenance.lpips.get("definition", "")) for r in runs} - {""})
    reasons = sorted({str(r.provenance.lpips.get("reason", "")) for r in runs if not r.provenance.lpips.get("available", False)} - {""})
    blocks = [
        Block("heading", "Metrics and statistics"),
        _table(("metric", "level", "more leakage when", "definition"), rows),
    ]
    for text in lpips:
        blocks.append(Block("text", f"LPIPS as computed: {text}."))
    for text in reasons:
        blocks.append(Block("text", f"LPIPS not computed: {text}."))
    blocks.append(Block("text", (
        "Uncertainty: per-sample metrics are summarised by their mean with a 95% percentile-bootstrap CI (2,000 resamples, seed 0); "
        "dCor values carry the estimator's delete-a-group jackknife 95% CI; task accuracy has a 95% Wilson score interval "
        "computed by the report from the accuracy and n. Intervals cover sampling of test images for a fixed model and attack, "
        "not re-training with other seeds."
    )))
    blocks.append(Block("text", (
        f"Verdict rule (the default policy's, as splitleak gate checks it): reconstructable when the per-image worst case over the attacks "
        f"(each image's best reconstruction; for results of earlier releases, the leakiest attack) has a mean SSIM above {SSIM_UNRECOGNISABLE:g}; "
        f"borderline when it has not but its 95% CI upper bound reaches above {SSIM_UNRECOGNISABLE:g}; unrecognisable otherwise. He, Zhang, Lee (ACSAC 2019) call "
        f"reconstructions with SSIM below {SSIM_UNRECOGNISABLE:g} unrecognisable. Unrecognisable pixels can still leak labels: read the semantic accuracy too."
    )))
    return blocks


def _software_blocks(runs: Sequence[Run]) -> list[Block]:
    """One column per distinct environment (versions, commit, platform), then evaluation times."""
    groups: dict[str, tuple[dict[str, str], list[str]]] = {}
    times = []
    for r in runs:
        env = dict(r.provenance.environment)
        times.append((r.run, str(env.pop("timestamp", "") or "?")))
        packages = env.pop("packages", {}) or {}
        values = {k: str(v) for k, v in sorted(env.items())} | {name: str(v) for name, v in sorted(packages.items())}
        groups.setdefault(json.dumps(values), (values, []))[1].append(r.run)
    keys = list(dict.fromkeys(k for values, _ in groups.values() for k in values))
    blocks = [Block("heading", "Software")]
    if not keys:
        return blocks + [Block("text", "No software environment recorded."), _table(("run", "evaluated at (UTC)"), times)]
    if len(groups) == 1:
        header = ("setting / package", "version")
    else:
        header = ("setting / package", *(f"env {k + 1}" for k in range(len(groups))))
        blocks.append(Block("text", "; ".join(f"env {k + 1}: run(s) {', '.join(ids)}" for k, (_, ids) in enumerate(groups.values())) + "."))
    rows = [(key, *(values.get(key, "-") for values, _ in groups.values())) for key in keys]
    return blocks + [_table(header, rows), _table(("run", "evaluated at (UTC)"), times)]


def method_notes(runs: Sequence[Run], omitted: Sequence[str] = ()) -> list[Block]:
    """Everything needed to reproduce the numbers: data, checkpoints, attacks, metrics, software."""
    inputs = sorted({r.source for r in runs})
    blocks = [Block("heading", "Inputs"), Block("text", f"{len(runs)} checkpoint(s) from: " + "; ".join(inputs) + ".")]
    blocks += [Block("text", note) for note in omitted]
    blocks += _data_blocks(runs) + _checkpoint_blocks(runs) + _attack_blocks(runs)
    blocks += _evaluation_blocks(runs) + _metric_blocks(runs) + _software_blocks(runs)
    return blocks


# ---------------------------------------------------------------------------------------------
# Rendering to pages
# ---------------------------------------------------------------------------------------------

# Sizes read at screen resolution (a PDF viewer at page width): 9.5 pt text, 8 pt monospace tables.
FONT = {"heading": 12.0, "text": 9.5, "table": 8.0}
LINE = {"heading": 0.34, "text": 0.195, "table": 0.165, "gap": 0.09}  # inches per line
TEXT_CHARS = 160  # characters per line of 9.5 pt text across the content width (0.063 in each, measured)
MONO_CHARS = 150  # characters per line of 8 pt monospace (0.07 in each, measured)
MAX_CELL = 90  # wrap table cells longer than this
LAST_PAGE_MIN = 0.35  # a last page filled less than this is balanced with the one before


def _table_lines(rows: tuple[tuple[str, ...], ...]) -> list[str]:
    """A table as aligned monospace lines (header, rule, rows); long cells wrap in their column."""
    n = max(len(r) for r in rows)
    widths = [min(MAX_CELL, max(len(r[j]) if j < len(r) else 0 for r in rows)) for j in range(n)]
    budget = MONO_CHARS - 2 * (n - 1)
    while sum(widths) > budget and max(widths) > 12:  # shrink the widest column until it fits
        widths[widths.index(max(widths))] -= 1
    lines = []
    for k, row in enumerate(rows):
        wrapped = [textwrap.wrap(row[j], widths[j], break_long_words=True) or [""] if j < len(row) else [""] for j in range(n)]
        for i in range(max(len(w) for w in wrapped)):
            lines.append("  ".join((w[i] if i < len(w) else "").ljust(widths[j]) for j, w in enumerate(wrapped)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


Line = tuple[str, str, tuple[str, ...]]  # kind, text, the table header to repeat after a page break


def _lines(block: Block) -> list[Line]:
    if block.kind == "heading":
        return [("heading", block.text, ())]
    if block.kind == "text":
        return [("text", line, ()) for line in textwrap.wrap(block.text, TEXT_CHARS)] + [("gap", "", ())]
    table = _table_lines(block.rows)
    rule = table.index(next(line for line in table if line.startswith("-")))
    header = tuple(table[: rule + 1])
    return [("table", line, () if k <= rule else header) for k, line in enumerate(table)] + [("gap", "", ())]


def _keep(lines: Sequence[Line], k: int) -> float:
    """Extra height that must fit with line k: a heading keeps 4 lines, a table header 2 rows."""
    kind, _, header = lines[k]
    if kind == "heading":
        return 4 * LINE["table"]
    if kind == "table" and not header and (k == 0 or lines[k - 1][0] != "table"):
        following = 0
        while k + following + 1 < len(lines) and lines[k + following + 1][0] == "table" and not lines[k + following + 1][2]:
            following += 1
        return (following + 2) * LINE["table"]
    return 0.0


def _draw(fig: Figure, kind: str, text: str, y: float) -> None:
    if kind == "heading":
        text_at(fig, MARGIN, y - 0.08, text, fontsize=FONT["heading"], weight="bold", va="top")
    elif kind == "text":
        text_at(fig, MARGIN, y, text, fontsize=FONT["text"], va="top")
    elif kind == "table":
        text_at(fig, MARGIN, y, text, fontsize=FONT["table"], family="monospace", va="top")


Placed = tuple[str, str, float]  # kind, text, y (inches from the bottom)


def _flow(lines: Sequence[Line], floors: Sequence[float] = ()) -> list[list[Placed]]:
    """Lines placed on pages: page i ends above `floors[i]` (default CONTENT_BOTTOM); tables
    repeat their header on a new page, headings keep a few lines with them."""
    pages: list[list[Placed]] = []
    y = 0.0
    for k, (kind, text, header) in enumerate(lines):
        height = LINE[kind]
        floor = floors[len(pages) - 1] if 0 < len(pages) <= len(floors) else CONTENT_BOTTOM
        if not pages or y - height - _keep(lines, k) < floor:
            pages.append([])
            y = CONTENT_TOP
            if kind == "gap":
                continue
            for line in header:
                pages[-1].append(("table", line, y))
                y -= LINE["table"]
        pages[-1].append((kind, text, y))
        y -= height
    return pages


def _used(placed: Sequence[Placed]) -> float:
    """Inches of the page the placed lines fill."""
    return CONTENT_TOP - min(y for _, _, y in placed) + LINE["text"] if placed else 0.0


def notes_pages(blocks: Sequence[Block], subtitle: str) -> list[Figure]:
    """The notes flowed onto as many pages as they need; tables repeat their header. A nearly
    empty last page is balanced with the one before (the break moves up), same page count."""
    lines = [line for block in blocks for line in _lines(block)]
    flowed = _flow(lines)
    capacity = CONTENT_TOP - CONTENT_BOTTOM
    if len(flowed) >= 2 and _used(flowed[-1]) < LAST_PAGE_MIN * capacity:
        share = (_used(flowed[-2]) + _used(flowed[-1])) / 2
        floors = [CONTENT_BOTTOM] * (len(flowed) - 2) + [CONTENT_TOP - share]
        balanced = _flow(lines, floors)
        if len(balanced) == len(flowed):
            flowed = balanced
    figures = []
    for number, placed in enumerate(flowed):
        fig = page("Method notes" + (" (continued)" if number else ""), subtitle)
        for kind, text, y in placed:
            _draw(fig, kind, text, y)
        figures.append(fig)
    return figures
