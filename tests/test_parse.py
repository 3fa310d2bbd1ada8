"""splitleak._parse: JSON and TOML with bounded nesting, settings files with bounded size."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from splitleak._parse import MAX_NESTING, MAX_SETTINGS_BYTES, loads_json, loads_toml, nesting, read_settings_text
from splitleak.errors import InputError


def _nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def test_nesting_counts_levels_without_recursion() -> None:
    assert nesting(1) == 0 and nesting([]) == 1 and nesting({"a": [1, {"b": 2}]}) == 3
    deep: list = []
    for _ in range(10_000):  # deeper than Python's recursion limit
        deep = [deep]
    assert nesting(deep) > MAX_NESTING


def test_json_up_to_the_bound_is_read_and_deeper_is_a_decode_error() -> None:
    assert nesting(loads_json(_nested(MAX_NESTING))) == MAX_NESTING
    for text in (_nested(MAX_NESTING + 1), _nested(100_000), b"[" * 100_000 + b"]" * 100_000):
        with pytest.raises(json.JSONDecodeError, match="nested deeper than 64 levels"):
            loads_json(text)


def test_toml_up_to_the_bound_is_read_and_deeper_is_a_decode_error() -> None:
    assert nesting(loads_toml(f"a = {_nested(MAX_NESTING - 1)}")) == MAX_NESTING  # the document's table is a level
    for text in (f"a = {_nested(MAX_NESTING)}", f"a = {_nested(100_000)}", "a = " + "{b = " * 50_000 + "1" + "}" * 50_000):
        with pytest.raises(tomllib.TOMLDecodeError, match="nested deeper than 64 levels"):
            loads_toml(text)


def test_settings_files_are_read_up_to_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_bytes(b"#" * MAX_SETTINGS_BYTES)
    assert len(read_settings_text(path, "policy")) == MAX_SETTINGS_BYTES
    path.write_bytes(b"#" * (MAX_SETTINGS_BYTES + 1))
    with pytest.raises(InputError, match=f"policy {path} is larger than {MAX_SETTINGS_BYTES} bytes"):
        read_settings_text(path, "policy")
    path.write_bytes(b"a = '\xff'")
    with pytest.raises(InputError, match="is not UTF-8 text"):
        read_settings_text(path, "policy")
    with pytest.raises(FileNotFoundError):
        read_settings_text(tmp_path / "missing.toml", "policy")
