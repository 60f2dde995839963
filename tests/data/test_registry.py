"""The reader registry: what each built-in reader declares matches what it does, duplicates are refused, and
``DatasetOptions`` checks, reads and round-trips a reader's options."""

from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from evolens.data import (
    READERS,
    Amber,
    Coco,
    DataItem,
    Dataset,
    DatasetOptions,
    ImageFolder,
    Pope,
    ReaderOption,
    ToyTestSet,
    open_dataset,
    reader_named,
    register_reader,
    unregister_reader,
)
from evolens.errors import SettingsError
from tests.data.fixtures import write_amber, write_coco, write_folder, write_pope

BUILT_IN = {"folder": ImageFolder, "amber": Amber, "pope": Pope, "coco": Coco, "toy": ToyTestSet}


class Empty(Dataset):
    name = "empty"

    def __init__(self, root: Path) -> None:
        self.root = root

    def __iter__(self) -> Iterator[DataItem]:
        return iter(())

    def __len__(self) -> int:
        return 0


def test_the_built_in_readers_are_registered_by_name() -> None:
    assert {name: READERS[name] for name in BUILT_IN} == BUILT_IN
    with pytest.raises(TypeError):
        READERS["mine"] = Empty  # type: ignore[index]  # read-only: register_reader checks


@pytest.mark.parametrize("reader", BUILT_IN.values(), ids=BUILT_IN)
def test_declared_options_are_the_constructor_s(reader: type[Dataset]) -> None:
    """Names, required-ness and defaults declared as data agree with the constructor the reader opens with."""
    parameters = list(inspect.signature(reader).parameters.values())[1:]  # after root
    assert [o.name for o in reader.options] == [p.name for p in parameters]
    for option, parameter in zip(reader.options, parameters, strict=True):
        assert option.required == (parameter.default is inspect.Parameter.empty), option.name
        if not option.required:
            assert option.default == parameter.default, option.name
        assert option.help


def _items_of(name: str, tmp_path: Path) -> list[DataItem]:
    if name == "amber":
        return list(open_dataset("amber", write_amber(tmp_path), queries="query_all.json"))
    if name == "pope":
        images, questions = write_pope(tmp_path)
        return list(open_dataset("pope", images, questions=questions))
    if name == "coco":
        files = write_coco(tmp_path)
        return list(open_dataset("coco", files.pop("root"), **files))
    root = write_folder(tmp_path / "imgs", n=2)
    lines = [
        {"image": "a/img0.png", "prompt": "Colour?", "task": "vqa", "answer": "red", "kind": "color"},
        {"image": "b/img1.png", "prompt": "Describe.", "truth": ["dog"], "hallu": ["cat"]},
    ]
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return list(open_dataset("folder", root, jsonl=tmp_path / "items.jsonl"))


@pytest.mark.parametrize("name", ["amber", "pope", "coco", "folder"])
def test_items_carry_the_declared_evaluators_and_annotations(name: str, tmp_path: Path) -> None:
    reader = READERS[name]
    items = _items_of(name, tmp_path)
    assert items
    tasks = {item.task for item in items} - {None}
    assert tasks and tasks <= set(reader.evaluators)
    keys = {key for item in items for key in item.annotations}
    assert keys <= set(reader.annotation_keys) or "*" in reader.annotation_keys


def test_a_duplicate_name_is_refused_and_a_reader_can_leave() -> None:
    register_reader(Empty)
    try:
        assert reader_named("empty") is Empty
        with pytest.raises(SettingsError, match="'empty' is registered already"):
            register_reader(Empty)
        with pytest.raises(SettingsError, match="'amber' is registered already"):
            register_reader(type("Other", (Empty,), {"name": "amber"}))
    finally:
        assert unregister_reader("empty") is Empty
    with pytest.raises(SettingsError, match="unknown dataset kind 'empty'"):
        reader_named("empty")
    with pytest.raises(SettingsError, match="no dataset reader named 'empty'"):
        unregister_reader("empty")


