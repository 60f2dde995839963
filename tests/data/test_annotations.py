"""Dataset items as experiment inputs: what each says is (and is not) in its image, unreadable images left out."""

from __future__ import annotations

from pathlib import Path

import pytest

from evolens.analysis import Annotations
from evolens.data import AnnotatedItems, DataItem, annotated_items, item_annotations
from evolens.errors import EvolensError, SettingsError
from tests.data.fixtures import write_image


def test_item_annotations_per_dataset() -> None:
    amber = DataItem("1", None, "p", {"task": "amber-generative", "truth": ["dog"], "hallu": ["cat", "Dog"]})
    assert item_annotations(amber, {}) == Annotations.of(
        ["dog"], ["cat"]
    )  # a word in both stays ground truth
    coco = DataItem("9", None, "p", {"task": "chair", "instance_objects": ["dog", "car"]})
    assert item_annotations(coco, {"categories": ["car", "cat", "dog", "kite"]}) == Annotations.of(
        ["dog", "car"], ["cat", "kite"]
    )
    folder = DataItem("a.jpg", None, "p", {"ground_truth": ["tree"], "hallucination": ["boat"]})
    assert item_annotations(folder, {}) == Annotations.of(["tree"], ["boat"])
    short = DataItem("b.jpg", None, "p", {"truth": ["sky"]})  # a truth list alone: nothing is a hallucination
    assert item_annotations(short, {}) == Annotations.of(["sky"], [])
    pope = DataItem("3", None, "p", {"task": "pope", "label": "yes"})
    assert item_annotations(pope, {}) is None


def test_annotated_items_leave_out_unreadable_images(tmp_path: Path) -> None:
    good = write_image(tmp_path / "good.png", seed=1)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    items = [
        DataItem("a", good, "describe", {"truth": ["dog"], "hallu": ["cat"]}),
        DataItem("b", tmp_path / "missing.png", "describe"),
        DataItem("c", broken, "describe"),
        DataItem("d", None, "what is a dog?"),
    ]
    left_out: list[tuple[str, EvolensError]] = []
    inputs = annotated_items(items, {}, on_unreadable=lambda item, err: left_out.append((item.item_id, err)))
    assert inputs == AnnotatedItems(
        images=[good, None],
        prompts=["describe", "what is a dog?"],
        item_ids=["a", "d"],
        annotations=[Annotations.of(["dog"], ["cat"]), None],
    )
    assert [i for i, _ in left_out] == ["b", "c"]
    assert all(isinstance(err, EvolensError) for _, err in left_out)


def test_annotated_items_refuse_when_no_image_opens(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="no item of the dataset has a readable image"):
        annotated_items([DataItem("a", tmp_path / "missing.png", "describe")], {})
