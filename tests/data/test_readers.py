"""Readers: items in order, formats validated with errors naming file and entry, paths kept inside the root."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from evolens.data import Amber, Coco, ImageFolder, Pope, open_dataset
from evolens.errors import DatasetError, PromptError, SettingsError, UnsafePathError
from tests.data.fixtures import (
    AMBER_DISCRIMINATIVE,
    write_amber,
    write_coco,
    write_folder,
    write_image,
    write_json,
    write_pope,
)


# ------------------------------------------------------------------------------------------------ folder
def test_folder_scans_images_sorted_and_skips_hidden(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "imgs", n=4)
    write_image(root / ".hidden" / "x.png", seed=9)
    write_image(root / ".y.png", seed=9)
    (root / "notes.txt").write_text("not an image")
    items = list(ImageFolder(root, "describe this image"))
    assert [i.item_id for i in items] == ["a/img0.png", "a/img2.png", "b/img1.png", "b/img3.png"]
    assert all(i.prompt == "describe this image" and i.image is not None and i.image.is_file() for i in items)
    assert items[0].image == (root / "a" / "img0.png").resolve()
    assert len(ImageFolder(root, "describe this image")) == 4


def test_folder_needs_a_prompt(tmp_path: Path) -> None:
    with pytest.raises(PromptError, match="needs a prompt"):
        ImageFolder(write_folder(tmp_path / "imgs"))


def test_folder_jsonl_items_ids_and_extra_fields(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "imgs")
    jsonl = tmp_path / "items.jsonl"
    jsonl.write_text(
        "\n".join(
            [
                json.dumps({"image": "a/img0.png", "prompt": "what color?", "answer": "red"}),
                "",
                json.dumps({"id": "second", "image": "b/img1.png"}),
            ]
        )
    )
    items = list(ImageFolder(root, "default prompt", jsonl=jsonl))
    assert [i.item_id for i in items] == ["1", "second"]
    assert items[0].prompt == "what color?" and items[0].annotations == {"answer": "red"}
    assert items[1].prompt == "default prompt"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 1: not valid JSON"),
        ('["a/img0.png"]', "line 1: expected an object"),
        ('{"prompt": "p"}', "line 1: missing 'image'"),
        ('{"image": "a/img0.png", "prompt": ""}', "line 1: 'prompt' must be a non-empty string"),
        ('{"image": "a/img0.png"}', "line 1: missing 'prompt'"),
        ('{"image": 3, "prompt": "p"}', "line 1: the image path must be a non-empty string"),
    ],
)
def test_folder_jsonl_format_errors_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    root = write_folder(tmp_path / "imgs")
    jsonl = tmp_path / "items.jsonl"
    jsonl.write_text(line + "\n")
    with pytest.raises(DatasetError, match=message) as info:
        list(ImageFolder(root, jsonl=jsonl))
    assert str(jsonl) in str(info.value)


def test_folder_jsonl_duplicate_ids(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "imgs")
    jsonl = tmp_path / "items.jsonl"
    entry = json.dumps({"id": 7, "image": "a/img0.png", "prompt": "p"})
    jsonl.write_text(f"{entry}\n{entry}\n")
    with pytest.raises(DatasetError, match="line 2: duplicate id '7'"):
        list(ImageFolder(root, jsonl=jsonl))


@pytest.mark.parametrize("ref", ["../outside.png", "a/../../outside.png", "/etc/passwd", "C:\\x.png"])
def test_paths_escaping_the_root_are_refused(tmp_path: Path, ref: str) -> None:
    root = write_folder(tmp_path / "imgs")
    write_image(tmp_path / "outside.png", seed=1)
    jsonl = tmp_path / "items.jsonl"
    jsonl.write_text(json.dumps({"image": ref, "prompt": "p"}) + "\n")
    with pytest.raises(UnsafePathError, match="line 1"):
        list(ImageFolder(root, jsonl=jsonl))


def test_dotdot_that_stays_inside_is_allowed(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "imgs")
    jsonl = tmp_path / "items.jsonl"
    jsonl.write_text(json.dumps({"image": "b/../a/img0.png", "prompt": "p"}) + "\n")
    (item,) = list(ImageFolder(root, jsonl=jsonl))
    assert item.image == (root / "a" / "img0.png").resolve()


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "imgs")
    secret = write_image(tmp_path / "secret.png", seed=5)
    (root / "a" / "link.png").symlink_to(secret)
    with pytest.raises(UnsafePathError, match="outside the image root"):
        list(ImageFolder(root, "p"))
    inside = root / "b" / "inside.png"
    inside.symlink_to(root / "a" / "img0.png")
    (root / "a" / "link.png").unlink()
    assert "b/inside.png" in [i.item_id for i in ImageFolder(root, "p")]


# ------------------------------------------------------------------------------------------------- AMBER
def test_amber_generative_items(tmp_path: Path) -> None:
    data = write_amber(tmp_path)
    amber = Amber(data)
    items = list(amber)
    assert [i.item_id for i in items] == ["1", "2", "3"]
    assert items[0].prompt == "Describe this image."
    assert items[0].image == (data / "image" / "AMBER_1.jpg").resolve()
    assert dict(items[0].annotations) == {
        "task": "amber-generative",
        "amber_id": 1,
        "truth": ["dog", "person", "grass"],
        "hallu": ["cat", "car", "sky"],
    }
    assert len(amber) == 3
    assert amber.resources()["safe_words"] == ["camera", "light"]
    assert amber.resources()["relation"]["person"] == ["man", "woman", "people"]


def test_amber_all_queries_and_prompt_override(tmp_path: Path) -> None:
    data = write_amber(tmp_path)
    items = list(Amber(data, "query_all.json", prompt="Please describe this image in detail."))
    assert len(items) == 8
    assert {i.prompt for i in items} == {"Please describe this image in detail."}
    disc = {i.item_id: dict(i.annotations) for i in items if i.task == "amber-discriminative"}
    assert disc["4"]["dimension"] == "existence"
    assert disc["5"]["dimension"] == "attribute"
    assert disc["7"]["dimension"] == "relation" and disc["8"]["dimension"] == "relation"
    assert disc["6"]["truth"] == "no"


def _amber_with(tmp_path: Path, annotations: list | None = None, queries: list | None = None) -> Path:
    data = write_amber(tmp_path)
    if annotations is not None:
        write_json(data / "annotations.json", annotations)
    if queries is not None:
        write_json(data / "query" / "query_generative.json", queries)
    return data


@pytest.mark.parametrize(
    ("queries", "message"),
    [
        ({"id": 1}, "expected a list"),
        ([{"id": 1, "image": "AMBER_1.jpg"}], "entry 0: missing 'query'"),
        ([{"id": "1", "image": "AMBER_1.jpg", "query": "q"}], "entry 0: 'id' must be a positive integer"),
        ([{"id": 99, "image": "AMBER_1.jpg", "query": "q"}], "id 99 has no annotation"),
        (
            [
                {"id": 1, "image": "AMBER_1.jpg", "query": "q"},
                {"id": 1, "image": "AMBER_1.jpg", "query": "q"},
            ],
            "entry 1: duplicate id 1",
        ),
        ([{"id": 1, "image": "../x.jpg", "query": "q"}], "outside the image root"),
    ],
)
def test_amber_query_errors(tmp_path: Path, queries: object, message: str) -> None:
    data = _amber_with(tmp_path, queries=queries)  # type: ignore[arg-type]
    with pytest.raises(DatasetError, match=message) as info:
        list(Amber(data))
    assert "query_generative.json" in str(info.value)


def test_amber_annotation_errors(tmp_path: Path) -> None:
    shifted = [dict(a, id=a["id"] + 1) for a in [{"id": 1, "type": "generative", "truth": [], "hallu": []}]]
    data = _amber_with(tmp_path, annotations=shifted)
    with pytest.raises(DatasetError, match=r"annotations.json, entry 0: expected the annotation of id 1"):
        list(Amber(data))
    bad = [{"id": 1, "type": "generative", "truth": ["unicorn"], "hallu": []}]
    data = _amber_with(tmp_path / "b", annotations=bad)
    with pytest.raises(DatasetError, match=r"\['unicorn'\] are not in .*relation.json"):
        list(Amber(data))
    bad = [{"id": 1, "type": "discriminative-hallucination", "truth": "maybe"}]
    data = _amber_with(tmp_path / "c", annotations=bad)
    with pytest.raises(DatasetError, match="must be 'yes' or 'no'"):
        list(Amber(data))
    bad = [{"id": 1, "type": "discriminative-attribute-state", "truth": "no", "prior": "yellow"}]
    data = _amber_with(tmp_path / "p", annotations=bad)
    with pytest.raises(DatasetError, match=r"entry 0: 'prior' .* must be 'yes' or 'no', got 'yellow'"):
        list(Amber(data))
    good = [{"id": 1, "type": "discriminative-attribute-state", "truth": "no", "prior": "yes"}]
    one_query = [{"id": 1, "image": "AMBER_1.jpg", "query": "is the moon yellow ?"}]
    (item,) = Amber(_amber_with(tmp_path / "q", annotations=good, queries=one_query))
    assert item.annotations["prior"] == "yes" and item.annotations["truth"] == "no"
    bad = [{"id": 1, "type": "riddle", "truth": "x"}]
    data = _amber_with(tmp_path / "d", annotations=bad)
    with pytest.raises(DatasetError, match="unknown annotation type 'riddle'"):
        list(Amber(data))


def test_amber_missing_files(tmp_path: Path) -> None:
    data = write_amber(tmp_path)
    with pytest.raises(DatasetError, match=r"query file nope\.json not found"):
        Amber(data, "nope.json")
    (data / "relation.json").unlink()
    with pytest.raises(DatasetError, match="relation file"):
        Amber(data)
    assert len(AMBER_DISCRIMINATIVE) == 5


# -------------------------------------------------------------------------------------------------- POPE
def test_pope_items_and_template(tmp_path: Path) -> None:
    images, questions = write_pope(tmp_path)
    items = list(Pope(images, questions, template="{question} Answer with one word."))
    assert [i.item_id for i in items] == ["1", "2", "3", "4", "5", "6"]
    assert items[0].prompt == "Is there a thing 1 in the image? Answer with one word."
    assert dict(items[1].annotations) == {"task": "pope", "question_id": 2, "label": "no"}
    assert len(Pope(images, questions)) == 6
    with pytest.raises(SettingsError, match="must contain"):
        Pope(images, questions, template="no placeholder")


def test_pope_json_array_and_errors(tmp_path: Path) -> None:
    images, questions = write_pope(tmp_path)
    entries = [json.loads(line) for line in questions.read_text().splitlines()]
    array = write_json(tmp_path / "array.json", entries)
    assert len(list(Pope(images, array))) == 6
    entries[2]["label"] = "perhaps"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(json.dumps(e) for e in entries))
    with pytest.raises(DatasetError, match=r"bad.jsonl, line 3: 'label' must be 'yes' or 'no'"):
        list(Pope(images, bad))


# -------------------------------------------------------------------------------------------------- COCO
def test_coco_items(tmp_path: Path) -> None:
    files = write_coco(tmp_path)
    coco = Coco(files["root"], files["captions"], files["instances"], synonyms=files["synonyms"])
    items = list(coco)
    assert [i.item_id for i in items] == ["11", "22", "33"]
    assert dict(items[0].annotations)["instance_objects"] == ["dog", "person"]
    assert dict(items[0].annotations)["reference_captions"][0] == "A man walks a dog."
    assert items[0].prompt == "Please describe this image in detail."
    assert coco.resources()["synonyms"][3] == ["dining table", "table", "desk"]
    assert [
        i.item_id for i in Coco(files["root"], files["captions"], files["instances"], image_ids=[33, 11])
    ] == [
        "33",
        "11",
    ]
    with pytest.raises(DatasetError, match=r"image id\(s\) \[5\]"):
        list(Coco(files["root"], files["captions"], files["instances"], image_ids=[5]))


def test_coco_format_errors(tmp_path: Path) -> None:
    files = write_coco(tmp_path)
    data = json.loads(files["instances"].read_text())
    data["annotations"][0]["category_id"] = 999
    files["instances"].write_text(json.dumps(data))
    with pytest.raises(
        DatasetError, match=r"instances_val2014.json, annotations\[0\]: unknown category_id 999"
    ):
        list(Coco(files["root"], files["captions"], files["instances"]))


def test_open_dataset_by_name(tmp_path: Path) -> None:
    data = write_amber(tmp_path)
    assert len(open_dataset("amber", data, queries=None)) == 3
    with pytest.raises(SettingsError, match="unknown dataset kind"):
        open_dataset("imagenet", data)
