"""How well a per-token score separates hallucinated from grounded tokens: AUROC and AUPRC with 95% intervals from a
bootstrap over items, and the ROC curve's points.

The AUROC is :func:`evolens.hallucination.bootstrap.weighted_auroc` (one owner); this module adds the area under the
precision-recall curve (average precision, as scikit-learn's ``average_precision_score``) and the item bootstrap:
each replicate draws the items with replacement and weighs every token by how often its item was drawn (tokens of
one response are not independent).
"""

from __future__ import annotations

import numpy as np

from evolens.hallucination.bootstrap import ItemBootstrap, percentile_interval, weighted_auroc
from evolens.hallucination.stats import Estimate

#: The most points a stored ROC curve keeps (evenly spaced along the curve, both ends included).
ROC_POINTS = 201


def weighted_auprc(
    scores: np.ndarray, positive: np.ndarray, weights: np.ndarray | None = None
) -> float | None:
    """Average precision of ``scores`` (higher = positive) for ``positive``, with optional per-sample weights.

    ``AP = Σ_k (R_k − R_{k−1}) · P_k`` over the distinct score thresholds, highest first (tied scores enter together),
    as ``sklearn.metrics.average_precision_score``. Its chance level is the share of positives. ``None`` when
    there is no positive weight.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    w = np.ones_like(scores) if weights is None else np.asarray(weights, dtype=np.float64)
    w_pos = float(w[positive].sum())
    if w_pos <= 0:
        return None
    values, inverse = np.unique(-scores, return_inverse=True)  # ascending -score: highest score first
    pos_at = np.bincount(inverse, weights=w * positive, minlength=len(values))
    all_at = np.bincount(inverse, weights=w, minlength=len(values))
    tp, taken = np.cumsum(pos_at), np.cumsum(all_at)
    keep = taken > 0
    precision = np.divide(tp, taken, out=np.zeros_like(tp), where=keep)
    return float((pos_at[keep] / w_pos * precision[keep]).sum())


def roc_points(scores: np.ndarray, positive: np.ndarray) -> tuple[list[float], list[float]]:
    """The ROC curve ``(fpr, tpr)`` from ``(0, 0)`` to ``(1, 1)``, one point per distinct score (highest first),
    thinned to at most :data:`ROC_POINTS` points; ``([], [])`` when either class is empty."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return [], []
    values, inverse = np.unique(-scores, return_inverse=True)
    pos_at = np.bincount(inverse, weights=positive, minlength=len(values))
    neg_at = np.bincount(inverse, weights=~positive, minlength=len(values))
    fpr = np.concatenate([[0.0], np.cumsum(neg_at) / n_neg])
    tpr = np.concatenate([[0.0], np.cumsum(pos_at) / n_pos])
    if len(fpr) > ROC_POINTS:
        keep = np.unique(np.linspace(0, len(fpr) - 1, ROC_POINTS).round().astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return [round(float(x), 6) for x in fpr], [round(float(x), 6) for x in tpr]


def score_estimates(
    scores: np.ndarray, positive: np.ndarray, bootstrap: ItemBootstrap
) -> tuple[Estimate, Estimate]:
    """AUROC and AUPRC of ``scores`` for ``positive``, each with its item-bootstrap 95% interval.

    A replicate that drew no positive or no negative token is left out.
    """
    auroc_reps: list[float] = []
    auprc_reps: list[float] = []
    for weights in bootstrap.weights():
        auroc = weighted_auroc(scores, positive, weights)
        if auroc is None:
            continue
        auroc_reps.append(auroc)
        auprc_reps.append(weighted_auprc(scores, positive, weights) or 0.0)
    return (
        Estimate(weighted_auroc(scores, positive), *percentile_interval(auroc_reps)),
        Estimate(weighted_auprc(scores, positive), *percentile_interval(auprc_reps)),
    )
