"""Datasets and hallucination benchmarks: readers (image folders, AMBER, POPE, COCO/CHAIR) and their evaluation.

Per-token labels and the dataset statistics of critical and mutation layers are one stage up, in
:mod:`evolens.hallucination`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from evolens.data.amber import Amber
from evolens.data.amber_eval import AmberDiscriminativeScores, AmberGenerativeScores
from evolens.data.chair import ChairScores
from evolens.data.coco import Coco
from evolens.data.evaluation import Evaluation, Response, evaluate, evaluate_dataset
from evolens.data.folder import ImageFolder
from evolens.data.items import DataItem, Dataset, resolve_inside
from evolens.data.labels import Mention
from evolens.data.pope import Pope
from evolens.data.scores import BinaryScores, ItemEvaluation
from evolens.data.text import TextMethod, TextTools
from evolens.errors import SettingsError

READERS: dict[str, Callable[..., Dataset]] = {
    "folder": ImageFolder,
    "amber": Amber,
    "pope": Pope,
    "coco": Coco,
}


def open_dataset(name: str, root: Any, **options: Any) -> Dataset:
    """A reader by name (``"folder"``, ``"amber"``, ``"pope"``, ``"coco"``) over ``root`` with its options.

    Options left as ``None`` take the reader's defaults.
    """
    try:
        reader = READERS[name]
    except KeyError:
        raise SettingsError(f"unknown dataset kind {name!r}; use one of {sorted(READERS)}") from None
    return reader(root, **{k: v for k, v in options.items() if v is not None})


__all__ = [
    "READERS",
    "Amber",
    "AmberDiscriminativeScores",
    "AmberGenerativeScores",
    "BinaryScores",
    "ChairScores",
    "Coco",
    "DataItem",
    "Dataset",
    "Evaluation",
    "ImageFolder",
    "ItemEvaluation",
    "Mention",
    "Pope",
    "Response",
    "TextMethod",
    "TextTools",
    "evaluate",
    "evaluate_dataset",
    "open_dataset",
    "resolve_inside",
]
