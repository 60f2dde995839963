"""Datasets and hallucination benchmarks: readers (image folders, AMBER, POPE, COCO/CHAIR, the toy test set), their
registry (:mod:`evolens.data.readers`) and their evaluation.

Per-token labels and the dataset statistics of critical and mutation layers are one stage up, in
:mod:`evolens.hallucination`."""

from __future__ import annotations

from evolens.data.amber import Amber
from evolens.data.amber_eval import AmberDiscriminativeScores, AmberGenerativeScores
from evolens.data.annotations import AnnotatedItems, annotated_items, item_annotations
from evolens.data.chair import ChairScores
from evolens.data.coco import Coco
from evolens.data.evaluation import Evaluation, Response, evaluate, evaluate_dataset
from evolens.data.folder import ImageFolder
from evolens.data.items import DataItem, Dataset, ReaderOption, resolve_inside
from evolens.data.labels import Mention
from evolens.data.pope import Pope
from evolens.data.readers import (
    READERS,
    DatasetOptions,
    Reader,
    open_dataset,
    reader_named,
    register_reader,
    unregister_reader,
)
from evolens.data.scores import BinaryScores, ItemEvaluation
from evolens.data.text import TextMethod, TextTools
from evolens.data.toy_testset import ToyTestSet

# The built-in readers: a new benchmark is its module and one line here.
register_reader(ImageFolder)
register_reader(Amber)
register_reader(Pope)
register_reader(Coco)
register_reader(ToyTestSet)

__all__ = [
    "READERS",
    "Amber",
    "AmberDiscriminativeScores",
    "AmberGenerativeScores",
    "AnnotatedItems",
    "BinaryScores",
    "ChairScores",
    "Coco",
    "DataItem",
    "Dataset",
    "DatasetOptions",
    "Evaluation",
    "ImageFolder",
    "ItemEvaluation",
    "Mention",
    "Pope",
    "Reader",
    "ReaderOption",
    "Response",
    "TextMethod",
    "TextTools",
    "ToyTestSet",
    "annotated_items",
    "evaluate",
    "evaluate_dataset",
    "item_annotations",
    "open_dataset",
    "reader_named",
    "register_reader",
    "resolve_inside",
    "unregister_reader",
]
