"""Evaluate responses against their items' annotations: AMBER, POPE, CHAIR and one-word VQA, with per-word
judgements.

Each item's ``annotations["task"]`` picks its evaluator; items without a task are not judged. The result holds the
benchmark scores, one :class:`~evolens.data.scores.ItemEvaluation` per judged item (its mentions map to tokens
with :func:`~evolens.hallucination.token_labels.label_tokens`), and the text tools that ran (exact or fallback).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from evolens.data.amber import DISCRIMINATIVE, GENERATIVE
from evolens.data.amber_eval import (
    SIMILARITY_THRESHOLD,
    AmberDiscriminativeScores,
    AmberGenerativeScores,
    AmberJudge,
    judge_discriminative,
)
from evolens.data.chair import ChairJudge, ChairScores
from evolens.data.coco import TASK as CHAIR_TASK
from evolens.data.items import DataItem, Dataset
from evolens.data.labels import Mention
from evolens.data.pope import TASK as POPE_TASK
from evolens.data.scores import BinaryScores, ItemEvaluation, pope_answer
from evolens.data.text import MethodName, TextMethod, TextTools
from evolens.data.vqa import TASK as VQA_TASK
from evolens.data.vqa import VqaScores, judge_vqa
from evolens.errors import DatasetError

logger = logging.getLogger(__name__)

TASKS = (GENERATIVE, DISCRIMINATIVE, POPE_TASK, CHAIR_TASK, VQA_TASK)


@dataclass(frozen=True)
class Response:
    """A model's answer to an item.

    Attributes:
        item_id: The item.
        text: The generated text.
        annotations: The item's annotations (``DataItem.annotations``).
    """

    item_id: str
    text: str
    annotations: Mapping[str, Any]


@dataclass(frozen=True)
class ScoreRow:
    """One benchmark score as a reader wants it.

    Attributes:
        benchmark: The benchmark (and part), e.g. ``"AMBER generative"``, ``"AMBER discriminative, existence"``.
        name: The score's name as the benchmark's paper prints it (``"CHAIR"``, ``"F1"``, ``"yes ratio"``...).
        value: A share in [0, 1] for unit ``"%"`` (shown times 100), else a count; ``None`` when undefined.
        unit: ``"%"`` or ``"count"``.
    """

    benchmark: str
    name: str
    value: float | None
    unit: str


def _binary_rows(benchmark: str, b: BinaryScores) -> list[ScoreRow]:
    return [
        ScoreRow(benchmark, "accuracy", b.accuracy, "%"),
        ScoreRow(benchmark, f"precision ({b.positive!r} positive)", b.precision, "%"),
        ScoreRow(benchmark, "recall", b.recall, "%"),
        ScoreRow(benchmark, "F1", b.f1, "%"),
        ScoreRow(benchmark, "yes ratio", b.yes_ratio, "%"),
        ScoreRow(benchmark, "questions", b.n, "count"),
        ScoreRow(benchmark, "unparsed answers", b.unparsed_positive + b.unparsed_negative, "count"),
    ]


@dataclass
class Evaluation:
    """Scores of a set of responses, per benchmark, with the per-item judgements.

    Attributes:
        method: The text tools that ran (``method.for_amber()`` / ``for_chair()``: exact, partial or fallback).
        items: One judgement per judged response, in input order.
        amber_generative, amber_discriminative, pope, chair, vqa: Each benchmark's scores, when it had
            responses (``vqa``: one-word answers, :mod:`evolens.data.vqa`).
        n_unjudged: Responses whose item has no evaluator.
    """

    method: TextMethod
    items: list[ItemEvaluation] = field(default_factory=list)
    amber_generative: AmberGenerativeScores | None = None
    amber_discriminative: AmberDiscriminativeScores | None = None
    pope: BinaryScores | None = None
    chair: ChairScores | None = None
    vqa: VqaScores | None = None
    n_unjudged: int = 0

    def item(self, item_id: str) -> ItemEvaluation | None:
        """The judgement of ``item_id``, or ``None``."""
        for it in self.items:
            if it.item_id == item_id:
                return it
        return None

    def scores(self) -> dict[str, Any]:
        """The benchmark scores alone (JSON-able)."""
        out: dict[str, Any] = {"method": self.method.to_dict(), "n_unjudged": self.n_unjudged}
        for name in ("amber_generative", "amber_discriminative", "pope", "chair", "vqa"):
            value = getattr(self, name)
            out[name] = value.to_dict() if value is not None else None
        return out

    def to_dict(self) -> dict[str, Any]:
        return {**self.scores(), "items": [it.to_dict() for it in self.items]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        return cls(
            method=TextMethod.from_dict(data["method"]),
            items=[ItemEvaluation.from_dict(it) for it in data.get("items", [])],
            amber_generative=AmberGenerativeScores.from_dict(data["amber_generative"])
            if data.get("amber_generative")
            else None,
            amber_discriminative=AmberDiscriminativeScores.from_dict(data["amber_discriminative"])
            if data.get("amber_discriminative")
            else None,
            pope=BinaryScores.from_dict(data["pope"]) if data.get("pope") else None,
            chair=ChairScores.from_dict(data["chair"]) if data.get("chair") else None,
            vqa=VqaScores.from_dict(data["vqa"]) if data.get("vqa") else None,
            n_unjudged=int(data.get("n_unjudged", 0)),
        )

    def score_rows(self) -> list[ScoreRow]:
        """Every score of every benchmark that had responses, named as its paper names it, with its unit."""
        rows: list[ScoreRow] = []
        if (g := self.amber_generative) is not None:
            name = "AMBER generative"
            rows += [
                ScoreRow(name, "CHAIR", g.chair, "%"),
                ScoreRow(name, "Cover", g.cover, "%"),
                ScoreRow(name, "Hal", g.hal, "%"),
                ScoreRow(name, "Cog", g.cog, "%"),
                ScoreRow(name, "responses", g.n_responses, "count"),
                ScoreRow(name, "object mentions", g.n_mentions, "count"),
                ScoreRow(name, "hallucinated mentions", g.n_flagged, "count"),
            ]
        if (d := self.amber_discriminative) is not None:
            for part in ("overall", "existence", "attribute", "relation"):
                scores = getattr(d, part)
                if scores is not None:
                    rows += _binary_rows(f"AMBER discriminative, {part}", scores)
        if self.pope is not None:
            rows += _binary_rows("POPE", self.pope)
        if (c := self.chair) is not None:
            rows += [
                ScoreRow("CHAIR", "CHAIRs", c.chair_s, "%"),
                ScoreRow("CHAIR", "CHAIRi", c.chair_i, "%"),
                ScoreRow("CHAIR", "recall", c.recall, "%"),
                ScoreRow("CHAIR", "captions", c.n_captions, "count"),
                ScoreRow("CHAIR", "object mentions", c.n_mentions, "count"),
            ]
        if (v := self.vqa) is not None:
            rows += [ScoreRow("VQA", "accuracy", v.accuracy, "%"), ScoreRow("VQA", "questions", v.n, "count")]
            rows += [
                ScoreRow("VQA", f"accuracy, {kind}", e["accuracy"], "%") for kind, e in v.by_kind.items()
            ]
            if v.n_prior:
                rows.append(ScoreRow("VQA", "answered with the prior", v.prior_rate, "%"))
        return rows

    def summary_lines(self) -> list[str]:
        """Short human-readable lines, percentages with one decimal as AMBER prints them."""

        def pct(value: float | None) -> str:
            return "n/a" if value is None else f"{100 * value:.1f}"

        lines = []
        if self.amber_generative is not None:
            g = self.amber_generative
            lines.append(
                f"AMBER generative ({g.n_responses} responses, {self.method.for_amber()} method): "
                f"CHAIR {pct(g.chair)}  Cover {pct(g.cover)}  Hal {pct(g.hal)}  Cog {pct(g.cog)}"
            )
        if self.amber_discriminative is not None:
            d = self.amber_discriminative.overall
            lines.append(
                f"AMBER discriminative ({d.n} questions): accuracy {pct(d.accuracy)}  precision {pct(d.precision)}  "
                f"recall {pct(d.recall)}  F1 {pct(d.f1)}  (positive class: no)"
            )
        if self.pope is not None:
            p = self.pope
            lines.append(
                f"POPE ({p.n} questions): accuracy {pct(p.accuracy)}  precision {pct(p.precision)}  "
                f"recall {pct(p.recall)}  F1 {pct(p.f1)}  yes-ratio {pct(p.yes_ratio)}"
            )
        if self.chair is not None:
            c = self.chair
            lines.append(
                f"CHAIR ({c.n_captions} captions, {self.method.for_chair()} method, {c.synonyms} synonyms): "
                f"CHAIRs {pct(c.chair_s)}  CHAIRi {pct(c.chair_i)}  recall {pct(c.recall)}"
            )
        if self.vqa is not None:
            v = self.vqa
            kinds = "  ".join(f"{k} {pct(e['accuracy'])}" for k, e in v.by_kind.items())
            prior = f"  prior answers {v.prior_answers}/{v.n_prior}" if v.n_prior else ""
            lines.append(
                f"VQA ({v.n} questions): accuracy {pct(v.accuracy)}"
                + (f"  [{kinds}]" if kinds else "")
                + prior
            )
        return lines


def _judge_pope(item_id: str, text: str, label: str) -> ItemEvaluation:
    answer, span = pope_answer(text)
    wrong = answer != label
    mentions: tuple[Mention, ...] = ()
    if span is not None:
        mentions = (
            Mention(
                span[0], span[1], text[span[0] : span[1]], answer, "hallucinated" if wrong else "grounded"
            ),
        )
    return ItemEvaluation(item_id, POPE_TASK, text, mentions, wrong, answer=answer, truth=label)


def evaluate(
    responses: Iterable[Response],
    resources: Mapping[str, Any] | None = None,
    *,
    method: MethodName = "auto",
    tools: TextTools | None = None,
    similarity_threshold: float = SIMILARITY_THRESHOLD,
) -> Evaluation:
    """Judge responses with their benchmarks' rules and aggregate the scores.

    Args:
        responses: The responses with their items' annotations.
        resources: The dataset's evaluation resources (``Dataset.resources()``: AMBER's ``relation`` and
            ``safe_words``; COCO's ``synonyms`` and ``categories``).
        method: Text tools: ``"auto"``, ``"exact"`` or ``"fallback"`` (see :mod:`evolens.data.text`).
        tools: Ready text tools (overrides ``method``).
        similarity_threshold: AMBER's spaCy similarity threshold.

    Raises:
        DatasetError: An item's task needs resources that were not given.
    """
    resources = resources or {}
    tools = tools or TextTools(method)
    result = Evaluation(method=tools.method)
    amber: AmberJudge | None = None
    chair: ChairJudge | None = None
    generative: list[ItemEvaluation] = []
    discriminative: list[ItemEvaluation] = []
    types: list[str] = []
    pope: list[ItemEvaluation] = []
    captions: list[ItemEvaluation] = []
    vqa: list[ItemEvaluation] = []
    vqa_annotations: list[Mapping[str, Any]] = []
    for response in responses:
        ann = response.annotations
        task = ann.get("task")
        if task == GENERATIVE:
            if amber is None:
                if "relation" not in resources:
                    raise DatasetError("AMBER generative items need the dataset's relation.json (resources)")
                amber = AmberJudge(
                    resources["relation"],
                    resources.get("safe_words", []),
                    tools,
                    threshold=similarity_threshold,
                )
            judged = amber.judge(response.item_id, response.text, ann["truth"], ann["hallu"])
            generative.append(judged)
        elif task == DISCRIMINATIVE:
            judged = judge_discriminative(response.item_id, response.text, ann["truth"])
            discriminative.append(judged)
            types.append(str(ann.get("type", "")))
        elif task == POPE_TASK:
            judged = _judge_pope(response.item_id, response.text, ann["label"])
            pope.append(judged)
        elif task == CHAIR_TASK:
            if chair is None:
                chair = ChairJudge(resources.get("synonyms"), resources.get("categories", []), tools)
            judged = chair.judge(
                response.item_id,
                response.text,
                ann.get("instance_objects", []),
                ann.get("reference_captions", []),
            )
            captions.append(judged)
        elif task == VQA_TASK:
            judged = judge_vqa(response.item_id, response.text, ann)
            vqa.append(judged)
            vqa_annotations.append(ann)
        else:
            result.n_unjudged += 1
            continue
        result.items.append(judged)
    if generative:
        result.amber_generative = AmberGenerativeScores.from_items(generative)
    if discriminative:
        result.amber_discriminative = AmberDiscriminativeScores.from_items(discriminative, types)
    if pope:
        result.pope = BinaryScores.from_answers(
            [it.answer for it in pope], [str(it.truth) for it in pope], positive="yes"
        )
    if captions:
        assert chair is not None
        result.chair = ChairScores.from_items(captions, chair.source)
    if vqa:
        result.vqa = VqaScores.from_items(vqa, vqa_annotations)
    return result


def evaluate_dataset(
    dataset: Dataset | Iterable[DataItem],
    responses: Mapping[str, str],
    *,
    method: MethodName = "auto",
    similarity_threshold: float = SIMILARITY_THRESHOLD,
) -> Evaluation:
    """Evaluate ``responses`` (item id -> text, e.g. read from AMBER's ``{id, response}`` files) on a dataset.

    Items without a response are skipped; responses for ids the dataset does not have are ignored (with a warning),
    and it is an error when none of the ids match.
    """
    items = list(dataset)
    known = {item.item_id for item in items}
    unknown = [k for k in responses if k not in known]
    if unknown and len(unknown) == len(responses):
        raise DatasetError(f"none of the responses' ids are items of the dataset (e.g. {unknown[:5]})")
    if unknown:
        logger.warning(
            "%d responses name items the dataset does not have (e.g. %s); ignored", len(unknown), unknown[:3]
        )
    resources = dataset.resources() if isinstance(dataset, Dataset) else {}
    return evaluate(
        (
            Response(item.item_id, responses[item.item_id], item.annotations)
            for item in items
            if item.item_id in responses
        ),
        resources,
        method=method,
        similarity_threshold=similarity_threshold,
    )
