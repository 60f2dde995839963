"""Logit-based yes/no scoring of POPE and AMBER's discriminative task, and the layer-wise yes/no margin.

AMBER's authors scored open models by comparing the logits of "Yes" and "No", and many papers score POPE so: the
answer is the larger of P(yes) and P(no) at the first answer position (generated step 0), each summed over the
tokenizer's single-token spellings of the word (``"Yes"``, ``" Yes"``, ``"yes"``, ...). A trace that tracked those
tokens (``TraceOptions.track``; ``Trace.metrics.tracked_logprobs``, ``[L + 1, T, n_tracked]``) has them at every
layer, so the same comparison made at each layer l gives the **margin** curve

    m(l) = log P_l(yes) - log P_l(no),   l = 0 (embeddings) ... L,

whose last value decides the logit answer. The **decision layer** is the first layer from which the sign of the
margin stays the final one (``None`` when the final margin is exactly 0). A **late flip** is a sign change within the
late window, the last ``ceil(late_fraction * L)`` transitions (layers ``L - ceil(late_fraction * L)`` ... L; 20% by
default): the decision forms only there, i.e. the decision layer lies after the window's first layer.

Everything here is a pure function of numbers; the scores reuse the benchmarks' own scoring
(:func:`~evolens.data.pope.pope_scores`, :class:`~evolens.data.amber_eval.AmberDiscriminativeScores`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from evolens.data.amber import DISCRIMINATIVE
from evolens.data.amber_eval import AmberDiscriminativeScores
from evolens.data.pope import TASK as POPE_TASK
from evolens.data.pope import pope_scores
from evolens.data.scores import BinaryScores, ItemEvaluation
from evolens.errors import SettingsError

#: The tasks whose items are yes/no questions, and the annotation that holds each one's truth.
YESNO_TASKS: Mapping[str, str] = {POPE_TASK: "label", DISCRIMINATIVE: "truth"}
#: Spellings tried for each answer; only those that are one token of the tokenizer count.
SPELLINGS: Mapping[str, tuple[str, ...]] = {
    "yes": ("Yes", " Yes", "yes", " yes", "YES", " YES"),
    "no": ("No", " No", "no", " no", "NO", " NO"),
}
#: The file a run's merge writes into ``results/`` (:mod:`evolens.runs.yesno`).
YESNO_JSON = "yesno.json"
#: Share of the last layers (transitions) in which a sign change of the margin is a late flip.
LATE_FRACTION = 0.2


class Tokenizer(Protocol):
    """What :func:`yes_no_tokens` needs of a tokenizer (any Hugging Face tokenizer)."""

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


@dataclass(frozen=True)
class YesNoTokens:
    """The token ids whose probabilities sum to P(yes) and P(no).

    Attributes:
        yes, no: Token ids of the single-token spellings of each answer (in :data:`SPELLINGS` order, no repeats).
        spellings: ``{spelling: token id}`` of every spelling that is one token.
    """

    yes: tuple[int, ...]
    no: tuple[int, ...]
    spellings: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.yes or not self.no:
            raise SettingsError("yes/no scoring needs at least one token id for 'yes' and one for 'no'")
        if set(self.yes) & set(self.no):
            raise SettingsError(
                f"a token id counts both as yes and no: {sorted(set(self.yes) & set(self.no))}"
            )

    @property
    def ids(self) -> tuple[int, ...]:
        """Every yes id then every no id."""
        return (*self.yes, *self.no)

    def to_dict(self) -> dict[str, Any]:
        return {"yes": list(self.yes), "no": list(self.no), "spellings": dict(self.spellings)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> YesNoTokens:
        return cls(
            tuple(int(i) for i in data["yes"]),
            tuple(int(i) for i in data["no"]),
            {str(k): int(v) for k, v in (data.get("spellings") or {}).items()},
        )


def yes_no_tokens(tokenizer: Tokenizer) -> YesNoTokens:
    """The single-token spellings of "yes" and "no" in ``tokenizer``: a spelling counts when it encodes to exactly
    one token that decodes back to it (so an unknown-word token never counts).

    Raises:
        SettingsError: The tokenizer has no single token for "yes" or for "no".
    """
    found: dict[str, dict[str, int]] = {"yes": {}, "no": {}}
    for answer, spellings in SPELLINGS.items():
        for spelling in spellings:
            ids = tokenizer.encode(spelling, add_special_tokens=False)
            if len(ids) == 1 and tokenizer.decode([ids[0]]).strip() == spelling.strip():
                found[answer][spelling] = int(ids[0])
    for answer, spelled in found.items():
        if not spelled:
            raise SettingsError(
                f"the tokenizer has no single token for {answer!r} (tried {', '.join(map(repr, SPELLINGS[answer]))}); "
                "logit-based yes/no scoring needs one"
            )
    return YesNoTokens(
        tuple(dict.fromkeys(found["yes"].values())),
        tuple(dict.fromkeys(found["no"].values())),
        {**found["yes"], **found["no"]},
    )


def is_yes_no(annotations: Mapping[str, Any]) -> bool:
    """Whether an item is a yes/no question (its ``task`` is POPE's or AMBER's discriminative one)."""
    return annotations.get("task") in YESNO_TASKS


def truth_of(annotations: Mapping[str, Any]) -> str:
    """The right answer (``"yes"``/``"no"``) of a yes/no item."""
    return str(annotations[YESNO_TASKS[str(annotations["task"])]])


def late_window_start(n_layers: int, late_fraction: float = LATE_FRACTION) -> int:
    """The first layer of the late window: ``L - ceil(late_fraction * L)`` (at least one transition)."""
    if not 0 < late_fraction <= 1:
        raise SettingsError(f"late_fraction must be in (0, 1], got {late_fraction}")
    return n_layers - max(1, math.ceil(late_fraction * n_layers))


def decision_layer(margin: np.ndarray) -> int | None:
    """The first layer from which the sign of ``margin`` (``[L + 1]``) stays the final one; ``None`` when the
    final margin is 0."""
    signs = np.sign(margin)
    final = signs[-1]
    if final == 0:
        return None
    other = np.flatnonzero(signs != final)
    return int(other[-1]) + 1 if other.size else 0


@dataclass(frozen=True)
class YesNoCurve:
    """One answer's yes/no probabilities through the layers.

    Attributes:
        logp_yes, logp_no: ``[L + 1]`` natural log of P(yes) and P(no), each summed over its spellings.
        answer: The logit answer: ``"yes"`` or ``"no"``, whichever is more probable at the last layer (``None``:
            a tie).
        decision_layer: See :func:`decision_layer`.
        late_flip: The decision layer lies after the first layer of the late window (module docstring).
    """

    logp_yes: np.ndarray
    logp_no: np.ndarray
    answer: str | None
    decision_layer: int | None
    late_flip: bool

    @property
    def margin(self) -> np.ndarray:
        """``[L + 1]`` log P(yes) - log P(no), nats."""
        return self.logp_yes - self.logp_no


def yes_no_curve(
    tracked_ids: Sequence[int],
    tracked_logprobs: Any,
    tokens: YesNoTokens,
    *,
    step: int = 0,
    late_fraction: float = LATE_FRACTION,
) -> YesNoCurve:
    """The yes/no curve at ``step`` from a trace's tracked log-probabilities.

    Args:
        tracked_ids: The tracked token ids (``metrics.tracked_ids``).
        tracked_logprobs: ``[L + 1, T, n_tracked]`` their natural log-probabilities (``metrics.tracked_logprobs``;
            a tensor or an array).
        tokens: Which ids are yes and which no.
        step: The answer position (0: the first generated token).

    Raises:
        SettingsError: Some yes/no id was not tracked.
    """
    known = [int(i) for i in tracked_ids]
    missing = [i for i in tokens.ids if i not in known]
    if missing:
        raise SettingsError(f"the trace did not track the yes/no token ids {missing}")
    logprobs = np.asarray(tracked_logprobs, dtype=np.float64)[:, step, :]
    logp_yes = _logsumexp(logprobs[:, [known.index(i) for i in tokens.yes]])
    logp_no = _logsumexp(logprobs[:, [known.index(i) for i in tokens.no]])
    margin = logp_yes - logp_no
    answer = "yes" if margin[-1] > 0 else "no" if margin[-1] < 0 else None
    decided = decision_layer(margin)
    n_layers = len(margin) - 1
    late = decided is not None and decided > late_window_start(n_layers, late_fraction)
    return YesNoCurve(logp_yes, logp_no, answer, decided, late)


def _logsumexp(values: np.ndarray) -> np.ndarray:
    top = values.max(axis=-1)
    safe = np.where(np.isfinite(top), top, 0.0)
    return safe + np.log(np.exp(values - safe[:, None]).sum(axis=-1))


@dataclass(frozen=True)
class YesNoItem:
    """One yes/no item scored from its logits: its task, truth, answer from the text and the curve."""

    item_id: str
    task: str
    truth: str
    text_answer: str | None
    curve: YesNoCurve
    type: str = ""

    @property
    def correct(self) -> bool:
        return self.curve.answer == self.truth

    def to_dict(self) -> dict[str, Any]:
        c = self.curve
        return {
            "item_id": self.item_id,
            "task": self.task,
            "type": self.type,
            "truth": self.truth,
            "text_answer": self.text_answer,
            "logit_answer": c.answer,
            "p_yes": float(np.exp(c.logp_yes[-1])),
            "p_no": float(np.exp(c.logp_no[-1])),
            "margin": [float(x) for x in c.margin],
            "decision_layer": c.decision_layer,
            "late_flip": c.late_flip,
        }


def logit_scores(items: Sequence[YesNoItem]) -> dict[str, Any]:
    """POPE and AMBER-discriminative scores of the logit answers (``None`` for a benchmark without items), by the
    benchmarks' own scoring."""
    judged = {
        task: [
            ItemEvaluation(it.item_id, task, "", (), not it.correct, answer=it.curve.answer, truth=it.truth)
            for it in items
            if it.task == task
        ]
        for task in YESNO_TASKS
    }
    amber_types = [it.type for it in items if it.task == DISCRIMINATIVE]
    pope: BinaryScores | None = pope_scores(judged[POPE_TASK]) if judged[POPE_TASK] else None
    amber = (
        AmberDiscriminativeScores.from_items(judged[DISCRIMINATIVE], amber_types)
        if judged[DISCRIMINATIVE]
        else None
    )
    return {
        "pope": pope.to_dict() if pope is not None else None,
        "amber_discriminative": amber.to_dict() if amber is not None else None,
    }


