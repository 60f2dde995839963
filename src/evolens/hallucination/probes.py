"""Linear probes for hallucinated tokens, cross-validated with folds grouped by item.

A probe is a logistic regression (inputs standardised on the training folds only, classes weighted to balance) whose
*out-of-fold* probability is a token's score: every token is scored by a probe that never saw its item, since the
folds are grouped by item (``StratifiedGroupKFold``: no item in both train and test, the share of hallucinated tokens
kept similar across folds). The scores are then judged like any other signal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evolens.errors import SettingsError


@dataclass(frozen=True)
class ProbeScores:
    """Out-of-fold results of one probe.

    Attributes:
        scores: ``[n_tokens]`` out-of-fold probability of "hallucinated".
        balanced_accuracy: Mean of the true positive and true negative rates of the out-of-fold predictions
            (threshold 0.5 on the class-balanced probe); 0.5 is chance.
    """

    scores: np.ndarray
    balanced_accuracy: float


def grouped_folds(items: np.ndarray, positive: np.ndarray, n_folds: int, seed: int) -> list[np.ndarray]:
    """``n_folds`` test-index arrays grouped by item (every token of an item in one fold), stratified.

    Raises:
        SettingsError: Fewer than 2 folds, or hallucinated or grounded tokens in fewer items than folds (too few to
            cross-validate).
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if n_folds < 2:
        raise SettingsError(f"a cross-validation needs at least 2 folds, got {n_folds}")
    items = np.asarray(items).astype(str)
    positive = np.asarray(positive, dtype=bool)
    for name, mask in (("hallucinated", positive), ("grounded", ~positive)):
        n_items = len(np.unique(items[mask]))
        if n_items < n_folds:
            raise SettingsError(
                f"too few {name} tokens to cross-validate a probe: {int(mask.sum())} tokens in {n_items} items, "
                f"and {n_folds} folds grouped by item need them in at least {n_folds} items; lower the folds "
                "(--folds, at least 2) or leave the probes out (--no-probes)"
            )
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return [test for _, test in splitter.split(np.zeros(len(items)), positive, groups=items)]


def probe_scores(
    features: np.ndarray, positive: np.ndarray, folds: list[np.ndarray], *, c: float = 1.0
) -> ProbeScores:
    """Out-of-fold scores of a logistic-regression probe on ``features`` (``[n_tokens, n_features]``).

    Args:
        features: The inputs, one row per token (non-finite values are set to 0).
        positive: ``[n_tokens]`` whether each token is hallucinated.
        folds: Test indices of each fold (:func:`grouped_folds`); together they cover every token once.
        c: Inverse L2 regularisation strength of the regression.

    Raises:
        SettingsError: A fold whose training part lacks a class.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.nan_to_num(np.asarray(features, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    y = np.asarray(positive, dtype=bool)
    scores = np.full(len(y), np.nan)
    for test in folds:
        train = np.setdiff1d(np.arange(len(y)), test)
        if y[train].all() or not y[train].any():
            raise SettingsError(
                "a cross-validation fold has only one class to train on; lower the folds (--folds)"
            )
        model = make_pipeline(
            StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
        )
        model.fit(x[train], y[train])
        scores[test] = model.predict_proba(x[test])[:, 1]
    assert not np.isnan(scores).any(), "the folds must cover every token"
    predicted = scores >= 0.5
    balanced = 0.5 * (float(predicted[y].mean()) + float((~predicted[~y]).mean()))
    return ProbeScores(scores, balanced)
