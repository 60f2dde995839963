"""The envelope of result files: both layouts round-trip, and each refusal names the file and the reason."""

from __future__ import annotations

import json

import pytest

from evolens._version import __version__
from evolens.analysis.io import read_result, write_result
from evolens.envelope import Envelope
from evolens.errors import StoreError

NESTED = Envelope(what="token comparisons", schema=1, kinds=("evolens.token_comparisons",))
FLAT = Envelope(
    what="feature map", schema="evolens.geometry/1", kinds=("single_image", "multi_image"), nested=False
)

# a result file exactly as evolens wrote it before the envelope had one owner (issue 16)
V1_RESULT = (
    '{\n "kind": "evolens.token_comparisons",\n "schema": 1,\n "evolens": "0.1.0",\n "data": {\n'
    '  "comparisons": [\n   {\n    "token": "\\u00fc",\n    "x": null,\n    "v": [\n     1,\n     2.5\n'
    "    ]\n   }\n  ]\n }\n}\n"
)


def test_a_result_in_the_v1_format_reads_and_writes_back_the_same(tmp_path):
    stored = tmp_path / "old.json"
    stored.write_text(V1_RESULT, encoding="utf-8")
    data = read_result(stored, "evolens.token_comparisons", "x.json")
    assert data == {"comparisons": [{"token": "ü", "x": None, "v": [1, 2.5]}]}
    written = write_result(tmp_path / "new.json", "evolens.token_comparisons", data, "x.json")
    assert written.read_text(encoding="utf-8") == V1_RESULT.replace('"0.1.0"', json.dumps(__version__))


def test_write_result_cleans_nan_and_fills_a_directory(tmp_path):
    path = write_result(tmp_path, "evolens.token_comparisons", {"x": float("nan"), "t": (1, 2)}, "x.json")
    assert path == tmp_path / "x.json"
    assert read_result(tmp_path, "evolens.token_comparisons", "x.json") == {"x": None, "t": [1, 2]}


@pytest.mark.parametrize("envelope", [NESTED, FLAT])
def test_round_trip(tmp_path, envelope):
    kind = envelope.kinds[-1]
    path = envelope.write(tmp_path / "f.json", kind, {"a": [1, "é"]})
    data = envelope.read(path)
    assert data["a"] == [1, "é"]
    assert (data if not envelope.nested else json.loads(path.read_text()))["kind"] == kind


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "does not hold a token comparisons: it holds a list"),
        ('{"kind": "evolens.token_comparisons", "schema": 2, "data": {}}', r"schema 2, expected 1"),
        (
            '{"kind": "evolens.trace", "schema": 1, "data": {}}',
            "holds 'evolens.trace', not 'evolens.token_comp",
        ),
        ('{"kind": "evolens.token_comparisons", "schema": 1}', "has no data"),
        ("{not json", "cannot read"),
    ],
)
def test_refusals_name_the_file(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(StoreError, match=message) as err:
        NESTED.read(path)
    assert str(path) in str(err.value)


def test_missing_file_and_unknown_kind(tmp_path):
    with pytest.raises(StoreError, match=r"no feature map at .*does not exist"):
        FLAT.read(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="not a kind"):
        FLAT.wrap("token", {})
