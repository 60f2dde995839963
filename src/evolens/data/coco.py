"""MSCOCO captions and instances, for CHAIR (Rohrbach et al., 2018).

Files: ``captions_val2014.json`` (``{"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}``),
``instances_val2014.json`` (``{"categories": [{"id", "name"}], "annotations": [{"image_id", "category_id"}]}``)
and CHAIR's synonym list (``synonyms.txt`` of the CHAIR repository: one line per COCO object, ``"node word,
synonym, synonym, ..."``, the first word naming the object). The items are the images of the captions file; an
image's ground-truth objects are the categories of its instances plus the COCO objects its reference captions
mention (worked out at evaluation time, with the same word rules as the generated captions).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

from evolens.data.items import (
    DataItem,
    Dataset,
    ReaderOption,
    absolute_str,
    prompt_of,
    read_json,
    require_dir,
    require_file,
    resolve_inside,
)
from evolens.errors import DatasetError

TASK = "chair"
DEFAULT_PROMPT = "Please describe this image in detail."


def read_synonyms(path: Path) -> list[list[str]]:
    """CHAIR's synonym list: one list per line, node word first (``"word, synonym, ..."``)."""
    require_file(path, "CHAIR synonym list")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot read {path}: {err}") from None
    groups = [[w.strip() for w in line.strip().split(",")] for line in lines if line.strip()]
    for number, group in enumerate(groups, start=1):
        if not all(group):
            raise DatasetError(f"{path}, line {number}: empty word in {', '.join(group)!r}")
    if not groups:
        raise DatasetError(f"{path} is empty; expected lines such as 'dining table, table, desk'")
    return groups


