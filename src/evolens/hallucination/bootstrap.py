"""The numbers behind :func:`evolens.hallucination.layer_statistics`'s intervals and AUROCs: a weighted AUROC,
a bootstrap over items (tokens of one response are not independent) and the percentile interval of its replicates.
Pure functions of NumPy arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def weighted_auroc(
    scores: np.ndarray, positive: np.ndarray, weights: np.ndarray | None = None
) -> float | None:
    """AUROC of ``scores`` for ``positive`` (ties count one half), with optional per-sample weights.

    ``None`` when either class has no weight.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    w = np.ones_like(scores) if weights is None else np.asarray(weights, dtype=np.float64)
    w_pos, w_neg = float(w[positive].sum()), float(w[~positive].sum())
    if w_pos <= 0 or w_neg <= 0:
        return None
    values, inverse = np.unique(scores, return_inverse=True)
    pos_at = np.bincount(inverse, weights=w * positive, minlength=len(values))
    neg_at = np.bincount(inverse, weights=w * ~positive, minlength=len(values))
    neg_below = np.cumsum(neg_at) - neg_at
    area = float((pos_at * (neg_below + 0.5 * neg_at)).sum())
    return area / (w_pos * w_neg)


def percentile_interval(replicates: list[float]) -> tuple[float | None, float | None]:
    """The 95% interval (2.5% and 97.5% percentiles) of bootstrap ``replicates``, ``None`` and NaN left out;
    ``(None, None)`` when none is left."""
    finite = [r for r in replicates if r is not None and not math.isnan(r)]
    if not finite:
        return None, None
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


@dataclass(frozen=True)
class ItemBootstrap:
    """Replicate weights of a bootstrap over items, shared by every score of one set of tokens.

    Attributes:
        token_item: ``[n_tokens]`` index of each token's item.
        draws: ``[n_bootstrap, n_items]`` how often each item was drawn in each replicate.
    """

    token_item: np.ndarray
    draws: np.ndarray

    @classmethod
    def of(cls, items: np.ndarray, n_bootstrap: int, seed: int) -> ItemBootstrap:
        """Replicates for tokens whose items are ``items`` (``[n_tokens]`` ids), seeded."""
        unique, token_item = np.unique(np.asarray(items).astype(str), return_inverse=True)
        n_items = len(unique)
        if n_bootstrap <= 0 or n_items == 0:
            return cls(token_item, np.zeros((0, n_items)))
        rng = np.random.default_rng(seed)
        draws = rng.multinomial(n_items, np.full(n_items, 1.0 / n_items), size=n_bootstrap)
        return cls(token_item, draws.astype(np.float64))

    def weights(self) -> list[np.ndarray]:
        """Each replicate's ``[n_tokens]`` token weights."""
        return [d[self.token_item] for d in self.draws]


def bootstrap_over_items(
    items: np.ndarray,
    positive: np.ndarray,
    detected: np.ndarray,
    scores: np.ndarray | None,
    *,
    n_bootstrap: int,
    seed: int,
) -> tuple[list[float], list[float], list[float]]:
    """Bootstrap replicates of the share difference, the yes/no AUROC and (with ``scores``) the score AUROC, over
    items (tokens of one response are not independent): each replicate re-weights every item by how often it is
    drawn; one without a positive or a negative token is skipped."""
    diff_reps: list[float] = []
    auroc_reps: list[float] = []
    score_reps: list[float] = []
    replicates = ItemBootstrap.of(items, n_bootstrap, seed)
    item_index, draws = replicates.token_item, replicates.draws
    n_items = draws.shape[1]
    if len(draws) == 0:
        return diff_reps, auroc_reps, score_reps
    pos_n = np.bincount(item_index, weights=positive, minlength=n_items)
    pos_m = np.bincount(item_index, weights=positive & detected, minlength=n_items)
    neg_n = np.bincount(item_index, weights=~positive, minlength=n_items)
    neg_m = np.bincount(item_index, weights=~positive & detected, minlength=n_items)
    for weights in draws:
        p, n = float(weights @ pos_n), float(weights @ neg_n)
        if p == 0 or n == 0:
            continue
        t, f = float(weights @ pos_m) / p, float(weights @ neg_m) / n
        diff_reps.append(t - f)
        auroc_reps.append((1 + t - f) / 2)
        if scores is not None:
            value = weighted_auroc(scores, positive, weights[item_index])
            if value is not None:
                score_reps.append(value)
    return diff_reps, auroc_reps, score_reps
