"""The typed records between stages: round trips, the shapes of earlier releases, wrong shapes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from splitleak.dataspec import InputSpec
from splitleak.records import CheckpointMeta, CheckpointRecord, DefenseRecord, Provenance, RecordError, RunProvenance

META = CheckpointMeta(arch="small-cnn", cut=2, num_classes=10, input_spec=InputSpec((1, 28, 28)), defense=DefenseRecord("nopeek", {"alpha": 5.0}),
                      train={"epochs": 1}, log=({"epoch": 1, "loss": 0.5},), test_accuracy=0.8, test_size=100)
RUN = RunProvenance(checkpoint=CheckpointRecord(path="m.safetensors", sha256="ab" * 32, meta=META), evaluation={"attacks": ["decoder"]},
                    attacks={"decoder": {"budget": {"epochs": 3}}}, lpips={"available": False, "reason": "no weights"}, gallery_indices=(3, 1),
                    stages={"train": 12.5, "attack/decoder/fit": 3.0}, memory={"peak_rss_bytes": 2 * 10**9, "streamed": True, "chunk_images": 4096})


def test_checkpoint_meta_round_trips_through_json() -> None:
    assert CheckpointMeta.from_dict(json.loads(json.dumps(META.to_dict()))) == META
    assert "foreign" not in META.to_dict()  # unknown parts are left out, not written as null


def test_provenance_round_trips_and_reads_both_shapes_of_version_1() -> None:
    single = Provenance.single("abababababab", RUN)
    assert Provenance.from_dict(json.loads(json.dumps(single.to_dict()))) == single
    version1_single = {k: v for k, v in RUN.to_dict().items() if k != "cells"}
    assert Provenance.from_dict(version1_single).runs == {"abababababab": RUN}  # the run id is the hash's head
    version1_sweep = {"sweep": {"grid": "g.toml"}, "runs": {"r1": RUN.to_dict()}}
    read = Provenance.from_dict(version1_sweep)
    assert read.runs == {"r1": RUN} and read.sweep == {"grid": "g.toml"}
    assert Provenance.from_dict({}) == Provenance()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "provenance must be a table"),
        ({"checkpoint": "m.safetensors"}, "checkpoint must be a table"),
        ({"runs": [1, 2]}, "provenance runs must be a table"),
        ({"runs": {"r": {"attacks": ["decoder"]}}}, "attacks must be a table"),
        ({"format": "splitleak-provenance", "version": 99, "runs": {}}, "version 99"),
        ({"checkpoint": {"sha256": "x", "meta": {"arch": "a"}}}, "lacks"),
        ({"gallery_indices": ["a"]}, "gallery_indices"),
        ({"stages": {"train": "1 s"}}, "stages.train must be a number"),
        ({"stages": {"train": -1}}, "seconds >= 0"),
    ],
)
def test_records_of_the_wrong_shape_are_one_record_error(value, message) -> None:
    with pytest.raises(RecordError, match=message):
        Provenance.from_dict(value)


def test_records_import_no_torch() -> None:
    code = "import sys, splitleak.records, splitleak.dataspec; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
