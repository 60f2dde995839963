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
root/vqa.jsonl`` read it, and :class:`~evolens.data.toy_testset.ToyTestSet` (``evolens run -d toy -r root``) reads all
of it as one dataset.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from evolens.data.toy_testset import IMAGES, QUERIES, SCENES, VQA_LINES
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
        annotations.append(
            {
                "id": i + 1,
                "type": "generative",
                "truth": scene.shapes,
                "hallu": absent,
                "atypical": scene.atypical,
            }
        )
    next_id = len(scenes) + 1
    for scene_idx, q in items:
        if q.kind not in YES_NO_TYPES:
            continue
        discriminative.append({"id": next_id, "image": image_name(scene_idx), "query": q.text})
        entry: dict[str, Any] = {
            "id": next_id,
            "type": YES_NO_TYPES[q.kind],
            "truth": q.answer,
            "atypical": scenes[scene_idx].atypical,
        }
        if q.prior_yes_no is not None:
            entry["prior"] = q.prior_yes_no
        annotations.append(entry)
        next_id += 1
    return {
        "query/query_generative.json": generative,
        "query/query_discriminative.json": discriminative,
        f"query/{QUERIES}": generative + discriminative,
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
        (tmp / IMAGES).mkdir()
        (tmp / "query").mkdir()
        for i, scene in enumerate(scenes):
            Image.fromarray(render(scene)).save(tmp / IMAGES / image_name(i))
        truth = [
            {"image": image_name(i), "atypical": s.atypical, "group": "typical" if i < n_typical else "atypical",
             **s.to_dict()}
            for i, s in enumerate(scenes)
        ]  # fmt: skip
        files: dict[str, Any] = {SCENES: truth, **_amber_files(scenes, items)}
        for name, data in files.items():
            (tmp / name).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        (tmp / "safe_words.txt").write_text("shape\nshapes\nimage\n", encoding="utf-8")
        (tmp / VQA_LINES).write_text(
            "".join(json.dumps(line) + "\n" for line in _vqa_lines(items)), encoding="utf-8"
        )
    return Path(root)


__all__ = ["export_testset"]
