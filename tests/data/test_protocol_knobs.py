"""The knobs the literature varies around the benchmarks: an id list (the CHAIR subsets papers pick) and dropping
an unfinished last sentence before CHAIR (OPERA's practice); both recorded, bad ones refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evolens.data import Coco, evaluate_dataset
from evolens.data.chair import drop_unfinished_sentence
from evolens.data.readers import DatasetOptions, IdSubset, read_ids
from evolens.errors import DatasetError
from tests.data.fixtures import write_coco


def test_drop_unfinished_sentence() -> None:
    assert drop_unfinished_sentence("A dog. A cat sits next to a") == "A dog."
    assert drop_unfinished_sentence('He said "hi." Then a') == 'He said "hi."'
    assert drop_unfinished_sentence("A dog! Really? Yes.") == "A dog! Really? Yes."
    assert drop_unfinished_sentence("no sentence ends here") == "no sentence ends here"
    assert drop_unfinished_sentence("Pi is 3.14 and a") == "Pi is 3.14 and a"  # a decimal point ends nothing


def test_an_unfinished_last_sentence_is_not_judged_when_asked(tmp_path: Path) -> None:
    files = write_coco(tmp_path)
    coco = Coco(files["root"], files["captions"], files["instances"], synonyms=files["synonyms"])
    # image 22 holds a toilet only: the cut-off second sentence names a hallucinated elephant
    responses = {"22": "A white toilet in a bathroom. Next to it a baby elephant"}
    kept = evaluate_dataset(coco, responses, method="fallback")
    dropped = evaluate_dataset(coco, responses, method="fallback", drop_unfinished=True)
    assert kept.chair is not None and dropped.chair is not None
    assert kept.chair.chair_i == pytest.approx(1 / 2)  # toilet grounded, elephant hallucinated
    assert dropped.chair.chair_i == 0.0
    assert dropped.drop_unfinished and not kept.drop_unfinished
    assert type(dropped).from_dict(dropped.to_dict()).drop_unfinished


def test_an_id_list_selects_items_in_dataset_order_and_refuses_unknown_ids(tmp_path: Path) -> None:
    files = write_coco(tmp_path)
    options = {"captions": files["captions"], "instances": files["instances"], "synonyms": files["synonyms"]}
    chosen = DatasetOptions("coco", files["root"], options, ids=("33", "11"))
    subset = chosen.open()
    assert isinstance(subset, IdSubset) and [item.item_id for item in subset] == ["11", "33"]
    assert len(subset) == 2 and subset.describe()["ids"] == ["11", "33"]
    assert DatasetOptions.from_dict(chosen.to_dict()) == chosen
    with pytest.raises(DatasetError, match=r"1 of the 2 ids are not in the coco dataset \('44'\)"):
        DatasetOptions("coco", files["root"], options, ids=("11", "44")).open()


def test_read_ids_from_json_and_text(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps([{"image_id": 11}, {"image_id": 33}]), encoding="utf-8")
    (tmp_path / "b.txt").write_text("# the subset\n11\n\n33\n", encoding="utf-8")
    assert read_ids(tmp_path / "a.json") == read_ids(tmp_path / "b.txt") == ("11", "33")
    (tmp_path / "c.txt").write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="holds no ids"):
        read_ids(tmp_path / "c.txt")
