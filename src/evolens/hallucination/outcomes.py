"""Per-item outcomes of judged responses, their quality summary, and paired comparisons of two generations of the
same items (a decoding strategy or a layer-skip variant against the original).

An item's outcome is what its evaluator said (:class:`~evolens.data.scores.ItemEvaluation`): ``correct`` when the
response is not hallucinated (a right yes/no or one-word answer; a caption without a flagged object). Items with a
``prior`` annotation (the answer a language prior suggests instead of the truth, as the built-in toy's questions
carry) count a wrong answer equal to the prior as *prior-driven*. Items with an ``atypical`` annotation fall in the
group ``"atypical"`` or ``"typical"``.

Paired comparisons (the same items, two generations): *corrected* items are wrong in the base and right in the other,
*broken* ones right in the base and wrong in the other. The accuracy difference gets a paired bootstrap interval
over items (one draw of items for both), the discordant pairs an exact two-sided McNemar test (a binomial test of
``corrected`` against ``corrected + broken`` at one half).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from evolens.data.evaluation import Evaluation
from evolens.envelope import JsonRecord
from evolens.errors import SettingsError

TYPICAL, ATYPICAL = "typical", "atypical"


@dataclass(frozen=True)
class ItemOutcome(JsonRecord):
    """How one response was judged.

    Attributes:
        item_id: The item.
        task: Its evaluator's task (``"amber-generative"``, ``"amber-discriminative"``, ``"pope"``, ``"chair"``,
            ``"vqa"``).
        correct: The response is not hallucinated.
        answer: The parsed answer of a yes/no or one-word task (``None``: a caption, or unparsed).
        prior: The item's ``prior`` annotation, lower-cased (``None``: none).
        prior_driven: Wrong, and answered with the prior.
        group: ``"typical"`` / ``"atypical"`` from the item's ``atypical`` annotation, else ``None``.
    """

    item_id: str
    task: str
    correct: bool
    answer: str | None
    prior: str | None
    prior_driven: bool
    group: str | None


def item_outcome(judged: Any, annotations: Mapping[str, Any]) -> ItemOutcome:
    """The outcome of one :class:`~evolens.data.scores.ItemEvaluation` with its item's ``annotations``."""
    prior = annotations.get("prior")
    prior = prior.lower() if isinstance(prior, str) else None
    answer = judged.answer.lower() if isinstance(judged.answer, str) else None
    atypical = annotations.get("atypical")
    group = None if not isinstance(atypical, bool) else ATYPICAL if atypical else TYPICAL
    correct = not judged.hallucinated
    return ItemOutcome(
        item_id=judged.item_id,
        task=judged.task,
        correct=correct,
        answer=answer,
        prior=prior,
        prior_driven=not correct and prior is not None and answer == prior,
        group=group,
    )


def item_outcomes(
    evaluation: Evaluation, annotations: Mapping[str, Mapping[str, Any]]
) -> dict[str, ItemOutcome]:
    """``item_id -> ItemOutcome`` of every judged item of ``evaluation``; ``annotations`` maps item ids to their
    items' annotations (``DataItem.annotations``; a missing id reads as no annotations)."""
    return {it.item_id: item_outcome(it, annotations.get(it.item_id, {})) for it in evaluation.items}


def _share(hits: int, n: int) -> float | None:
    return hits / n if n else None


@dataclass(frozen=True)
class Quality(JsonRecord):
    """How good one generation of a set of items is, over the judged items.

    Attributes:
        n_judged: Judged items.
        accuracy: Share of them that are correct (``None`` without items).
        n_prior: Items with a ``prior`` annotation.
        prior_answers: Those answered (wrongly) with the prior.
        prior_rate: ``prior_answers / n_prior``.
        n_typical, accuracy_typical: Items of the ``"typical"`` group and their accuracy.
        n_atypical, accuracy_atypical: The same for ``"atypical"``.
    """

    n_judged: int
    accuracy: float | None
    n_prior: int
    prior_answers: int
    prior_rate: float | None
    n_typical: int
    accuracy_typical: float | None
    n_atypical: int
    accuracy_atypical: float | None

    @classmethod
    def of(cls, outcomes: Mapping[str, ItemOutcome]) -> Quality:
        values = list(outcomes.values())
        n_prior = sum(o.prior is not None for o in values)
        prior_answers = sum(o.prior_driven for o in values)
        by_group = {
            g: (sum(o.group == g for o in values), sum(o.group == g and o.correct for o in values))
            for g in (TYPICAL, ATYPICAL)
        }
        return cls(
            n_judged=len(values),
            accuracy=_share(sum(o.correct for o in values), len(values)),
            n_prior=n_prior,
            prior_answers=prior_answers,
            prior_rate=_share(prior_answers, n_prior),
            n_typical=by_group[TYPICAL][0],
            accuracy_typical=_share(by_group[TYPICAL][1], by_group[TYPICAL][0]),
            n_atypical=by_group[ATYPICAL][0],
            accuracy_atypical=_share(by_group[ATYPICAL][1], by_group[ATYPICAL][0]),
        )


