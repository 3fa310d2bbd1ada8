"""splitleak sweep: grid files, dry runs, resumable local runs, failures, Ray (tiny digits grids)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

from splitleak.cli import main
from splitleak.results import Results, validate
from splitleak.sweep import GridError, load_grid, parse_grid, plan_sweep, run_sweep
from splitleak.sweep import jobs, runner
from splitleak.sweep.executors import InlineExecutor, ProcessExecutor, make_executor, usable_cores

SHARED = """
[data]
limit_train = 300
aux_pool = 200
limit_test = 60

[train]
epochs = 1
batch_size = 64

[evaluate]
limit = 60
lpips = "none"
semantic_epochs = 0
gallery = 4

[evaluate.attack_params.decoder]
epochs = 1
width = 16

[evaluate.attack_params.rmle]
steps = 3
"""

QUICK = (
    """
name = "quick"
[grid]
dataset = "digits"
cut = [1, 2]
seed = [0]
attack = ["decoder"]

[[defense]]
name = "nopeek"
alpha = [1, 5]
"""
    + SHARED
)
ROWS_PER_CELL = 3 + 2 * 3 * 60 + 2  # accuracy, dcor, dcor_u2; ssim/psnr/mse per image, of the attack and the worst case; dcor_recon, dcor_recon_u2


@pytest.fixture
def quick_grid(tmp_path: Path) -> Path:
    path = tmp_path / "quick.toml"
    path.write_text(QUICK)
    return path


class Counter:
    """Wraps a function, counting calls (and failing for chosen arguments)."""

    def __init__(self, fn, fail_when=None) -> None:  # noqa: ANN001
        self.fn, self.fail_when, self.calls = fn, fail_when, []

    def __call__(self, config, *args, **kwargs):  # noqa: ANN001, ANN204
        self.calls.append(config)
        if self.fail_when is not None and self.fail_when(config):
            raise RuntimeError("simulated crash in this cell")
        return self.fn(config, *args, **kwargs)


# ---------------------------------------------------------------------------------------- grid


def test_grid_is_the_explicit_cross_product() -> None:
    grid = parse_grid(
        """
        [grid]
        dataset = "digits"
        cut = [1, 3]
        seed = [0, 1]
        attack = ["decoder", "rmle"]
        [[defense]]
        name = "none"
        [[defense]]
        name = "nopeek"
        alpha = [1, 5.0]
        """
        + SHARED
    )
    assert len(grid.cells) == 2 * 3 * 2 * 2  # cuts x (none + 2 alphas) x seeds x attacks
    first = grid.cells[0]
    assert (first.train.cut, first.defense_label, first.train.seed, first.attack) == (1, "none", 0, "decoder")
    assert [c.attack for c in grid.cells[:2]] == ["decoder", "rmle"] and grid.cells[0].train_key == grid.cells[1].train_key
    assert len(grid.trainings()) == 12 and len({c.key for c in grid.cells}) == 24
    nopeek = [c for c in grid.cells if c.train.defense == "nopeek"]
    assert {c.train.defense_params["alpha"] for c in nopeek} == {1.0, 5.0}
    assert {c.defense_label for c in nopeek} == {"nopeek-alpha1", "nopeek-alpha5"}
    assert all(set(c.evaluation.attack_params) == {c.attack} for c in grid.cells)  # a cell keys on its own attack's options only
    assert first.evaluation.attack_params["decoder"]["epochs"] == 1 and "lr" in first.evaluation.attack_params["decoder"]  # defaults resolved
    assert first.folder.startswith("digits-small-cnn-cut1-none-s0-decoder-") and first.checkpoint.endswith(f"{first.train_key}.safetensors")


def test_keys_ignore_spelling_and_file_locations() -> None:
    text = '[grid]\ndataset = "digits"\n[[defense]]\nname = "nopeek"\nalpha = ALPHA\n' + SHARED
    five = parse_grid(text.replace("ALPHA", "5")).cells[0]
    assert parse_grid(text.replace("ALPHA", "5.0")).cells[0].key == five.key
    assert parse_grid(text.replace("ALPHA", "5"), data_dir="/elsewhere").cells[0].key == five.key
    assert parse_grid(text.replace("ALPHA", "6")).cells[0].key != five.key
    assert parse_grid(text.replace("ALPHA", "5"), device="cuda").cells[0].key != five.key
    # another decoder budget is another cell; the rmle options do not touch a decoder cell
    assert parse_grid(text.replace("ALPHA", "5").replace("epochs = 1\nwidth", "epochs = 2\nwidth")).cells[0].key != five.key
    assert parse_grid(text.replace("ALPHA", "5").replace("steps = 3", "steps = 4")).cells[0].key == five.key


def test_cut_all_and_defaults() -> None:
    grid = parse_grid('[grid]\ndataset = "digits"\ncut = "all"\n' + SHARED)
    assert [c.train.cut for c in grid.cells] == [1, 2, 3, 4]
    assert {c.train.defense for c in grid.cells} == {"none"} and {c.attack for c in grid.cells} == {"decoder"}
    assert grid.name == "<grid>"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[grid]\ncut = [1]\n[trian]\nepochs = 1", "unknown top-level key(s) ['trian']"),
        ("[grid]\nlayer = [1]", "unknown [grid] axis(es) ['layer']"),
        ("[train]\nepoch = 1", "unknown training option(s) ['epoch']"),
        ("[train]\ncut = 2", "[train] cut is set by [grid] cut"),
        ("[[defense]]\nname = \"nopeek\"\nalpha = [1, -5]", "nopeek alpha must be >= 0.0, got -5"),
        ("[[defense]]\nname = \"nopeek\"\nbeta = 1", "defense 'nopeek' has no parameter(s) ['beta']"),
        ("[[defense]]\nname = \"magic\"", "unknown defense 'magic'"),
        ("[grid]\nattack = [\"decoder\", \"mindreader\"]", "unknown; choose from"),
        ("[grid]\ncut = [1, 9]", "has cuts [1, 2, 3, 4], got 9"),
        ("[grid]\ncut = []", "[grid] cut is an empty list"),
        ("[grid]\nseed = [0, 0]", "[grid] seed repeats a value"),
        ("[grid]\ndataset = [\"imagenet\"]", "unknown dataset 'imagenet'"),
        ("[data]\nlimit_test = 50\n[evaluate]\nlimit = 100", "limit = 100 exceeds [data] limit_test = 50"),
        ("[evaluate]\nbudget_scale = 0", "budget scale must be a finite number > 0"),
        ("[evaluate]\nobservations = \"all\"", "observations must be a whole number from 1"),
        ("[evaluate.attack_params.rmle]\nsteps = 0", "rmle steps must be a whole number >= 1"),
        ("[[defense]]\nname = \"none\"\n[[defense]]\nname = \"none\"", "lists the same cell twice"),
        ("[grid\ncut = 1", "not valid TOML"),
        ("[grid]\nattack = [\"decoder\", \"fsha\"]", "attack 'fsha' attacks only models trained by its 'fsha' server"),
        ("[grid]\nattack = [\"sdar-online\"]\n[train]\nserver = \"fsha\"", "trains with the 'fsha' server: set server = \"sdar\" in [train]"),
    ],
)
def test_bad_grid_files_exit_2_with_one_line(tmp_path: Path, capsys, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(GridError, match="bad.toml"):
        load_grid(path)
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("splitleak: error:") and message in err[0], err
    assert not (tmp_path / "out").exists()


def test_cli_input_errors(tmp_path: Path, quick_grid: Path, capsys) -> None:
    assert main(["sweep", str(tmp_path / "missing.toml"), "--dry-run"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["sweep", str(quick_grid)]) == 2
    assert "needs --out" in capsys.readouterr().err
    assert main(["sweep", str(quick_grid), "--out", str(tmp_path / "o"), "--workers", "many"]) == 2
    assert "--workers must be" in capsys.readouterr().err
    assert main(["sweep", str(quick_grid), "--out", str(tmp_path / "o"), "--workers", "0"]) == 2
    assert not (tmp_path / "o").exists()


def test_dry_run_lists_every_cell_and_runs_nothing(quick_grid: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(jobs, "train", Counter(None, fail_when=lambda c: True))
    assert main(["sweep", str(quick_grid), "--dry-run", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "cells/digits-small-cnn-" in line]
    assert len(lines) == 4 and all("train+run" in line for line in lines)
    assert "estimated cost" in out and "estimate" in out and "2 workers" in out and "nothing was run" in out
    assert main(["sweep", str(quick_grid), "--dry-run", "--out", str(tmp_path / "never")]) == 0
    assert not (tmp_path / "never").exists() and jobs.train.calls == []


def test_the_decision_check_is_the_studys_seed_0_with_sdar_and_fora() -> None:
    """examples/decision_check.toml reuses the study's checkpoints and cells: the same cell keys."""
    examples = Path(__file__).resolve().parents[1] / "examples"
    study, check = load_grid(examples / "defense_comparison.toml"), load_grid(examples / "decision_check.toml")
    assert len(study.cells) == 14 * 3 * 4 and len(check.cells) == 14 * 6
    shared = {c.key for c in study.cells} & {c.key for c in check.cells}
    assert shared == {c.key for c in study.cells if c.train.seed == 0}
    assert {c.attack for c in check.cells if c.key not in shared} == {"sdar", "fora"}


