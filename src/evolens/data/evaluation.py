"""Evaluate responses against their items' annotations: AMBER, POPE, CHAIR and one-word VQA, with per-word
judgements.

Each item's ``annotations["task"]`` picks its evaluator; items without a task are not judged. The result holds the
benchmark scores, one :class:`~evolens.data.scores.ItemEvaluation` per judged item (its mentions map to tokens
with :func:`~evolens.hallucination.token_labels.label_tokens`), the text tools that ran (exact or fallback) and the
protocol (``"official"``: the benchmarks' own scripts; ``"evolens"``: answers read from their first word — see
:mod:`evolens.data.protocols`).
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
from evolens.data.chair import ChairJudge, ChairScores, drop_unfinished_sentence, synonym_groups
from evolens.data.coco import TASK as CHAIR_TASK
from evolens.data.items import DataItem, Dataset
from evolens.data.pope import TASK as POPE_TASK
from evolens.data.pope import judge_pope, pope_scores
from evolens.data.protocols import DEFAULT_PROTOCOL, Protocol, check_protocol
from evolens.data.scores import BinaryScores, ItemEvaluation
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
        protocol: ``"official"`` or ``"evolens"`` (:mod:`evolens.data.protocols`); an evaluation stored before
            protocols existed reads as ``"evolens"``, the rules it was scored with.
        drop_unfinished: Whether captions lost an unfinished last sentence before CHAIR (OPERA's practice;
            :func:`~evolens.data.chair.drop_unfinished_sentence`).
        items: One judgement per judged response, in input order.
        amber_generative, amber_discriminative, pope, chair, vqa: Each benchmark's scores, when it had
            responses (``vqa``: one-word answers, :mod:`evolens.data.vqa`).
        n_unjudged: Responses whose item has no evaluator.
    """

    method: TextMethod
    protocol: Protocol = DEFAULT_PROTOCOL
    drop_unfinished: bool = False
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
        out: dict[str, Any] = {
            "method": self.method.to_dict(),
            "protocol": self.protocol,
            "drop_unfinished": self.drop_unfinished,
            "n_unjudged": self.n_unjudged,
        }
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
            protocol=check_protocol(data.get("protocol", "evolens")),
            drop_unfinished=bool(data.get("drop_unfinished", False)),
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
                f"AMBER generative ({g.n_responses} responses, {self.method.for_amber()} method, {self.protocol} protocol): "
                f"CHAIR {pct(g.chair)}  Cover {pct(g.cover)}  Hal {pct(g.hal)}  Cog {pct(g.cog)}"
            )
        amber = self.amber_discriminative.overall if self.amber_discriminative is not None else None
        pope_tail = f"yes-ratio {pct(self.pope.yes_ratio)}" if self.pope is not None else ""
        binary = (("AMBER discriminative", amber, "(positive class: no)"), ("POPE", self.pope, pope_tail))
        for name, b, tail in binary:
            if b is not None:
                lines.append(
                    f"{name} ({b.n} questions, {self.protocol} protocol): accuracy {pct(b.accuracy)}  precision "
                    f"{pct(b.precision)}  recall {pct(b.recall)}  F1 {pct(b.f1)}  {tail}"
                )
        if self.chair is not None:
            c = self.chair
            lines.append(
                f"CHAIR ({c.n_captions} captions, {self.method.for_chair()} method, {c.synonyms} synonyms, "
                f"{self.protocol} protocol): "
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


def _warn_free_form(discriminative: list[ItemEvaluation], protocol: Protocol) -> None:
    """Say when AMBER's own script would score the yes/no answers differently (answers not exactly Yes/No)."""
    n_free = sum(it.text not in ("Yes", "No") for it in discriminative)
    if not n_free:
        return
    if protocol == "evolens":
        logger.warning(
            "AMBER discriminative: %d of %d answers are not exactly 'Yes' or 'No'; evolens read their first word, "
            "AMBER's script counts them wrong (protocol='official' reproduces it)",
            n_free,
            len(discriminative),
        )
    else:
        logger.warning(
            "AMBER discriminative: %d of %d answers are not exactly 'Yes' or 'No' and count as wrong, as in AMBER's "
            "script (protocol='evolens' reads their first word)",
            n_free,
            len(discriminative),
        )


class _Judges:
    """The evaluators of one evaluation, each built when its first response comes, and what they judged per task."""

    def __init__(
        self,
        resources: Mapping[str, Any],
        tools: TextTools,
        threshold: float,
        protocol: Protocol,
        drop_unfinished: bool = False,
    ) -> None:
        self.drop_unfinished = drop_unfinished
        self.resources = resources
        self.tools = tools
        self.threshold = threshold
        self.protocol = protocol
        self._amber: AmberJudge | None = None
        self._chair: ChairJudge | None = None
        self.judged: dict[str, list[ItemEvaluation]] = {task: [] for task in TASKS}
        self.amber_types: list[str] = []
        self.vqa_annotations: list[Mapping[str, Any]] = []

    def amber(self) -> AmberJudge:
        if self._amber is None:
            if "relation" not in self.resources:
                raise DatasetError("AMBER generative items need the dataset's relation.json (resources)")
            self._amber = AmberJudge(
                self.resources["relation"],
                self.resources.get("safe_words", []),
                self.tools,
                threshold=self.threshold,
                protocol=self.protocol,
            )
        return self._amber

    def chair(self) -> ChairJudge:
        if self._chair is None:
            groups = synonym_groups(self.resources, self.protocol)
            categories = self.resources.get("categories", [])
            self._chair = ChairJudge(groups, categories, self.tools, protocol=self.protocol)
        return self._chair

    def judge(self, response: Response) -> ItemEvaluation | None:
        """Judge one response, or ``None`` when its item has no evaluator."""
        ann, item_id, text = response.annotations, response.item_id, response.text
        task = ann.get("task")
        if task == GENERATIVE:
            judged = self.amber().judge(item_id, text, ann["truth"], ann["hallu"])
        elif task == DISCRIMINATIVE:
            judged = judge_discriminative(item_id, text, ann["truth"], protocol=self.protocol)
            self.amber_types.append(str(ann.get("type", "")))
        elif task == POPE_TASK:
            judged = judge_pope(item_id, text, ann["label"], protocol=self.protocol)
        elif task == CHAIR_TASK:
            objects, references = ann.get("instance_objects", []), ann.get("reference_captions", [])
            caption = drop_unfinished_sentence(text) if self.drop_unfinished else text
            judged = self.chair().judge(item_id, caption, objects, references)
        elif task == VQA_TASK:
            judged = judge_vqa(item_id, text, ann)
            self.vqa_annotations.append(ann)
        else:
            return None
        self.judged[task].append(judged)
        return judged

    def score(self, result: Evaluation) -> None:
        """Set ``result``'s scores of every benchmark that had responses."""
        generative, discriminative = self.judged[GENERATIVE], self.judged[DISCRIMINATIVE]
        if generative:
            result.amber_generative = AmberGenerativeScores.from_items(generative)
        if discriminative:
            _warn_free_form(discriminative, self.protocol)
            result.amber_discriminative = AmberDiscriminativeScores.from_items(
                discriminative, self.amber_types
            )
        if self.judged[POPE_TASK]:
            result.pope = pope_scores(self.judged[POPE_TASK])
        if self.judged[CHAIR_TASK]:
            result.chair = ChairScores.from_items(self.judged[CHAIR_TASK], self.chair().source)
        if self.judged[VQA_TASK]:
            result.vqa = VqaScores.from_items(self.judged[VQA_TASK], self.vqa_annotations)


def evaluate(
    responses: Iterable[Response],
    resources: Mapping[str, Any] | None = None,
    *,
    method: MethodName = "auto",
    tools: TextTools | None = None,
    similarity_threshold: float = SIMILARITY_THRESHOLD,
    protocol: Protocol = DEFAULT_PROTOCOL,
    drop_unfinished: bool = False,
) -> Evaluation:
    """Judge responses with their benchmarks' rules and aggregate the scores.

    Args:
        responses: The responses with their items' annotations.
        resources: The dataset's evaluation resources (``Dataset.resources()``: AMBER's ``relation`` and
            ``safe_words``; COCO's ``synonyms``, ``synonym_lines`` and ``categories``).
        method: Text tools: ``"auto"``, ``"exact"`` or ``"fallback"`` (see :mod:`evolens.data.text`).
        tools: Ready text tools (overrides ``method``).
        similarity_threshold: AMBER's spaCy similarity threshold.
        protocol: ``"official"`` (the benchmarks' own scripts) or ``"evolens"`` (see
            :mod:`evolens.data.protocols`); recorded in the result.
        drop_unfinished: Drop a caption's unfinished last sentence before CHAIR judges it (OPERA's practice, for
            captions cut by ``max_new_tokens``); recorded in the result.

    Raises:
        DatasetError: An item's task needs resources that were not given.
        SettingsError: An unknown protocol or text method.
    """
    protocol = check_protocol(protocol)
    tools = tools or TextTools(method)
    result = Evaluation(method=tools.method, protocol=protocol, drop_unfinished=drop_unfinished)
    judges = _Judges(resources or {}, tools, similarity_threshold, protocol, drop_unfinished)
    for response in responses:
        judged = judges.judge(response)
        if judged is None:
            result.n_unjudged += 1
        else:
            result.items.append(judged)
    judges.score(result)
    return result


def evaluate_dataset(
    dataset: Dataset | Iterable[DataItem],
    responses: Mapping[str, str],
    *,
    method: MethodName = "auto",
    similarity_threshold: float = SIMILARITY_THRESHOLD,
    protocol: Protocol = DEFAULT_PROTOCOL,
    drop_unfinished: bool = False,
) -> Evaluation:
    """Evaluate ``responses`` (item id -> text, e.g. read from AMBER's ``{id, response}`` files) on a dataset, under
    ``protocol`` (``"official"`` or ``"evolens"``) and with ``drop_unfinished`` (see :func:`evaluate`).

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
        protocol=protocol,
        drop_unfinished=drop_unfinished,
    )