@dataclass(frozen=True)
class PairedComparison(JsonRecord):
    """A generation (``other``) against a base generation of the same items.

    Attributes:
        n_pairs: Items judged in both.
        corrected: Wrong in the base, right in the other.
        broken: Right in the base, wrong in the other.
        prior_corrected: Of the corrected, those the base answered with the prior.
        prior_broken: Of the broken, those the other answered with the prior.
        accuracy_base, accuracy_other: Accuracy of each over the pairs (``None`` without pairs).
        difference: ``accuracy_other - accuracy_base`` (``(corrected - broken) / n_pairs``).
        low, high: Its paired bootstrap interval over items (``None`` without pairs or replicates).
        level: The interval's coverage.
        mcnemar_p: Exact two-sided McNemar p-value of ``corrected`` against ``broken`` (1 when both are 0).
    """

    n_pairs: int
    corrected: int
    broken: int
    prior_corrected: int
    prior_broken: int
    accuracy_base: float | None
    accuracy_other: float | None
    difference: float | None
    low: float | None
    high: float | None
    level: float
    mcnemar_p: float


def mcnemar_exact(corrected: int, broken: int) -> float:
    """Exact two-sided McNemar p-value: ``min(1, 2 * P[X <= min(b, c)])`` for ``X ~ Binomial(b + c, 1/2)``."""
    if corrected < 0 or broken < 0:
        raise SettingsError(f"discordant counts must be >= 0, got {corrected} and {broken}")
    n = corrected + broken
    if n == 0:
        return 1.0
    k = min(corrected, broken)
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, 2 * tail / 2**n)  # integers: 2.0**n overflows a float past n = 1023 discordant pairs


def paired_interval(
    diffs: np.ndarray, *, n_bootstrap: int, level: float, seed: int
) -> tuple[float | None, float | None]:
    """Percentile interval of the mean of per-item ``diffs`` (``[n_items]``) over ``n_bootstrap`` item draws."""
    n = diffs.size
    if n == 0 or n_bootstrap <= 0:
        return None, None
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, n, size=(n_bootstrap, n))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def compare_outcomes(
    base: Mapping[str, ItemOutcome],
    other: Mapping[str, ItemOutcome],
    *,
    n_bootstrap: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Compare ``other`` with ``base`` over the items judged in both (see the module docstring).

    Raises:
        SettingsError: ``level`` not in (0, 1) or a negative ``n_bootstrap``.
    """
    if not 0 < level < 1:
        raise SettingsError(f"level must be in (0, 1), got {level!r}")
    if n_bootstrap < 0:
        raise SettingsError(f"n_bootstrap must be >= 0, got {n_bootstrap!r}")
    ids = [k for k in base if k in other]
    b = np.array([base[k].correct for k in ids], dtype=np.float64)
    o = np.array([other[k].correct for k in ids], dtype=np.float64)
    corrected = [k for k in ids if not base[k].correct and other[k].correct]
    broken = [k for k in ids if base[k].correct and not other[k].correct]
    n = len(ids)
    low, high = paired_interval(o - b, n_bootstrap=n_bootstrap, level=level, seed=seed)
    return PairedComparison(
        n_pairs=n,
        corrected=len(corrected),
        broken=len(broken),
        prior_corrected=sum(base[k].prior_driven for k in corrected),
        prior_broken=sum(other[k].prior_driven for k in broken),
        accuracy_base=_share(int(b.sum()), n),
        accuracy_other=_share(int(o.sum()), n),
        difference=(len(corrected) - len(broken)) / n if n else None,
        low=low,
        high=high,
        level=level,
        mcnemar_p=mcnemar_exact(len(corrected), len(broken)),
    )