def test_example_tradeoff_grid(capsys) -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "nopeek_tradeoff.toml"
    grid = load_grid(example)
    assert len(grid.cells) == 24 and len(grid.trainings()) == 12
    assert {(c.train.cut, c.defense_label, c.attack) for c in grid.cells} == {
        (cut, d, a) for cut in (1, 2, 3) for d in ("none", "nopeek-alpha1", "nopeek-alpha5", "nopeek-alpha20") for a in ("decoder", "rmle")
    }
    assert {c.data.dataset for c in grid.cells} == {"fashion-mnist"} and {c.train.epochs for c in grid.cells} == {2}
    assert {c.evaluation.limit for c in grid.cells} == {500}
    assert plan_sweep(grid).seconds > 60
    assert main(["sweep", str(example), "--dry-run", "--workers", "auto"]) == 0
    assert capsys.readouterr().out.count("cells/fashion-mnist-small-cnn-cut") == 24


def test_ray_executor_without_ray_is_bad_input(quick_grid: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main(["sweep", str(quick_grid), "--out", str(tmp_path / "o"), "--executor", "ray"]) == 2
    assert "pip install 'splitleak[ray]'" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_ctrl_c_stops_the_sweep_and_says_so(quick_grid: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    def interrupt(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise KeyboardInterrupt

    monkeypatch.setattr(jobs, "train", interrupt)
    assert main(["sweep", str(quick_grid), "--out", str(tmp_path / "out"), "--quiet"]) == 130
    assert "interrupted" in capsys.readouterr().err
    sweep = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert sweep["status"] == "interrupted" and sweep["counts"]["pending"] == 4 and sweep["failed"] == []


def test_workers_share_the_cores() -> None:
    pool = ProcessExecutor(2)  # no process starts before the first job
    try:
        assert pool.threads == max(1, usable_cores() // 2) and pool.capacity == 2
    finally:
        pool.close()
    pool = ProcessExecutor(3, threads=1)
    assert pool.threads == 1
    pool.close()
    assert make_executor("local").capacity == 1
    with pytest.raises(ValueError, match="unknown executor"):
        make_executor("slurm")


# ------------------------------------------------------------------------------- local runs


def _table(out: Path) -> pd.DataFrame:
    table = pd.read_csv(out / "results.csv", keep_default_na=False, na_values={"sample": [""], "value": [""], "ci_low": [""], "ci_high": [""]})
    return validate(table)


def test_quick_grid_runs_resumes_and_never_duplicates(quick_grid: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "sweep"
    grid = load_grid(quick_grid)
    # 1. one cell's training crashes: recorded, the other three finish, exit code 1
    crash = Counter(jobs.train, fail_when=lambda c: c.cut == 2 and c.defense_params.get("alpha") == 5)
    monkeypatch.setattr(jobs, "train", crash)
    assert main(["sweep", str(quick_grid), "--out", str(out), "--quiet", "--no-report"]) == 1
    printed = capsys.readouterr().out
    assert "3/4 cells finished" in printed and "1 failed" in printed and "simulated crash" in printed
    broken = next(c for c in grid.cells if c.train.cut == 2 and c.train.defense_params["alpha"] == 5)
    error = json.loads((out / "cells" / broken.folder / "error.json").read_text())
    assert error["stage"] == "train" and error["type"] == "RuntimeError" and "simulated crash" in error["traceback"]
    sweep = json.loads((out / "sweep.json").read_text())
    assert sweep["status"] == "failed" and [f["key"] for f in sweep["failed"]] == [broken.key]
    assert sweep["counts"] == {"cells": 4, "finished": 3, "failed": 1, "pending": 0, "reused": 0, "trained": 3}
    assert len(_table(out)) == 3 * ROWS_PER_CELL and not (out / "report.pdf").exists()

    # 2. re-run: only the failed cell runs (one training, one evaluation); exit 0; every row once
    train_calls, eval_calls = Counter(crash.fn), Counter(jobs.evaluate)
    monkeypatch.setattr(jobs, "train", train_calls)
    monkeypatch.setattr(jobs, "evaluate", eval_calls)
    outcome = run_sweep(grid, out)
    assert outcome.exit_code == 0 and outcome.finished == [broken.key] and len(outcome.reused) == 3
    assert [(c.cut, c.defense_params["alpha"]) for c in train_calls.calls] == [(2, 5.0)] and len(eval_calls.calls) == 1
    assert not (out / "cells" / broken.folder / "error.json").exists()
    table = _table(out)
    assert len(table) == 4 * ROWS_PER_CELL and not table.duplicated(["run", "attack", "metric", "sample"]).any()
    assert table.groupby(["cut", "defense_params"]).run.nunique().tolist() == [1, 1, 1, 1]
    assert sorted(table.query("metric == 'ssim' and attack != 'worst'").groupby("run").size()) == [60] * 4
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF") and len(Results.load(out).provenance.runs) == 4  # a results folder too
    cells = pd.read_csv(out / "cells.csv")
    assert cells.status.tolist() == ["finished"] * 4 and set(cells.run) == set(table.run)
    before = (out / "results.csv").read_bytes()

    # 3. a finished sweep runs nothing; a deleted cell folder is evaluated again from its checkpoint
    assert plan_sweep(grid, out).to_run == 0
    assert run_sweep(grid, out, report=False).reused == [c.key for c in grid.cells]
    assert (out / "results.csv").read_bytes() == before
    gone = grid.cells[1]
    shutil.rmtree(out / "cells" / gone.folder)
    outcome = run_sweep(grid, out, report=False)
    assert outcome.finished == [gone.key] and outcome.trained == []
    assert len(train_calls.calls) == 1 and len(eval_calls.calls) == 2
    assert (out / "results.csv").read_bytes() == before  # same checkpoint, same seed: the same numbers

    # 4. a cell recorded under another run id (another release's content hash, or a checkpoint
    #    retrained since) is not finished: a model's cells must attack the same weights
    other = grid.cells[2]
    provenance = json.loads((out / "cells" / other.folder / "provenance.json").read_text())
    (run,) = provenance["runs"]
    provenance["runs"][run]["checkpoint"]["sha256"] = "f" * 64
    (out / "cells" / other.folder / "provenance.json").write_text(json.dumps(provenance))
    assert plan_sweep(grid, out).to_run == 1
    outcome = run_sweep(grid, out, report=False)
    assert outcome.finished == [other.key] and outcome.trained == [] and len(eval_calls.calls) == 3
    assert (out / "results.csv").read_bytes() == before
    retrained = grid.cells[3]
    shutil.copyfile(out / "checkpoints" / grid.cells[0].checkpoint, out / "checkpoints" / retrained.checkpoint)  # other weights, same name
    assert plan_sweep(grid, out).to_run == 1 and not runner.is_cell_finished(out, retrained)


def test_cells_of_one_model_share_its_checkpoint_and_model_rows(tmp_path: Path) -> None:
    from splitleak.progress import lines

    grid = parse_grid('[grid]\ndataset = "digits"\ncut = 1\nattack = ["decoder", "rmle"]\n' + SHARED)
    events, stages = [], []
    outcome = run_sweep(grid, tmp_path, report=False, on_event=events.append, progress=lines(stages.append))
    assert outcome.exit_code == 0 and len(outcome.trained) == 1
    # what a log shows without a terminal: which job starts (model k of n), then each stage within it
    assert [e.kind for e in events] == ["training", "trained", "attacking", "finished", "attacking", "finished"]
    assert events[0].message == "model 1 of 1"
    said = " | ".join(stages)
    for stage in ("train none epoch 1/1", "decoder attack: fit", "decoder attack: scoring", "rmle attack: reconstruct", "rmle attack: scoring"):
        assert stage in said, said
    merged = Results.load(tmp_path)
    table = merged.table
    assert table.run.nunique() == 1 and (table.attack == "").sum() == 3  # model-level rows once, not once per cell
    assert len(table) == 3 + 2 * (3 * 60 + 2) + 3 * 60  # and the worst case over both attacks, once
    (run,) = merged.provenance.runs
    assert merged.provenance.runs[run].evaluation["attacks"] == ["decoder", "rmle"]
    assert len(merged.provenance.runs[run].cells) == 2
    assert {f"{run}/attack/decoder", f"{run}/attack/rmle", f"{run}/original"} <= set(merged.reconstructions)
    assert len(list((tmp_path / "checkpoints").glob("*.safetensors"))) == 1


def test_several_workers_start_the_longest_jobs_first() -> None:
    grid = parse_grid(
        """
        [grid]
        dataset = "digits"
        cut = [2]
        seed = [0]
        attack = ["decoder", "sdar"]

        [[defense]]
        name = "none"

        [[defense]]
        name = "adversarial"
        """
    )
    cell_of = {c.key: c for c in grid.cells}.__getitem__
    trainings = [
        jobs.TrainJob(key=k, label=cells[0].model_label, keys=tuple(c.key for c in cells), data=cells[0].data, train=cells[0].train)
        for k, cells in grid.trainings().items()
    ]
    assert [j.train.defense for j in runner.longest_first(trainings, cell_of)] == ["adversarial", "none"]
    evals = [jobs.EvalJob(key=c.key, label=c.label, data=c.data, evaluation=c.evaluation, checkpoint=b"") for c in grid.cells]
    ordered = [cell_of(j.key).attack for j in runner.longest_first(evals, cell_of)]
    assert ordered[:2] == ["sdar", "sdar"] and ordered[2:] == ["decoder", "decoder"]
    assert runner.job_seconds(evals[1], cell_of) > runner.job_seconds(evals[0], cell_of) > 0


def test_a_trained_models_cells_start_longest_first_with_several_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    grid = parse_grid('name = "order"\n[grid]\ndataset = "digits"\ncut = [2]\nseed = [0]\nattack = ["rmle", "decoder"]\n' + SHARED)
    submitted: list[jobs.Job] = []

    class TwoSlots(InlineExecutor):  # runs inline, but lets the scheduler see two slots
        capacity = 2

        def submit(self, job):  # noqa: ANN001, ANN202
            submitted.append(job)
            return super().submit(job)

    monkeypatch.setattr(runner, "make_executor", lambda *a, **k: TwoSlots(threads=1))
    assert run_sweep(grid, tmp_path / "out", report=False).exit_code == 0
    cell_of = {c.key: c for c in grid.cells}.__getitem__
    evals = [j for j in submitted if isinstance(j, jobs.EvalJob)]
    estimates = [runner.job_seconds(j, cell_of) for j in evals]
    assert isinstance(submitted[0], jobs.TrainJob) and len(evals) == 2
    assert estimates[0] > estimates[1]  # decoder (more work) before rmle, against grid order
    assert [cell_of(j.key).attack for j in evals] == ["decoder", "rmle"]


@pytest.mark.slow
def test_process_pool_gives_the_same_table(quick_grid: Path, tmp_path: Path) -> None:
    grid = load_grid(quick_grid)
    run_sweep(grid, tmp_path / "one", report=False, threads=1)
    outcome = run_sweep(grid, tmp_path / "two", workers=2, threads=1, report=False)
    assert outcome.exit_code == 0 and outcome.trained and len(outcome.finished) == 4
    key = ["cut", "defense_params", "attack", "metric", "sample"]
    one, two = (_table(tmp_path / d).sort_values(key).reset_index(drop=True) for d in ("one", "two"))
    pd.testing.assert_series_equal(one.value, two.value)


# ------------------------------------------------------------------------------------- Ray


def test_ray_runs_the_grid_and_records_failed_tasks(quick_grid: Path, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'splitleak[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        grid = load_grid(quick_grid)
        outcome = run_sweep(grid, tmp_path / "out", executor="ray", report=False)  # the report does not depend on the executor
        assert outcome.exit_code == 0 and len(outcome.finished) == 4 and len(outcome.trained) == 4
        table = _table(tmp_path / "out")
        assert len(table) == 4 * ROWS_PER_CELL and table.run.nunique() == 4
        assert json.loads((tmp_path / "out" / "sweep.json").read_text())["executor"]["kind"] == "ray"
        # a task that fails comes back as a failed Outcome, not an exception
        executor = make_executor("ray")
        cell = grid.cells[0]
        job = jobs.EvalJob(key=cell.key, label=cell.label, data=cell.data, evaluation=cell.evaluation, checkpoint=b"not a checkpoint", checkpoint_path="x")
        assert executor.resources(job) == {"num_cpus": 1, "num_gpus": 0}
        result = executor.submit(job).result(timeout=120)
        assert not result.ok and "not a readable safetensors checkpoint" in result.error["message"]
        executor.close()
        assert ray.is_initialized()  # an instance the caller started is left running
    finally:
        ray.shutdown()


def test_a_study_is_a_sweep_of_one_cell_per_model(tmp_path: Path, monkeypatch) -> None:
    """`study_grid` (the demo's and the attack table's): each model is one cell under all attacks,
    trained once, evaluated once; a re-run reuses every finished cell; another evaluation does not."""
    from splitleak.data import DataConfig
    from splitleak.evaluation import EvalConfig
    from splitleak.sweep.grid import study_grid
    from splitleak.training import TrainConfig

    data = DataConfig(dataset="digits", limit_train=300, aux_pool=200, limit_test=40)
    evaluation = EvalConfig(attacks=("decoder", "rmle"), attack_params={"decoder": {"epochs": 1, "width": 16}, "rmle": {"steps": 5}},
                            limit=20, lpips=None, semantic_epochs=0, gallery=2)
    models = [("none", TrainConfig(cut=1, epochs=1, batch_size=64)),
              ("noise 0.5", TrainConfig(cut=1, epochs=1, batch_size=64, defense="noise", defense_params={"scale": 0.5}))]
    grid = study_grid("tiny", data, models, evaluation)
    assert [c.attack for c in grid.cells] == ["decoder+rmle"] * 2 and [c.defense_label for c in grid.cells] == ["none", "noise_0.5"]
    outcome = run_sweep(grid, tmp_path, report=False)
    assert outcome.exit_code == 0 and len(outcome.trained) == 2 and len(outcome.finished) == 2
    merged = Results.load(tmp_path)
    assert set(merged.table.defense) == {"none", "noise"} and set(merged.table.attack) == {"", "decoder", "rmle", "worst"}
    assert all(len(run.cells) == 1 for run in merged.provenance.runs.values())

    def no_jobs(job):
        raise AssertionError("a finished cell ran again")

    monkeypatch.setattr(jobs, "_train", no_jobs)
    monkeypatch.setattr(jobs, "_evaluate", no_jobs)
    again = run_sweep(grid, tmp_path, report=False)
    assert len(again.reused) == 2 and again.exit_code == 0
    pd.testing.assert_frame_equal(Results.load(tmp_path).table, merged.table)
    changed = study_grid("tiny", data, models[:1], EvalConfig(**{**evaluation.to_dict(), "limit": 10}))
    assert run_sweep(changed, tmp_path, report=False).exit_code == 1  # a new cell: its evaluation ran, and failed here
    with pytest.raises(GridError, match="the same model twice"):
        study_grid("tiny", data, [models[0], models[0]], evaluation)


def test_an_adaptive_attacker_is_an_evaluation_option_and_part_of_the_cell_key() -> None:
    plain = parse_grid("[grid]\ncut = [1]")
    adaptive = parse_grid("[grid]\ncut = [1]\n[evaluate]\nobservations = \"epochs\"")
    assert adaptive.cells[0].evaluation.observations == "epochs" and plain.cells[0].evaluation.observations == 1
    assert adaptive.cells[0].key != plain.cells[0].key
    assert parse_grid("[grid]\ncut = [1]\n[evaluate]\nobservations = 1").cells[0].key == plain.cells[0].key


def test_a_study_trains_each_model_for_several_seeds() -> None:
    from splitleak.data import DataConfig
    from splitleak.evaluation import EvalConfig
    from splitleak.sweep.grid import study_grid
    from splitleak.training import TrainConfig

    models = [("none", TrainConfig(cut=2)), ("nopeek-20", TrainConfig(cut=2, defense="nopeek", defense_params={"alpha": 20.0}))]
    grid = study_grid("s", DataConfig(), models, EvalConfig(), seeds=(0, 1, 2))
    assert [c.train.seed for c in grid.cells] == [0, 1, 2, 0, 1, 2]
    assert [c.model_label.rsplit("-", 2)[-2:] for c in grid.cells][4] == ["20", "s1"]
    assert len({c.train_key for c in grid.cells}) == 6 and grid.cells[4].model_label.endswith("nopeek-20-s1")
    assert [c.train.seed for c in study_grid("s", DataConfig(), models, EvalConfig()).cells] == [0, 0]  # without: each model's own seed
    for bad in ((), (1, 1), (-1,), (True,)):
        with pytest.raises(GridError, match="seeds"):
            study_grid("s", DataConfig(), models, EvalConfig(), seeds=bad)


def test_pool_workers_end_when_the_sweep_process_is_killed(tmp_path: Path) -> None:
    """SIGKILL (or SIGTERM) of the sweep gives the pool no chance to stop its workers: each
    worker watches its parent and exits, instead of running its cell on as an orphan."""
    import os
    import signal
    import subprocess
    import time

    pid_file = tmp_path / "worker.pid"
    code = f"""
import multiprocessing, os, time
from pathlib import Path
from splitleak.sweep.executors import exit_with_parent

def work(parent):
    exit_with_parent(parent, poll=0.05)
    Path({str(pid_file)!r}).write_text(str(os.getpid()))
    time.sleep(60)

if __name__ == "__main__":
    multiprocessing.get_context("spawn").Process(target=work, args=(os.getpid(),)).start()
    time.sleep(60)
"""
    script = tmp_path / "sweep.py"  # spawn re-imports the main module: a file, not -c
    script.write_text(code)
    sweep = subprocess.Popen([sys.executable, str(script)])
    deadline = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    worker = int(pid_file.read_text())
    os.kill(sweep.pid, signal.SIGKILL)
    sweep.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)  # still there?
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(worker, signal.SIGKILL)
    raise AssertionError("the worker outlived the killed sweep by 10 s")


def test_worker_threads_split_the_cores_and_honour_omp_num_threads(monkeypatch) -> None:
    from splitleak.sweep import executors

    monkeypatch.setattr(executors, "usable_cores", lambda: 4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert executors.worker_threads(2) == 2 and executors.worker_threads(8) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert executors.worker_threads(2) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "16")  # never more than the worker's share of the cores
    assert executors.worker_threads(2) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    assert executors.worker_threads(2) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    pool = ProcessExecutor(2)  # the pool's processes start with the first job: none here
    try:
        assert pool.threads == 1 and pool.description["threads"] == 1
    finally:
        pool.close()
    pool = ProcessExecutor(2, threads=3)  # --threads is the per-worker figure
    try:
        assert pool.threads == 3
    finally:
        pool.close()


def test_named_cuts_in_a_grid() -> None:
    grid = parse_grid('[grid]\ndataset = "cifar10"\narch = "resnet18"\ncut = "all"\nattack = ["decoder"]\n' + SHARED)
    assert [c.train.cut for c in grid.cells] == ["stem", "layer1", "layer2", "layer3", "layer4"]
    assert grid.cells[2].describe()["cut"] == "layer2" and "cutlayer2" in grid.cells[2].folder
    with pytest.raises(GridError, match="has cuts"):
        parse_grid('[grid]\narch = "resnet18"\ncut = [2]\n' + SHARED)


def test_cost_model_counts_the_server_and_detector_of_training() -> None:
    """A malicious or attacking server and a detector slow training down; the dry run's estimate says so."""
    from splitleak.sweep.cost import OVERHEAD_SECONDS, training_seconds, training_speed
    from splitleak.training import TrainConfig

    honest = TrainConfig(cut=2)
    assert training_speed(honest) == 1.0
    assert training_speed(TrainConfig(cut=2, defense="adversarial")) < 0.5
    sdar, fsha = TrainConfig(cut=2, server="sdar"), TrainConfig(cut=2, server="fsha")
    guarded = TrainConfig(cut=2, detector="splitguard")
    assert training_speed(sdar) < training_speed(fsha) < training_speed(guarded) < 1.0
    both = TrainConfig(cut=2, server="fsha", detector="splitguard", defense="adversarial")
    assert training_speed(both) == pytest.approx(training_speed(fsha) * training_speed(guarded) * training_speed(TrainConfig(cut=2, defense="adversarial")))

    one = QUICK.replace("alpha = [1, 5]", "alpha = [1]").replace("cut = [1, 2]", "cut = [2]")
    (cell,) = parse_grid(one.replace("[train]", '[train]\nserver = "sdar"'), source="sdar.toml").cells
    (honest_cell,) = parse_grid(one, source="honest.toml").cells
    assert training_seconds(cell) - OVERHEAD_SECONDS == pytest.approx((training_seconds(honest_cell) - OVERHEAD_SECONDS) / training_speed(sdar))


def test_a_training_time_attack_runs_with_its_server() -> None:
    one = QUICK.replace("alpha = [1, 5]", "alpha = [1]").replace("cut = [1, 2]", "cut = [2]")
    text = one.replace('attack = ["decoder"]', 'attack = ["fsha", "decoder"]').replace("[train]", '[train]\nserver = "fsha"')
    cells = parse_grid(text, source="fsha.toml").cells
    assert [c.attack for c in cells] == ["fsha", "decoder"] and {c.train.server for c in cells} == {"fsha"}
