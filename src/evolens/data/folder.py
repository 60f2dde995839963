"""An image folder with one prompt for every image, or a JSON Lines file of ``{image, prompt}`` entries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

from evolens.data.evaluation import TASKS
from evolens.data.items import (
    IMAGE_EXTENSIONS,
    DataItem,
    Dataset,
    ReaderOption,
    absolute_str,
    item_id_of,
    iter_json_lines,
    prompt_of,
    require_dir,
    resolve_inside,
)
from evolens.data.vqa import TASK as VQA_TASK
from evolens.data.vqa import check_annotations as check_vqa_annotations
from evolens.errors import DatasetError, PromptError


class ImageFolder(Dataset):
    """Images under ``root``, each with a prompt.

    Two forms:

    * ``ImageFolder(root, prompt="Please describe this image in detail.")`` — every image file under ``root``
      (recursively, hidden files and folders skipped, sorted by relative path); the item id is the relative
      path (``"sub/cat.jpg"``).
    * ``ImageFolder(root, jsonl="items.jsonl")`` — one JSON object per line, ``{"image": "cat.jpg", "prompt":
      "..."}``, with optional ``"id"`` (default: the line number) and any other fields, kept as the item's
      annotations. ``prompt`` may then be given as the default for lines without one. Image paths are relative
      to ``root`` and must stay inside it.

    Args:
        root: The image root.
        prompt: The prompt of every image (or the default prompt of JSONL lines).
        jsonl: A JSON Lines file (anywhere; its image paths are resolved inside ``root``).
        extensions: File name endings that count as images when scanning.
    """

    name = "folder"
    options = (
        ReaderOption("prompt", str, "the prompt of every image (or the default of JSONL lines without one)"),
        ReaderOption("jsonl", Path, "a JSON Lines file of {image, prompt, ...} entries"),
        ReaderOption(
            "extensions", str, "file endings that count as images", default=IMAGE_EXTENSIONS, multiple=True
        ),
    )
    evaluators = TASKS  # a JSONL line names its own in "task" (one-word VQA: "vqa")
    annotation_keys = MappingProxyType(
        {
            "task": "the evaluator, when a JSONL line names one",
            "answer": "vqa: the one-word answer",
            "kind": "vqa: the question's kind (scores are split by it)",
            "prior": "vqa: the answer a language prior suggests",
            "truth": "objects in the image (evolens skip)",
            "hallu": "objects that would be hallucinations (evolens skip)",
            "*": "any other field of a JSONL line, kept as it is",
        }
    )

    def __init__(
        self,
        root: str | Path,
        prompt: str | None = None,
        *,
        jsonl: str | Path | None = None,
        extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
    ) -> None:
        self.root = require_dir(Path(root).expanduser(), "image folder")
        self.jsonl = Path(jsonl).expanduser() if jsonl is not None else None
        if prompt is not None:
            prompt_of(prompt, "the folder's prompt")
        elif self.jsonl is None:
            raise PromptError(
                "an image folder needs a prompt for its images, or a JSONL file of {image, prompt}"
            )
        self.prompt = prompt
        self.extensions = tuple(e.lower() for e in extensions)
        self._ids: list[str] | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "root": absolute_str(self.root),
            "prompt": self.prompt,
            "jsonl": absolute_str(self.jsonl) if self.jsonl is not None else None,
        }

    def _scan(self) -> list[str]:
        refs: list[str] = []
        for path in sorted(self.root.rglob("*")):
            rel = path.relative_to(self.root)
            if any(part.startswith(".") for part in rel.parts):
                continue
            if path.suffix.lower() in self.extensions and (path.is_file() or path.is_symlink()):
                refs.append(rel.as_posix())
        return refs

    def __iter__(self) -> Iterator[DataItem]:
        if self.jsonl is None:
            assert self.prompt is not None
            for ref in self._scan():
                image = resolve_inside(self.root, ref, where=f"image folder {self.root}")
                yield DataItem(ref, image, self.prompt, {}, image_ref=ref)
            return
        seen: set[str] = set()
        for number, entry in iter_json_lines(self.jsonl, "image list"):
            where = f"{self.jsonl}, line {number}"
            if not isinstance(entry, dict):
                raise DatasetError(
                    f"{where}: expected an object {{image, prompt}}, got {type(entry).__name__}"
                )
            if "image" not in entry:
                raise DatasetError(f"{where}: missing 'image'")
            image = resolve_inside(self.root, entry["image"], where=where)
            if "prompt" in entry:
                prompt = prompt_of(entry["prompt"], where)
            elif self.prompt is not None:
                prompt = self.prompt
            else:
                raise DatasetError(f"{where}: missing 'prompt' (or give a default prompt for the folder)")
            item_id = item_id_of(entry["id"], where) if "id" in entry else str(number)
            if item_id in seen:
                raise DatasetError(f"{where}: duplicate id {item_id!r}")
            seen.add(item_id)
            extra = {k: v for k, v in entry.items() if k not in ("id", "image", "prompt")}
            if extra.get("task") == VQA_TASK:  # judged after tracing: refused before it
                check_vqa_annotations(extra, where)
            yield DataItem(item_id, image, prompt, extra, image_ref=str(entry["image"]))

    def __len__(self) -> int:
        if self._ids is None:
            self._ids = [item.item_id for item in self]
        return len(self._ids)