class Coco(Dataset):
    """COCO images with their reference captions and instance categories, for CHAIR.

    Args:
        root: The image folder (``val2014``); ``file_name`` s are resolved inside it.
        captions: The captions file.
        instances: The instances file.
        synonyms: CHAIR's synonym list. Without it only the category names themselves are recognised as object
            words (documented fallback; the numbers are then not comparable with published CHAIR values).
        prompt: The prompt for every image.
        image_ids: Only these images (in this order); default: every image of the captions file, by id.
    """

    name = "coco"
    options = (
        ReaderOption("captions", Path, "captions_val2014.json", required=True),
        ReaderOption("instances", Path, "instances_val2014.json", required=True),
        ReaderOption("synonyms", Path, "CHAIR's synonyms.txt"),
        ReaderOption("prompt", str, "the prompt for every image", default=DEFAULT_PROMPT),
        ReaderOption("image_ids", int, "only these images, in this order", multiple=True),
    )
    evaluators = (TASK,)
    annotation_keys = MappingProxyType(
        {
            "task": repr(TASK),
            "image_id": "COCO's id of the image",
            "instance_objects": "the categories of the image's instances",
            "reference_captions": "the image's COCO captions",
        }
    )

    def __init__(
        self,
        root: str | Path,
        captions: str | Path,
        instances: str | Path,
        *,
        synonyms: str | Path | None = None,
        prompt: str = DEFAULT_PROMPT,
        image_ids: Sequence[int] | None = None,
    ) -> None:
        self.root = require_dir(Path(root).expanduser(), "COCO image folder")
        self.captions_path = require_file(Path(captions).expanduser(), "COCO captions file")
        self.instances_path = require_file(Path(instances).expanduser(), "COCO instances file")
        self.synonyms_path = Path(synonyms).expanduser() if synonyms is not None else None
        if self.synonyms_path is not None:
            require_file(self.synonyms_path, "CHAIR synonym list")
        self.prompt = prompt_of(prompt, "the COCO prompt")
        self.image_ids = list(image_ids) if image_ids is not None else None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "root": absolute_str(self.root),
            "captions": absolute_str(self.captions_path),
            "instances": absolute_str(self.instances_path),
            "synonyms": absolute_str(self.synonyms_path) if self.synonyms_path else None,
            "prompt": self.prompt,
            "image_ids": self.image_ids,
        }

    @cached_property
    def _captions(self) -> tuple[dict[int, str], dict[int, list[str]]]:
        data = read_json(self.captions_path, "COCO captions file")
        path = self.captions_path
        if not isinstance(data, dict) or not isinstance(data.get("images"), list):
            raise DatasetError(f"{path}: expected an object with 'images' and 'annotations' lists")
        files: dict[int, str] = {}
        for index, image in enumerate(data["images"]):
            if (
                not isinstance(image, dict)
                or not isinstance(image.get("id"), int)
                or "file_name" not in image
            ):
                raise DatasetError(
                    f"{path}, images[{index}]: expected {{id: int, file_name: str}}, got {image!r}"
                )
            files[image["id"]] = image["file_name"]
        captions: dict[int, list[str]] = defaultdict(list)
        for index, ann in enumerate(data.get("annotations", [])):
            if not isinstance(ann, dict) or not isinstance(ann.get("caption"), str) or "image_id" not in ann:
                raise DatasetError(
                    f"{path}, annotations[{index}]: expected {{image_id, caption}}, got {ann!r}"
                )
            if ann["image_id"] not in files:
                raise DatasetError(
                    f"{path}, annotations[{index}]: image_id {ann['image_id']!r} is not in 'images'"
                )
            captions[ann["image_id"]].append(ann["caption"])
        return files, dict(captions)

    @cached_property
    def _instances(self) -> tuple[list[str], dict[int, set[str]]]:
        data = read_json(self.instances_path, "COCO instances file")
        path = self.instances_path
        if not isinstance(data, dict) or not isinstance(data.get("categories"), list):
            raise DatasetError(f"{path}: expected an object with 'categories' and 'annotations' lists")
        names: dict[int, str] = {}
        for index, cat in enumerate(data["categories"]):
            if (
                not isinstance(cat, dict)
                or not isinstance(cat.get("id"), int)
                or not isinstance(cat.get("name"), str)
            ):
                raise DatasetError(
                    f"{path}, categories[{index}]: expected {{id: int, name: str}}, got {cat!r}"
                )
            names[cat["id"]] = cat["name"]
        objects: dict[int, set[str]] = defaultdict(set)
        for index, ann in enumerate(data.get("annotations", [])):
            if not isinstance(ann, dict) or "image_id" not in ann or "category_id" not in ann:
                raise DatasetError(f"{path}, annotations[{index}]: expected {{image_id, category_id}}")
            if ann["category_id"] not in names:
                raise DatasetError(
                    f"{path}, annotations[{index}]: unknown category_id {ann['category_id']!r}"
                )
            objects[ann["image_id"]].add(names[ann["category_id"]])
        return sorted(set(names.values())), dict(objects)

    @cached_property
    def synonyms(self) -> list[list[str]] | None:
        """CHAIR's synonym groups, or ``None`` when no list was given."""
        return read_synonyms(self.synonyms_path) if self.synonyms_path is not None else None

    def resources(self) -> dict[str, Any]:
        categories, _ = self._instances
        synonyms = self.synonyms
        # CHAIR's own parser reads the raw lines (protocol "official": evolens.data.chair.synonym_groups)
        lines = self.synonyms_path.read_text(encoding="utf-8").splitlines() if self.synonyms_path else None
        return {"synonyms": synonyms, "synonym_lines": lines, "categories": categories}

    def _selected(self) -> list[int]:
        files, _ = self._captions
        if self.image_ids is None:
            return sorted(files)
        unknown = [i for i in self.image_ids if i not in files]
        if unknown:
            raise DatasetError(f"image id(s) {unknown[:5]} are not in {self.captions_path}")
        return list(self.image_ids)

    def __iter__(self) -> Iterator[DataItem]:
        files, captions = self._captions
        _, objects = self._instances
        for image_id in self._selected():
            where = f"{self.captions_path}, image {image_id}"
            image = resolve_inside(self.root, files[image_id], where=where)
            annotations = {
                "task": TASK,
                "image_id": image_id,
                "instance_objects": sorted(objects.get(image_id, ())),
                "reference_captions": captions.get(image_id, []),
            }
            yield DataItem(str(image_id), image, self.prompt, annotations, image_ref=files[image_id])

    def __len__(self) -> int:
        return len(self._selected())
