"""One-word VQA with an exact answer: ``{"task": "vqa", "answer": "red"}`` in a JSON Lines item.

Any JSONL dataset (:class:`~evolens.data.ImageFolder` with ``jsonl=``) can carry these annotations; the toy world's
held-out set does (``evolens toy export``). Optional fields: ``kind`` (question kind, scores are also split by it)
and ``prior`` (an answer a language prior suggests instead of the truth: answering it is counted apart, as a
prior-driven error).

The response's answer is its first word (lower case, punctuation dropped); it is right when it equals the
annotation's ``answer``. The answer word is the judged mention: *grounded* when right, *hallucinated* when wrong,
so its tokens split every layer metric like the other benchmarks' mentions do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from evolens.data.labels import Label, Mention
from evolens.data.scores import ItemEvaluation, first_word, ratio
from evolens.errors import DatasetError

TASK = "vqa"


def check_annotations(annotations: Mapping[str, Any], where: str) -> None:
    """Refuse a VQA item without a one-word answer (named item)."""
    answer = annotations.get("answer")
    if not isinstance(answer, str) or len(answer.split()) != 1:
        raise DatasetError(f"{where}: a 'vqa' item needs a one-word 'answer', got {answer!r}")


def judge_vqa(item_id: str, text: str, annotations: Mapping[str, Any]) -> ItemEvaluation:
    """Judge one answer (see the module docstring)."""
    check_annotations(annotations, f"item {item_id}")
    truth = str(annotations["answer"]).lower()
    answer, span = first_word(text)
    wrong = answer != truth
    mentions: tuple[Mention, ...] = ()
    if answer is not None and span is not None:
        label: Label = "hallucinated" if wrong else "grounded"
        mentions = (Mention(span[0], span[1], text[span[0] : span[1]], answer, label),)
    prior = annotations.get("prior")
    counts = {"prior": int(answer is not None and isinstance(prior, str) and answer == prior.lower())}
    return ItemEvaluation(item_id, TASK, text, mentions, wrong, answer=answer, truth=truth, counts=counts)


@dataclass(frozen=True)
class VqaScores:
    """Exact-answer accuracy of one-word VQA.

    Attributes:
        n: Questions.
        correct: Right answers.
        accuracy: ``correct / n``.
        by_kind: ``{kind: {"n", "correct", "accuracy"}}`` for items with a ``kind`` annotation.
        n_prior, prior_answers: Questions with a ``prior`` annotation, and how many were answered with the prior.
        prior_rate: ``prior_answers / n_prior`` (``None`` without such questions).
    """

    n: int
    correct: int
    accuracy: float | None
    by_kind: dict[str, dict[str, Any]] = field(default_factory=dict)
    n_prior: int = 0
    prior_answers: int = 0
    prior_rate: float | None = None

    @classmethod
    def from_items(
        cls, items: Sequence[ItemEvaluation], annotations: Sequence[Mapping[str, Any]]
    ) -> VqaScores:
        by_kind: dict[str, dict[str, Any]] = {}
        n_prior = prior_answers = 0
        for item, ann in zip(items, annotations, strict=True):
            kind = ann.get("kind")
            if isinstance(kind, str):
                entry = by_kind.setdefault(kind, {"n": 0, "correct": 0})
                entry["n"] += 1
                entry["correct"] += int(not item.hallucinated)
            if isinstance(ann.get("prior"), str):
                n_prior += 1
                prior_answers += (item.counts or {}).get("prior", 0)
        for entry in by_kind.values():
            entry["accuracy"] = ratio(entry["correct"], entry["n"])
        correct = sum(not it.hallucinated for it in items)
        return cls(
            n=len(items),
            correct=correct,
            accuracy=ratio(correct, len(items)),
            by_kind=dict(sorted(by_kind.items())),
            n_prior=n_prior,
            prior_answers=prior_answers,
            prior_rate=ratio(prior_answers, n_prior),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "correct": self.correct,
            "accuracy": self.accuracy,
            "by_kind": self.by_kind,
            "n_prior": self.n_prior,
            "prior_answers": self.prior_answers,
            "prior_rate": self.prior_rate,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VqaScores:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
