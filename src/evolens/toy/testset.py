"""The toy world's held-out set on disk, in the formats evolens' readers take.

``export_testset(root, ...)`` writes::

    root/image/toy_0001.png ...          the scenes (64×64 PNG)
    root/scenes.json                     the truth of every image: objects (shape, colour, slot), atypical flag
    root/query/query_generative.json     AMBER: "describe the image ." per image, ids 1..N
    root/query/query_discriminative.json AMBER: yes/no questions (existence, attribute), ids N+1..
    root/query/query_all.json            both
    root/annotations.json                AMBER annotations, indexed by id - 1 (truth: shapes present, hallu: the
                                         plausible absent ones — every other shape of the world; a colour question
                                         about an atypical heart or moon also carries "prior", the answer the
                                         prior suggests)
    root/relation.json, safe_words.txt   AMBER's word lists for the toy vocabulary
    root/vqa.jsonl                       one-word questions {id, image, prompt, task: "vqa", answer, kind, ...}

so ``evolens run -d amber -r root --queries query_all.json`` and ``evolens run -d folder -r root/image --jsonl
root/vqa.jsonl`` read it, and :class:`ToyTestSet` (``evolens run -d toy -r root``) reads all of it as one dataset.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from evolens.data.amber import Amber
from evolens.data.folder import ImageFolder
from evolens.data.items import DataItem, Dataset, absolute_str, read_json, require_dir
from evolens.errors import DatasetError
from evolens.files import atomic_directory
from evolens.toy.evaluate import TEST_SEED, heldout_items, heldout_scenes
from evolens.toy.world import SHAPES, Question, Scene, render

YES_NO_TYPES = {"exists": "discriminative-hallucination", "attribute": "discriminative-attribute-state"}


def image_name(index: int) -> str:
    return f"toy_{index + 1:04d}.png"


def _amber_files(scenes: Sequence[Scene], items: Sequence[tuple[int, Question]]) -> dict[str, Any]:
    generative, discriminative, annotations = [], [], []
    for i, scene in enumerate(scenes):
        generative.append({"id": i + 1, "image": image_name(i), "query": "describe the image ."})
        absent = [s for s in SHAPES if s not in scene.shapes]
        annotations.append({"id": i + 1, "type": "generative", "truth": scene.shapes, "hallu": absent})
    next_id = len(scenes) + 1
    for scene_idx, q in items:
        if q.kind not in YES_NO_TYPES:
            continue
        discriminative.append({"id": next_id, "image": image_name(scene_idx), "query": q.text})
        entry: dict[str, Any] = {"id": next_id, "type": YES_NO_TYPES[q.kind], "truth": q.answer}
        if q.prior_yes_no is not None:
            entry["prior"] = q.prior_yes_no
        annotations.append(entry)
        next_id += 1
    return {
        "query/query_generative.json": generative,
        "query/query_discriminative.json": discriminative,
        "query/query_all.json": generative + discriminative,
        "annotations.json": annotations,
        "relation.json": {shape: [] for shape in SHAPES},
    }


def _vqa_lines(items: Sequence[tuple[int, Question]]) -> list[dict[str, Any]]:
    lines = []
    counters: dict[tuple[int, str], int] = {}
    for scene_idx, q in items:
        if q.kind in YES_NO_TYPES or q.kind == "describe":
            continue
        n = counters[(scene_idx, q.kind)] = counters.get((scene_idx, q.kind), 0) + 1
        entry: dict[str, Any] = {
            "id": f"vqa-{scene_idx + 1:04d}-{q.kind}" + (f"-{n}" if n > 1 else ""),
            "image": image_name(scene_idx),
            "prompt": q.text,
            "task": "vqa",
            "answer": q.answer,
            "kind": q.kind,
            "subject": q.subject,
            "atypical": q.atypical,
        }
        if q.prior_answer is not None:
            entry["prior"] = q.prior_answer
        lines.append(entry)
    return lines


def export_testset(
    root: str | Path,
    *,
    n_typical: int = 50,
    n_atypical: int = 50,
    seed: int = TEST_SEED,
    overwrite: bool = False,
) -> Path:
    """Write the first ``n_typical`` typical and ``n_atypical`` atypical held-out scenes (the same scenes and
    questions ``evolens toy eval`` asks) to ``root``, atomically (see the module docstring)."""
    scenes = heldout_scenes(n_typical, n_atypical, seed)
    items = heldout_items(scenes, seed)
    with atomic_directory(root, overwrite=overwrite) as tmp:
        (tmp / "image").mkdir()
        (tmp / "query").mkdir()
        for i, scene in enumerate(scenes):
            Image.fromarray(render(scene)).save(tmp / "image" / image_name(i))
        truth = [
            {"image": image_name(i), "atypical": s.atypical, "group": "typical" if i < n_typical else "atypical",
             **s.to_dict()}
            for i, s in enumerate(scenes)
        ]  # fmt: skip
        files: dict[str, Any] = {"scenes.json": truth, **_amber_files(scenes, items)}
        for name, data in files.items():
            (tmp / name).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        (tmp / "safe_words.txt").write_text("shape\nshapes\nimage\n", encoding="utf-8")
        (tmp / "vqa.jsonl").write_text(
            "".join(json.dumps(line) + "\n" for line in _vqa_lines(items)), encoding="utf-8"
        )
    return Path(root)


class ToyTestSet(Dataset):
    """An exported toy test set (:func:`export_testset`) as one dataset: the AMBER part (captions, yes/no) then the
    one-word VQA questions, with AMBER's word lists as resources.

    Args:
        root: The exported folder.
        tasks: Which parts: ``"amber"`` (captions and yes/no questions) and/or ``"vqa"``.
    """

    name = "toy"

    def __init__(self, root: str | Path, tasks: Sequence[str] = ("amber", "vqa")) -> None:
        self.root = require_dir(Path(root).expanduser(), "toy test set")
        unknown = [t for t in tasks if t not in ("amber", "vqa")]
        if unknown or not tasks:
            raise DatasetError(f"toy test set tasks must be 'amber' and/or 'vqa', got {list(tasks)}")
        self.tasks = tuple(tasks)
        self._amber = Amber(self.root, "query_all.json")
        self._vqa = ImageFolder(self.root / "image", jsonl=self.root / "vqa.jsonl")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "root": absolute_str(self.root), "tasks": list(self.tasks)}

    def resources(self) -> dict[str, Any]:
        return self._amber.resources()

    def scenes(self) -> dict[str, dict[str, Any]]:
        """The truth of every image, by image file name."""
        data = read_json(self.root / "scenes.json", "toy scene list")
        if not isinstance(data, list):
            raise DatasetError(f"{self.root / 'scenes.json'}: expected a list of scenes")
        return {str(entry["image"]): entry for entry in data}

    def __iter__(self) -> Iterator[DataItem]:
        if "amber" in self.tasks:
            yield from self._amber
        if "vqa" in self.tasks:
            yield from self._vqa

    def __len__(self) -> int:
        return sum(1 for _ in self)


__all__ = ["ToyTestSet", "export_testset"]
