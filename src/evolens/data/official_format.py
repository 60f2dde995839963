"""Scores as the benchmarks' own scripts print them — for display only: evolens stores exact ratios.

* AMBER's ``inference.py`` starts every denominator at 0.001 (its ``metrics.txt``), prints percentages rounded to one
  decimal, and takes F1 of the *rounded* precision and recall, with 0.0001 added to their sum (0.001 for the
  existence dimension). So a stored F1 of 0.8536 prints 85.3 there, not 85.4.
* CHAIR's ``chair.py`` prints CHAIRs and CHAIRi as percentages with ``%0.01f`` (one decimal).
* POPE's ``evaluate.py`` prints TP, FP, TN, FN and unrounded fractions.

AMBER's script adds to its denominators one item at a time (0.001 + 1 + 1 …); here 0.001 is added to the count
once. The two differ in the last bits of a float, which could change a printed digit only at an exact tie.
"""

from __future__ import annotations

from evolens.data.amber_eval import AmberDiscriminativeScores, AmberGenerativeScores
from evolens.data.chair import ChairScores
from evolens.data.evaluation import Evaluation
from evolens.data.scores import BinaryScores

#: What AMBER's ``metrics.txt`` starts each denominator at.
AMBER_START = 0.001

#: The F1 denominator's addend per dimension in AMBER's ``inference.py`` (existence differs from the others).
AMBER_F1_ADDEND = {"existence": 0.001}
AMBER_F1_ADDEND_DEFAULT = 0.0001

#: Attribute sums three counters (state, number, action), each started at 0.001.
AMBER_PARTS = (
    "overall",
    "existence",
    "attribute",
    "relation",
    "attribute_state",
    "attribute_number",
    "attribute_action",
)


def amber_percent(score: float, count: float, start: float = AMBER_START) -> float:
    """``score / (start + count)`` as AMBER prints it: a percentage rounded to one decimal."""
    return round(score / (start + count) * 100, 1)


def amber_generative_printed(scores: AmberGenerativeScores) -> dict[str, float]:
    """CHAIR, Cover, Hal, Cog as AMBER's ``inference.py`` prints them."""
    n_clean = scores.n_responses - scores.n_hallucinated_responses
    return {
        "CHAIR": amber_percent(scores.n_flagged, scores.n_mentions),
        "Cover": amber_percent(scores.cover_hits, scores.cover_total),
        "Hal": round(100 - n_clean / (AMBER_START + scores.n_responses) * 100, 1),
        "Cog": amber_percent(scores.cog_hits, scores.cog_total),
    }


def amber_binary_printed(scores: BinaryScores, part: str = "overall") -> dict[str, float]:
    """Accuracy, precision, recall and F1 of "No" as AMBER's ``inference.py`` prints them for one ``part``
    (``"overall"``, ``"existence"``, ``"attribute"``, ``"relation"`` or ``"attribute_state"`` …)."""
    start = 3 * AMBER_START if part == "attribute" else AMBER_START
    answered_no = scores.tp + scores.fp
    truth_no = scores.tp + scores.fn + scores.unparsed_positive
    precision = amber_percent(scores.tp, answered_no, start)
    recall = amber_percent(scores.tp, truth_no, start)
    addend = AMBER_F1_ADDEND.get(part, AMBER_F1_ADDEND_DEFAULT)
    p, r = precision / 100, recall / 100
    return {
        "Accuracy": amber_percent(scores.tp + scores.tn, scores.n, start),
        "Precision": precision,
        "Recall": recall,
        "F1": round(2 * p * r / (p + r + addend) * 100, 1),
    }


def amber_discriminative_printed(scores: AmberDiscriminativeScores) -> dict[str, dict[str, float]]:
    """:func:`amber_binary_printed` of every part that had questions."""
    parts = {part: getattr(scores, part) for part in AMBER_PARTS}
    return {part: amber_binary_printed(b, part) for part, b in parts.items() if b is not None and b.n}


def chair_printed(scores: ChairScores) -> dict[str, float | None]:
    """CHAIRs and CHAIRi as CHAIR's ``chair.py`` prints them (percentages, one decimal)."""
    return {
        "CHAIRs": None if scores.chair_s is None else round(scores.chair_s * 100, 1),
        "CHAIRi": None if scores.chair_i is None else round(scores.chair_i * 100, 1),
    }


def pope_printed(scores: BinaryScores) -> dict[str, float | int | None]:
    """The counts and unrounded fractions POPE's ``evaluate.py`` prints (``None`` where it would divide by 0)."""
    return {
        "TP": scores.tp,
        "FP": scores.fp,
        "TN": scores.tn,
        "FN": scores.fn,
        "Accuracy": scores.accuracy,
        "Precision": scores.precision,
        "Recall": scores.recall,
        "F1 score": scores.f1,
        "Yes ratio": scores.yes_ratio,
    }


def official_printed(evaluation: Evaluation) -> dict[str, dict[str, float | int | None]]:
    """Every benchmark of ``evaluation`` as its own script prints it, keyed ``"AMBER generative"``,
    ``"AMBER discriminative, <part>"``, ``"CHAIR"``, ``"POPE"``."""
    out: dict[str, dict[str, float | int | None]] = {}
    if evaluation.amber_generative is not None:
        out["AMBER generative"] = dict(amber_generative_printed(evaluation.amber_generative))
    if evaluation.amber_discriminative is not None:
        for part, values in amber_discriminative_printed(evaluation.amber_discriminative).items():
            out[f"AMBER discriminative, {part}"] = dict(values)
    if evaluation.chair is not None:
        out["CHAIR"] = dict(chair_printed(evaluation.chair))
    if evaluation.pope is not None:
        out["POPE"] = pope_printed(evaluation.pope)
    return out


def official_lines(evaluation: Evaluation) -> list[str]:
    """One line per benchmark part, its scores as the benchmark's script prints them."""

    def shown(value: float | int | None) -> str:
        return "n/a" if value is None else str(value)

    return [
        f"{name} (as its script prints it, {evaluation.protocol} protocol): "
        + "  ".join(f"{key} {shown(value)}" for key, value in values.items())
        for name, values in official_printed(evaluation).items()
    ]
