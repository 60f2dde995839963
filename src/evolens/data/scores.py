"""Score dataclasses shared by the benchmarks, and yes/no answer parsing."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evolens.data.labels import Mention
from evolens.envelope import JsonRecord


def ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator``, or ``None`` when nothing was counted."""
    return numerator / denominator if denominator else None


def f1_score(precision: float | None, recall: float | None) -> float | None:
    if precision is None or recall is None:
        return None
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


@dataclass(frozen=True)
class BinaryScores(JsonRecord):
    """Yes/no question answering against labels.

    ``positive`` is the class precision and recall are about: ``"yes"`` for POPE, ``"no"`` for AMBER (its
    ``inference.py`` computes precision and recall of "No" answers). An answer that could not be parsed counts as
    wrong, as neither a positive nor a negative prediction; when its truth is the positive class it lowers the
    recall (AMBER's denominators count every question).

    Attributes:
        positive: The positive class.
        n: Questions.
        tp, fp, tn, fn: Parsed answers against the truth.
        unparsed_positive, unparsed_negative: Unparsed answers whose truth is / is not the positive class.
        n_yes: Answers parsed as "yes".
        accuracy: Correct answers / questions.
        precision: tp / (tp + fp).
        recall: tp / questions whose truth is positive.
        f1: Harmonic mean of precision and recall.
        yes_ratio: Share of questions answered "yes".
    """

    positive: str
    n: int
    tp: int
    fp: int
    tn: int
    fn: int
    unparsed_positive: int
    unparsed_negative: int
    n_yes: int
    accuracy: float | None
    precision: float | None
    recall: float | None
    f1: float | None
    yes_ratio: float | None

    @classmethod
    def from_answers(
        cls, answers: Sequence[str | None], truths: Sequence[str], positive: str
    ) -> BinaryScores:
        """Scores of parsed answers (``"yes"``, ``"no"`` or ``None``) against truths (``"yes"``/``"no"``)."""
        tp = fp = tn = fn = up = un = n_yes = 0
        for answer, truth in zip(answers, truths, strict=True):
            n_yes += answer == "yes"
            if answer is None:
                up += truth == positive
                un += truth != positive
            elif answer == positive:
                tp += truth == positive
                fp += truth != positive
            else:
                fn += truth == positive
                tn += truth != positive
        n = len(truths)
        precision = ratio(tp, tp + fp)
        recall = ratio(tp, tp + fn + up)
        return cls(
            positive=positive,
            n=n,
            tp=tp,
            fp=fp,
            tn=tn,
            fn=fn,
            unparsed_positive=up,
            unparsed_negative=un,
            n_yes=n_yes,
            accuracy=ratio(tp + tn, n),
            precision=precision,
            recall=recall,
            f1=f1_score(precision, recall),
            yes_ratio=ratio(n_yes, n),
        )


LETTERS = re.compile(r"[A-Za-z]+")
WORD = re.compile(r"[A-Za-z0-9']+")


def first_word(text: str, pattern: re.Pattern[str] = WORD) -> tuple[str | None, tuple[int, int] | None]:
    """The first match of ``pattern`` in ``text``, lower-cased, with its character span (``None, None`` if none)."""
    match = pattern.search(text)
    if match is None:
        return None, None
    return match.group(0).lower(), match.span()


def first_word_answer(text: str) -> tuple[str | None, tuple[int, int] | None]:
    """AMBER-style answer: the first word (letters only), if it is "yes" or "no" (any case), else unparsed.

    AMBER's script compares the whole response with ``"Yes"`` / ``"No"``; models add punctuation or a sentence, so
    evolens reads the first word. Returns the answer and the word's character span.
    """
    word, span = first_word(text, LETTERS)
    return (word if word in ("yes", "no") else None), span


def exact_answer(text: str) -> tuple[str | None, tuple[int, int] | None]:
    """AMBER's own rule (its ``inference.py``, the ``"official"`` protocol): ``"yes"`` when the response is exactly
    ``Yes``, ``"no"`` when it is exactly ``No`` — no stripping, case kept — else unparsed (counted wrong)."""
    answer = {"Yes": "yes", "No": "no"}.get(text)
    return answer, ((0, len(text)) if answer is not None else None)


def pope_answer(text: str) -> tuple[str, tuple[int, int] | None]:
    """POPE's rule (its ``evaluate.py``): keep the first sentence, drop commas, split on spaces; "no" if a word is
    ``No``, ``no`` or ``not``, else "yes". Returns the answer and the span of the deciding word (the first such
    word, or the first word for "yes")."""
    first = text.split(".")[0] if "." in text else text
    position = 0
    first_span: tuple[int, int] | None = None
    for raw in first.split(" "):
        start = position
        position += len(raw) + 1
        word = raw.replace(",", "")
        if not word:
            continue
        span = (start, start + len(raw.rstrip(",")))
        if first_span is None and word.strip():
            first_span = span
        if word in ("No", "not", "no"):
            return "no", span
    return "yes", first_span


@dataclass(frozen=True)
class ItemEvaluation:
    """What an evaluator found in one response.

    Attributes:
        item_id: The item.
        task: Its task (``"amber-generative"``, ``"amber-discriminative"``, ``"pope"``, ``"chair"``).
        text: The response that was evaluated.
        mentions: Judged words with their character spans.
        hallucinated: Generative tasks: at least one flagged mention. Yes/no tasks: the answer is wrong.
        answer: Yes/no tasks: the parsed answer (``None``: unparsed).
        truth: Yes/no tasks: the label.
        counts: Task-specific counts (AMBER: ``mentions``, ``flagged``, ``cover_hits``, ``cover_total``,
            ``cog_hits``, ``cog_total``; CHAIR: ``mentions``, ``hallucinated``, ``gt_objects``, ``gt_mentioned``).
    """

    item_id: str
    task: str
    text: str
    mentions: tuple[Mention, ...]
    hallucinated: bool
    answer: str | None = None
    truth: str | None = None
    counts: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "task": self.task,
            "text": self.text,
            "mentions": [m.to_dict() for m in self.mentions],
            "hallucinated": self.hallucinated,
            "answer": self.answer,
            "truth": self.truth,
            "counts": self.counts,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ItemEvaluation:
        return cls(
            item_id=str(data["item_id"]),
            task=str(data["task"]),
            text=str(data["text"]),
            mentions=tuple(Mention.from_dict(m) for m in data["mentions"]),
            hallucinated=bool(data["hallucinated"]),
            answer=data.get("answer"),
            truth=data.get("truth"),
            counts=data.get("counts"),
        )