def yes_no_totals(items: Sequence[YesNoItem], late_fraction: float = LATE_FRACTION) -> dict[str, Any]:
    """The dataset's yes/no totals: logit scores, agreement with the text answers, the share of answers decided by
    each layer (and cumulative), the late-flip rate, and the mean margin per layer of right and wrong logit answers.

    ``items`` must share one depth L; an empty sequence gives counts of 0 and ``None`` for the rest.
    """
    n = len(items)
    if not n:
        return {"n_items": 0, "scores": logit_scores([]), "late_fraction": late_fraction}
    n_layers = len(items[0].curve.margin) - 1
    margins = np.stack([it.curve.margin for it in items])
    correct = np.array([it.correct for it in items])
    decided = np.zeros(n_layers + 1)
    for it in items:
        if it.curve.decision_layer is not None:
            decided[it.curve.decision_layer] += 1

    def mean_margin(rows: np.ndarray) -> list[float] | None:
        return [float(x) for x in margins[rows].mean(axis=0)] if rows.any() else None

    return {
        "n_items": n,
        "n_layers": n_layers,
        "scores": logit_scores(items),
        "agreement": sum(it.curve.answer == it.text_answer for it in items) / n,
        "late_fraction": late_fraction,
        "late_window_start": late_window_start(n_layers, late_fraction),
        "late_flip_rate": sum(it.curve.late_flip for it in items) / n,
        "decided_share": [float(x) for x in decided / n],
        "decided_cumulative": [float(x) for x in np.cumsum(decided) / n],
        "median_decision_layer": _median([it.curve.decision_layer for it in items]),
        "mean_margin_correct": mean_margin(correct),
        "mean_margin_wrong": mean_margin(~correct),
    }


