"""Commands replace only what splitleak wrote: a user's folder or file is refused, untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from splitleak.cli import main
from splitleak.outputs import MARKER, OutputError, claim_file, claim_folder, folder_kind, mark_folder
from splitleak.results import PROVENANCE_FILE, TABLE_FILE
from tests._pdf import SPLITLEAK_INFO, minimal_pdf

TINY = ["--dataset", "digits", "--limit-train", "300", "--aux-pool", "200", "--limit-test", "100", "--quiet"]
FAST_EVAL = ["--limit", "20", "--attack-param", "decoder.epochs=1", "--semantic-epochs", "0", "--lpips", "none", "--aux-size", "32", "--quiet"]


def _user_folder(path: Path) -> dict[str, bytes]:
    path.mkdir(parents=True, exist_ok=True)
    files = {"thesis.tex": b"\\documentclass{article}", "data.csv": b"a,b\n1,2\n"}
    for name, content in files.items():
        (path / name).write_bytes(content)
    return files


def _unchanged(path: Path, files: dict[str, bytes]) -> bool:
    return sorted(p.name for p in path.iterdir()) == sorted(files) and all((path / n).read_bytes() == c for n, c in files.items())


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("splitleak: error:"), err
    return err[0]


def test_evaluate_refuses_a_users_folder(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    out = tmp_path / "mine"
    files = _user_folder(out)
    assert main(["evaluate", str(tiny_checkpoint), "--out", str(out), *FAST_EVAL]) == 2
    assert "did not write" in _one_error_line(capsys)
    assert _unchanged(out, files)
    assert not (tmp_path / "mine.partial").exists()


def test_evaluate_replaces_its_own_folder_but_not_files_added_to_it(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    out = tmp_path / "res"
    assert main(["evaluate", str(tiny_checkpoint), "--out", str(out), *FAST_EVAL]) == 0
    assert folder_kind(out) is not None and folder_kind(out)[0] == "results"
    assert main(["evaluate", str(tiny_checkpoint), "--out", str(out), *FAST_EVAL]) == 0  # its own: replaced
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main(["evaluate", str(tiny_checkpoint), "--out", str(out), *FAST_EVAL]) == 2
    assert "notes.txt" in _one_error_line(capsys)
    assert (out / "notes.txt").read_text() == "mine" and (out / TABLE_FILE).is_file()


def test_evaluate_keeps_a_users_folder_named_like_its_progress(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    partial = tmp_path / "res.partial"
    files = _user_folder(partial)
    assert main(["evaluate", str(tiny_checkpoint), "--out", str(tmp_path / "res"), *FAST_EVAL]) == 2
    assert "progress folder" in _one_error_line(capsys)
    assert _unchanged(partial, files) and not (tmp_path / "res").exists()


def test_legacy_results_folder_is_still_recognised(tmp_path: Path) -> None:
    folder = tmp_path / "old"
    folder.mkdir()
    for name in (TABLE_FILE, PROVENANCE_FILE):
        (folder / name).write_text("x")
    from splitleak.results import claim_results_folder

    claim_results_folder(folder)  # no marker, only results files: written by an earlier release
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="did not write"):
        claim_results_folder(folder)


def test_train_refuses_to_overwrite_a_file_that_is_not_a_checkpoint(tmp_path: Path, capsys) -> None:
    out = tmp_path / "model.safetensors"
    out.write_bytes(b"my own weights, not splitleak's")
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 2
    assert "not a splitleak checkpoint" in _one_error_line(capsys)
    assert out.read_bytes() == b"my own weights, not splitleak's"


def test_train_keeps_a_users_file_named_like_its_progress(tmp_path: Path, capsys) -> None:
    out = tmp_path / "model.safetensors"
    partial = tmp_path / "model.safetensors.partial"
    partial.write_bytes(b"my notes")
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 2
    assert "progress file" in _one_error_line(capsys)
    assert partial.read_bytes() == b"my notes" and not out.exists()


def test_train_overwrites_its_own_checkpoint(tmp_path: Path, tiny_checkpoint: Path) -> None:
    out = tmp_path / "model.safetensors"
    out.write_bytes(tiny_checkpoint.read_bytes())
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    assert out.read_bytes() != tiny_checkpoint.read_bytes()
    assert not (tmp_path / "model.safetensors.partial").exists()


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Path:
    out = tmp_path_factory.mktemp("res") / "res"
    assert main(["evaluate", str(tiny_checkpoint), "--out", str(out), *FAST_EVAL]) == 0
    return out


@pytest.mark.parametrize("taken", ["report.pdf", "report.summary.csv", "report.results.csv", "report.html"])
def test_report_refuses_to_overwrite_files_it_did_not_write(tmp_path: Path, results_dir: Path, capsys, taken: str) -> None:
    (tmp_path / taken).write_text("a user's file")
    assert main(["report", str(results_dir), "--out", str(tmp_path / "report.pdf"), "--html"]) == 2
    assert "not a report" in _one_error_line(capsys)
    assert (tmp_path / taken).read_text() == "a user's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == [taken]


def test_report_overwrites_its_own_files(tmp_path: Path, results_dir: Path) -> None:
    argv = ["report", str(results_dir), "--out", str(tmp_path / "report.pdf"), "--html"]
    assert main(argv) == 0
    assert main(argv) == 0


@pytest.mark.parametrize("option", ["--json", "--junit", "--markdown"])
def test_gate_refuses_to_overwrite_files_it_did_not_write(tmp_path: Path, results_dir: Path, capsys, option: str) -> None:
    policy = tmp_path / "policy.toml"
    assert main(["gate", "--init", "--policy", str(policy)]) == 0
    target = tmp_path / "out.txt"
    target.write_text("a user's file")
    capsys.readouterr()
    assert main(["gate", str(results_dir), "--policy", str(policy), option, str(target)]) == 2
    assert "not a gate" in _one_error_line(capsys)
    assert target.read_text() == "a user's file"
    empty = tmp_path / "summary.md"  # an empty file (as $GITHUB_STEP_SUMMARY starts) is fine, and so is our own
    empty.touch()
    assert main(["gate", str(results_dir), "--policy", str(policy), option, str(empty)]) in (0, 1)
    assert main(["gate", str(results_dir), "--policy", str(policy), option, str(empty)]) in (0, 1)


def test_sweep_refuses_a_users_folder(tmp_path: Path, capsys) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text('[grid]\ndataset = ["digits"]\ncut = [1]\nattack = ["decoder"]\n[[defense]]\nname = "none"\n[data]\nlimit_train = 200\naux_pool = 100\nlimit_test = 40\n[train]\nepochs = 1\n[evaluate]\nlimit = 8\n')
    out = tmp_path / "mine"
    files = _user_folder(out)
    code = main(["sweep", str(grid), "--out", str(out), "--quiet"])
    assert code == 2, capsys.readouterr()
    assert "did not write" in _one_error_line(capsys)
    assert _unchanged(out, files)


def test_demo_refuses_a_users_folder(tmp_path: Path, capsys) -> None:
    out = tmp_path / "mine"
    files = _user_folder(out)
    assert main(["demo", "--quick", "--out", str(out), "--quiet"]) == 2
    assert "did not write" in _one_error_line(capsys)
    assert _unchanged(out, files)


def test_claims_on_markers_kinds_and_odd_paths(tmp_path: Path) -> None:
    claim_folder(tmp_path / "absent", "results")
    (tmp_path / "empty").mkdir()
    claim_folder(tmp_path / "empty", "results", replace=True)
    mark_folder(tmp_path / "empty", "sweep")
    with pytest.raises(OutputError, match="as a sweep folder"):
        claim_folder(tmp_path / "empty", "results")
    (tmp_path / "forged").mkdir()
    (tmp_path / "forged" / MARKER).write_text(json.dumps({"format": "other", "kind": "results"}))
    with pytest.raises(OutputError, match="did not write"):
        claim_folder(tmp_path / "forged", "results")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        claim_folder(tmp_path / "file", "results")
    with pytest.raises(OutputError, match="not a regular file"):
        claim_file(tmp_path / "empty", lambda p: True, "thing")
    (tmp_path / "link").symlink_to(tmp_path / "file")
    with pytest.raises(OutputError, match="not a regular file"):
        claim_file(tmp_path / "link", lambda p: True, "thing")


@pytest.mark.parametrize("objects", [3, 6000])
def test_a_report_pdf_is_recognised_however_many_objects_it_has(tmp_path: Path, objects: int) -> None:
    from splitleak.outputs import is_splitleak_pdf

    path = tmp_path / "report.pdf"
    path.write_bytes(minimal_pdf(SPLITLEAK_INFO, objects))  # 6,000 objects: a 120 KB xref table between the info and the end
    assert is_splitleak_pdf(path)
    claim_file(path, is_splitleak_pdf, "report PDF")


def test_a_large_pdf_by_someone_else_is_not_a_report(tmp_path: Path) -> None:
    from splitleak.outputs import is_splitleak_pdf

    path = tmp_path / "paper.pdf"
    path.write_bytes(minimal_pdf(b"<< /Creator (LaTeX) >>", 6000, other=b"(/Creator (splitleak 0.1.0))"))  # the words inside a page, not its information
    assert not is_splitleak_pdf(path)
    with pytest.raises(OutputError, match="not a report PDF"):
        claim_file(path, is_splitleak_pdf, "report PDF")


@pytest.mark.parametrize("damage", ["startxref", "xref entry", "object number", "past the end", "huge numbers"])
def test_a_damaged_trailer_is_not_followed_anywhere(tmp_path: Path, damage: str) -> None:
    from splitleak.outputs import is_splitleak_pdf

    data = minimal_pdf(SPLITLEAK_INFO, 6000)
    xref = int(data.rsplit(b"startxref\n", 1)[1].split(b"\n")[0])
    if damage == "startxref":
        data = data.replace(b"startxref\n%d" % xref, b"startxref\n%d" % (xref + 7))
    elif damage == "xref entry":
        entry = xref + len(b"xref\n0 6001\n") + 20 * 6000
        data = data[:entry] + b"garbage, not entry\n" + data[entry + 20 :]
    elif damage == "object number":
        data = data.replace(b"/Info 6000 0 R", b"/Info 5999 0 R")  # points at an object without the creator
    elif damage == "past the end":
        data = data.replace(b"startxref\n%d" % xref, b"startxref\n%d" % (10 * len(data)))
    else:  # numbers no file offset can be
        data = data.replace(b"/Info 6000 0 R", b"/Info %d 0 R" % 10**40).replace(b"xref\n0 6001\n", b"xref\n0 %d\n" % 10**41)
    path = tmp_path / "report.pdf"
    path.write_bytes(data)
    assert not is_splitleak_pdf(path)
