"""The reader of the toy world's held-out set as ``evolens toy export`` writes it (:func:`evolens.toy.export_testset`;
the layout is :mod:`evolens.toy.testset`'s): its AMBER part and its one-word VQA questions as one dataset.

It lives in ``data`` with the other readers, so that the registry does not import the toy model's stage above it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from evolens.data.amber import DISCRIMINATIVE, GENERATIVE, Amber
from evolens.data.folder import ImageFolder
from evolens.data.items import DataItem, Dataset, ReaderOption, absolute_str, read_json, require_dir
from evolens.data.vqa import TASK as VQA_TASK
from evolens.errors import DatasetError

#: The exported files this reader reads (:func:`evolens.toy.export_testset` writes them).
IMAGES, QUERIES, VQA_LINES, SCENES = "image", "query_all.json", "vqa.jsonl", "scenes.json"
TASKS = ("amber", "vqa")


class ToyTestSet(Dataset):
    """An exported toy test set (:func:`evolens.toy.export_testset`) as one dataset: the AMBER part (captions,
    yes/no) then the one-word VQA questions, with AMBER's word lists as resources.

    Args:
        root: The exported folder.
        tasks: Which parts: ``"amber"`` (captions and yes/no questions) and/or ``"vqa"``.
    """

    name = "toy"
    options = (ReaderOption("tasks", str, "which parts: amber and/or vqa", default=TASKS, multiple=True),)
    evaluators = (GENERATIVE, DISCRIMINATIVE, VQA_TASK)
    annotation_keys = MappingProxyType(
        {
            **Amber.annotation_keys,
            "task": f"{GENERATIVE!r}, {DISCRIMINATIVE!r} or {VQA_TASK!r}",
            "answer": "vqa: the one-word answer",
            "kind": "vqa: the question's kind (color, shape, slot_color, count)",
            "subject": "vqa: the shape the question is about",
            "atypical": "vqa: whether the scene is an atypical one",
            "prior": "the answer the language prior suggests, when it differs from the truth",
        }
    )

    def __init__(self, root: str | Path, tasks: Sequence[str] = TASKS) -> None:
        self.root = require_dir(Path(root).expanduser(), "toy test set")
        unknown = [t for t in tasks if t not in TASKS]
        if unknown or not tasks:
            raise DatasetError(f"toy test set tasks must be 'amber' and/or 'vqa', got {list(tasks)}")
        self.tasks = tuple(tasks)
        self._amber = Amber(self.root, QUERIES)
        self._vqa = ImageFolder(self.root / IMAGES, jsonl=self.root / VQA_LINES)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "root": absolute_str(self.root), "tasks": list(self.tasks)}

    def resources(self) -> dict[str, Any]:
        return self._amber.resources()

    def scenes(self) -> dict[str, dict[str, Any]]:
        """The truth of every image, by image file name."""
        data = read_json(self.root / SCENES, "toy scene list")
        if not isinstance(data, list):
            raise DatasetError(f"{self.root / SCENES}: expected a list of scenes")
        return {str(entry["image"]): entry for entry in data}

    def __iter__(self) -> Iterator[DataItem]:
        if "amber" in self.tasks:
            yield from self._amber
        if "vqa" in self.tasks:
            yield from self._vqa

    def __len__(self) -> int:
        return sum(1 for _ in self)
