"""What a dataset's items say is in their images, as the plain values the experiments take (images, prompts, ids
and :class:`~evolens.analysis.Annotations`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evolens.analysis.compare import Annotations
from evolens.data.items import DataItem
from evolens.errors import EvolensError, SettingsError
from evolens.models.inputs import load_image


def item_annotations(item: DataItem, resources: Mapping[str, Any]) -> Annotations | None:
    """What a dataset item says is in the image and what would be a hallucination, when it says so.

    AMBER generative items: its ``truth`` and ``hallu`` objects. COCO (CHAIR) items: the image's instance
    categories, and every other category of the dataset (``resources["categories"]``) as hallucinations.
    Image-folder JSON Lines: ``truth`` / ``hallu`` (or ``ground_truth`` / ``hallucination``) lists. Others (yes/no
    questions): none. A word given both ways stays ground truth.

    Args:
        item: The item.
        resources: Its dataset's :meth:`~evolens.data.Dataset.resources`.
    """
    ann = item.annotations
    truth: list[str] | None = None
    hallu: list[str] = []
    if item.task == "amber-generative":
        truth, hallu = list(ann.get("truth", [])), list(ann.get("hallu", []))
    elif item.task == "chair":
        truth = list(ann.get("instance_objects", []))
        hallu = [c for c in resources.get("categories") or [] if c not in truth]
    else:
        for t_key, h_key in (("truth", "hallu"), ("ground_truth", "hallucination")):
            if isinstance(ann.get(t_key), list) or isinstance(ann.get(h_key), list):
                truth, hallu = list(ann.get(t_key) or []), list(ann.get(h_key) or [])
                break
    if truth is None:
        return None
    words = {w.lower() for w in truth}
    return Annotations.of(truth, [w for w in hallu if w.lower() not in words])


@dataclass(frozen=True)
class AnnotatedItems:
    """Items as an experiment takes them: one entry per item in each list, in order.

    Attributes:
        images: Image files (``None``: text only).
        prompts: Prompts.
        item_ids: Item ids.
        annotations: What each item says is (and is not) in its image, or ``None``.
    """

    images: list[Path | None]
    prompts: list[str]
    item_ids: list[str]
    annotations: list[Annotations | None]


def annotated_items(
    items: Iterable[DataItem],
    resources: Mapping[str, Any],
    *,
    on_unreadable: Callable[[DataItem, EvolensError], None] | None = None,
) -> AnnotatedItems:
    """The ``items`` whose image opens (or that have none), with their :func:`item_annotations`.

    An item whose image cannot be read is left out and passed to ``on_unreadable`` with the error.

    Raises:
        SettingsError: no item is left.
    """
    readable = []
    for item in items:
        try:
            if item.image is not None:
                load_image(item.image)
        except EvolensError as err:
            if on_unreadable is not None:
                on_unreadable(item, err)
            continue
        readable.append(item)
    if not readable:
        raise SettingsError("no item of the dataset has a readable image")
    return AnnotatedItems(
        images=[i.image for i in readable],
        prompts=[i.prompt for i in readable],
        item_ids=[i.item_id for i in readable],
        annotations=[item_annotations(i, resources) for i in readable],
    )
