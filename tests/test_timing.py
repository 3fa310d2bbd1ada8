"""Stage timing: the stopwatch, merging a sweep's cells, the report's line."""

import time

import pytest

from splitleak.timing import Stopwatch, merge_stages, stages_line, training_seconds


def test_a_stage_timed_twice_adds_up_and_an_error_still_counts() -> None:
    watch = Stopwatch()
    with watch.time("a"):
        time.sleep(0.01)
    with pytest.raises(KeyError), watch.time("a"):
        raise KeyError("x")
    watch.add("b", 2)
    assert watch.seconds["a"] >= 0.01 and watch.seconds["b"] == 2.0


def test_training_time_comes_from_the_epoch_log() -> None:
    assert training_seconds([{"epoch": 1, "seconds": 1.5}, {"epoch": 2, "seconds": 2}]) == 3.5
    assert training_seconds([{"epoch": 1}]) is None and training_seconds(()) is None


def test_merged_cells_sum_their_work_but_train_once() -> None:
    merged = merge_stages({"train": 10.0, "score/ssim": 1.0, "attack/decoder/fit": 3.0}, {"train": 10.0, "score/ssim": 2.0, "attack/rmle/fit": 4.0})
    assert merged == {"train": 10.0, "score/ssim": 3.0, "attack/decoder/fit": 3.0, "attack/rmle/fit": 4.0}


def test_the_line_goes_in_run_order() -> None:
    line = stages_line({"score/lpips": 4.0, "attack/decoder/reconstruct": 0.1, "attack/decoder/fit": 11.9, "train": 150.0, "activations": 0.4, "prepare/lpips": 0.3})
    assert line == "train 2.5 min · activations 0.4 s · decoder 12.0 s (fit 11.9, reconstruct 0.1) · preparing scorers 0.3 s (lpips 0.3) · scoring 4.0 s (lpips 4.0)"
    assert stages_line({}) == ""
