"""Item strings round-trip through every JSON file a run writes, whatever characters they hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evolens.data.items import DataItem, json_lines
from evolens.errors import DatasetError
from evolens.store.run import items_jsonl
from tests.run_options import run_options

# characters at which str.splitlines() breaks, besides "\n"
LINE_BREAKERS = "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
texts = st.text(
    alphabet=st.one_of(st.characters(blacklist_categories=("Cs",)), st.sampled_from(LINE_BREAKERS + '\n"\\')),
    min_size=1,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(texts, texts, texts), min_size=1, max_size=4))
def test_items_jsonl_reads_back_whatever_the_strings_hold(records: list[tuple[str, str, str]]) -> None:
    items = [
        DataItem(item_id, None, prompt, {"answer": answer, "words": [answer, prompt]})
        for item_id, prompt, answer in records
    ]
    text = items_jsonl(items)
    assert [json.loads(line) for line in json_lines(text)] == [item.to_dict() for item in items]


@pytest.mark.parametrize("field", ["item_id", "prompt", "image_ref", "annotations"])
def test_a_lone_surrogate_is_refused_with_one_line(field: str) -> None:
    bad = "cat\udcff.png"
    values = {"item_id": "1", "image": None, "prompt": "describe", "annotations": {}, "image_ref": None}
    values[field] = {"objects": [bad]} if field == "annotations" else bad
    with pytest.raises(DatasetError, match="not valid Unicode") as info:
        DataItem(**values)
    assert "\n" not in str(info.value)


def test_a_run_resumes_over_items_with_line_separators(tmp_path: Path, tiny_llava) -> None:
    import evolens
    from evolens.data import ImageFolder
    from evolens.store.run import RunDirectory
    from tests.data.fixtures import write_folder

    root = write_folder(tmp_path / "imgs", n=2)
    jsonl = tmp_path / "items.jsonl"
    records = [
        {"id": "one\u2028two", "image": "a/img0.png", "prompt": "describe\u2029this\x85image"},
        {"id": "three\x1cfour", "image": "b/img1.png", "prompt": "what\u2028color ?"},
    ]
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    dataset = ImageFolder(root, jsonl=jsonl)
    options = {"max_new_tokens": 2, "batch_size": 2, "device": "cpu", "progress": False}
    first = evolens.run(tiny_llava, dataset, tmp_path / "run", **run_options(**options))
    again = evolens.run(
        tiny_llava, dataset, tmp_path / "run", **run_options(**options)
    )  # resumes: reads items.jsonl back
    assert first.n_traced == 2 and again.n_skipped == 2
    assert [r["item_id"] for r in RunDirectory(tmp_path / "run").items()] == [r["id"] for r in records]