def test_a_reader_with_an_unknown_evaluator_or_a_repeated_option_is_refused() -> None:
    with pytest.raises(SettingsError, match="no evaluator"):
        register_reader(type("Judged", (Empty,), {"name": "judged", "evaluators": ("bleu",)}))
    twice = (ReaderOption("split"), ReaderOption("split"))
    with pytest.raises(SettingsError, match=r"\['split'\] more than once"):
        register_reader(type("Twice", (Empty,), {"name": "twice", "options": twice}))
    assert "judged" not in READERS and "twice" not in READERS


def test_options_are_checked_and_text_is_read_as_the_declared_type(tmp_path: Path) -> None:
    files = write_coco(tmp_path)
    root = files.pop("root")
    options = DatasetOptions(
        "coco", root, {**{k: str(v) for k, v in files.items()}, "image_ids": "33, 11"}, 2
    )
    assert options.options["image_ids"] == (33, 11) and options.options["captions"] == files["captions"]
    assert [item.item_id for item in options.open()] == ["33", "11"]
    with pytest.raises(SettingsError, match="the 'coco' reader has no option 'jsonl'; it takes 'captions'"):
        DatasetOptions("coco", root, {**files, "jsonl": "x.jsonl"})
    with pytest.raises(SettingsError, match=r"needs 'instances' \(instances_val2014.json\)"):
        DatasetOptions("coco", root, {"captions": files["captions"]})
    with pytest.raises(SettingsError, match="'image_ids' takes integers, comma-separated, got 'x'"):
        DatasetOptions("coco", root, {**files, "image_ids": "11,x"})
    with pytest.raises(SettingsError, match="limit must be a positive integer"):
        DatasetOptions("coco", root, files, limit=0)
    with pytest.raises(SettingsError, match="unknown dataset kind"):
        DatasetOptions("imagenet", root)


def test_dataset_options_are_frozen_and_round_trip(tmp_path: Path) -> None:
    options = DatasetOptions("toy", tmp_path, {"tasks": "vqa", "nothing": None}, limit=5)
    assert options.options == {"tasks": ("vqa",)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.limit = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        options.options["tasks"] = ("amber",)  # type: ignore[index]
    data = json.loads(json.dumps(options.to_dict()))
    assert data == {
        "kind": "toy",
        "root": str(tmp_path),
        "options": {"tasks": ["vqa"]},
        "limit": 5,
        "ids": None,
    }
    assert DatasetOptions.from_dict(data) == options


@pytest.mark.parametrize(
    ("option", "text", "value"),
    [
        (ReaderOption("n", int), " 3 ", 3),
        (ReaderOption("x", float), "0.5", 0.5),
        (ReaderOption("on", bool), "Yes", True),
        (ReaderOption("on", bool), "0", False),
        (ReaderOption("file", Path), "a/b.json", Path("a/b.json")),
        (ReaderOption("words", str, multiple=True), "a, b,,c", ("a", "b", "c")),
    ],
)
def test_reader_option_reads_text(option: ReaderOption, text: str, value: object) -> None:
    assert option.parse(text) == value


def test_reader_option_refuses_bad_text_and_bad_declarations() -> None:
    for option, text in ((ReaderOption("n", int), "three"), (ReaderOption("on", bool), "maybe"),
                         (ReaderOption("name", str), " ")):  # fmt: skip
        with pytest.raises(SettingsError, match=f"option {option.name!r} takes"):
            option.parse(text)
    with pytest.raises(SettingsError, match="type must be one of"):
        ReaderOption("ids", list)
    with pytest.raises(SettingsError, match="identifier"):
        ReaderOption("my-option")
    with pytest.raises(SettingsError, match="cannot have a default"):
        ReaderOption("file", Path, required=True, default="x")
    assert ReaderOption("ids", int, "which", multiple=True).to_dict()["type"] == "integer"
