"""JsonResult: the one save/load of result dataclasses (a kind-checked JSON file, or a directory's default file)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from evolens.analysis.io import JsonResult
from evolens.errors import StoreError


@dataclass(frozen=True)
class _Result(JsonResult):
    result_kind: ClassVar[str] = "evolens.test_result"
    default_name: ClassVar[str] = "result.json"

    values: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {"values": list(self.values)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> _Result:
        return cls([float("nan") if v is None else float(v) for v in data["values"]])


@dataclass(frozen=True)
class _Other(_Result):
    result_kind: ClassVar[str] = "evolens.other_result"


def test_save_and_load_a_file_or_a_directory(tmp_path: Path) -> None:
    result = _Result([1.0, 2.5])
    saved = result.save(tmp_path / "out.json")
    assert saved == tmp_path / "out.json" and _Result.load(saved) == result
    payload = json.loads(saved.read_text())
    assert payload["kind"] == "evolens.test_result" and payload["data"] == {"values": [1.0, 2.5]}
    assert result.save(tmp_path) == tmp_path / "result.json"  # a directory receives the default name
    assert _Result.load(tmp_path) == result
    nan = _Result([float("nan")]).save(tmp_path / "nan.json")  # strict JSON: NaN stored as null
    assert json.loads(nan.read_text())["data"] == {"values": [None]}


def test_load_refuses_another_kind(tmp_path: Path) -> None:
    path = _Other([1.0]).save(tmp_path / "other.json")
    with pytest.raises(StoreError, match=r"not 'evolens\.test_result'"):
        _Result.load(path)
