"""POPE (Li et al., 2023): "Is there a <object> in the image?" questions with yes/no labels.

A question file has one JSON object per line (a JSON array is accepted too)::

    {"question_id": 1, "image": "COCO_val2014_000000310196.jpg", "text": "Is there a snowboard in the image?",
     "label": "yes"}

Image names are resolved inside the image folder (COCO val2014 for the official files).

Answers are scored as POPE's ``evaluate.py`` scores them (:func:`~evolens.data.scores.pope_answer`), under both
protocols: evolens reads POPE's answers exactly as POPE does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

from evolens.data.items import (
    DataItem,
    Dataset,
    ReaderOption,
    absolute_str,
    item_id_of,
    iter_json_lines,
    prompt_of,
    read_json,
    require_dir,
    require_file,
    resolve_inside,
)
from evolens.data.labels import Label, Mention
from evolens.data.protocols import DEFAULT_PROTOCOL, Protocol, check_protocol
from evolens.data.scores import BinaryScores, ItemEvaluation, pope_answer
from evolens.errors import DatasetError, SettingsError

TASK = "pope"


def judge_pope(
    item_id: str, text: str, label: str, *, protocol: Protocol = DEFAULT_PROTOCOL
) -> ItemEvaluation:
    """One POPE answer against its label (both protocols: POPE's ``evaluate.py`` rule); the deciding word is the
    mention."""
    check_protocol(protocol)
    answer, span = pope_answer(text)
    wrong = answer != label
    mentions: tuple[Mention, ...] = ()
    if span is not None:
        label_of: Label = "hallucinated" if wrong else "grounded"
        mentions = (Mention(span[0], span[1], text[span[0] : span[1]], answer, label_of),)
    return ItemEvaluation(item_id, TASK, text, mentions, wrong, answer=answer, truth=label)


def pope_scores(items: list[ItemEvaluation]) -> BinaryScores:
    """POPE's scores of judged answers ("yes" is the positive class)."""
    return BinaryScores.from_answers(
        [it.answer for it in items], [str(it.truth) for it in items], positive="yes"
    )


class Pope(Dataset):
    """A POPE question file over an image folder.

    Args:
        root: The image folder.
        questions: The question file (JSON Lines; e.g. ``coco_pope_adversarial.json``).
        template: How a question becomes the prompt; ``{question}`` is replaced by the question's text
            (default: the question alone; LLaVA's evaluation appends " Answer the question using a single word or
            phrase.").
    """

    name = "pope"
    options = (
        ReaderOption("questions", Path, "a POPE question file, JSON Lines", required=True),
        ReaderOption("template", str, "prompt template containing {question}", default="{question}"),
    )
    evaluators = (TASK,)
    annotation_keys = MappingProxyType(
        {
            "task": repr(TASK),
            "question_id": "POPE's id of the question",
            "label": "the right answer, 'yes' or 'no'",
        }
    )

    def __init__(self, root: str | Path, questions: str | Path, *, template: str = "{question}") -> None:
        self.root = require_dir(Path(root).expanduser(), "POPE image folder")
        self.questions = require_file(Path(questions).expanduser(), "POPE question file")
        if "{question}" not in template:
            raise SettingsError(f"the POPE prompt template must contain '{{question}}', got {template!r}")
        self.template = template
        self._n: int | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "root": absolute_str(self.root),
            "questions": absolute_str(self.questions),
            "template": self.template,
        }

    def _entries(self) -> Iterator[tuple[str, Any]]:
        with self.questions.open(encoding="utf-8") as fh:
            first = fh.read(1024).lstrip()
        if first.startswith("["):
            data = read_json(self.questions, "POPE question file")
            for index, entry in enumerate(data):
                yield f"{self.questions}, entry {index}", entry
        else:
            for number, entry in iter_json_lines(self.questions, "POPE question file"):
                yield f"{self.questions}, line {number}", entry

    def __iter__(self) -> Iterator[DataItem]:
        seen: set[str] = set()
        for where, entry in self._entries():
            if not isinstance(entry, dict):
                raise DatasetError(f"{where}: expected an object {{question_id, image, text, label}}")
            missing = [k for k in ("question_id", "image", "text", "label") if k not in entry]
            if missing:
                raise DatasetError(f"{where}: missing {', '.join(repr(m) for m in missing)}")
            item_id = item_id_of(entry["question_id"], where)
            if item_id in seen:
                raise DatasetError(f"{where}: duplicate question_id {item_id!r}")
            seen.add(item_id)
            label = entry["label"]
            if not isinstance(label, str) or label.strip().lower() not in ("yes", "no"):
                raise DatasetError(f"{where}: 'label' must be 'yes' or 'no', got {json.dumps(label)}")
            question = prompt_of(entry["text"], where, "text")
            image = resolve_inside(self.root, entry["image"], where=where)
            annotations = {"task": TASK, "question_id": entry["question_id"], "label": label.strip().lower()}
            yield DataItem(
                item_id,
                image,
                self.template.replace("{question}", question),
                annotations,
                image_ref=entry["image"],
            )

    def __len__(self) -> int:
        if self._n is None:
            self._n = sum(1 for _ in self)
        return self._n