def _median(values: Sequence[int | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.median(known)) if known else None


def yes_no_lines(totals: Mapping[str, Any]) -> list[str]:
    """Printed lines of :func:`yes_no_totals`: each benchmark's logit scores, the decision layer and late flips."""

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f}"

    if not totals.get("n_items"):
        return []
    lines = []
    scores = totals["scores"]
    amber = (scores.get("amber_discriminative") or {}).get("overall")
    for name, b in (("AMBER discriminative", amber), ("POPE", scores.get("pope"))):
        if b is not None:
            lines.append(
                f"{name} ({b['n']} questions, logits): accuracy {pct(b['accuracy'])}  precision "
                f"{pct(b['precision'])}  recall {pct(b['recall'])}  F1 {pct(b['f1'])}  yes-ratio {pct(b['yes_ratio'])}"
            )
    median = totals["median_decision_layer"]
    lines.append(
        f"yes/no decision (logits, {totals['n_items']} answers): median decision layer "
        f"{'n/a' if median is None else f'{median:.1f}'} of {totals['n_layers']}; late flips "
        f"{pct(totals['late_flip_rate'])}% (from layer {totals['late_window_start']}); logit and text answers "
        f"agree for {pct(totals['agreement'])}%"
    )
    return lines


__all__ = [
    "LATE_FRACTION",
    "SPELLINGS",
    "YESNO_JSON",
    "YESNO_TASKS",
    "YesNoCurve",
    "YesNoItem",
    "YesNoTokens",
    "decision_layer",
    "is_yes_no",
    "late_window_start",
    "logit_scores",
    "truth_of",
    "yes_no_curve",
    "yes_no_lines",
    "yes_no_tokens",
    "yes_no_totals",
]
