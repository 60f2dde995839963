"""Dataset statistics of critical and mutation layers, on synthetic per-token layers with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from evolens.errors import SettingsError
from evolens.hallucination.stats import LayerStatistics, TokenLayers, layer_statistics, weighted_auroc


def _tokens(rows: list[tuple[str, str | None, bool, int | None, list[int]]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["item", "label", "first", "critical_layer", "mutation_layers"]).astype(
        {"critical_layer": "Int64"}
    )


def _synthetic() -> pd.DataFrame:
    # 4 items, n_layers = 8. Hallucinated first tokens: 4, of which 3 have a mutation layer. Grounded first tokens:
    # 5, of which 1 has one. Tokens that are not first, exempt or unlabelled never enter the comparison.
    return _tokens(
        [
            ("a", "hallucinated", True, 4, [7]),
            ("a", "hallucinated", False, 4, []),  # second token of the same word: ignored with first_token
            ("a", "grounded", True, 5, []),
            ("a", None, False, 3, [6, 8]),
            ("b", "hallucinated", True, 4, [6, 7]),
            ("b", "grounded", True, 5, []),
            ("b", "exempt", True, None, [8]),
            ("c", "hallucinated", True, 3, []),
            ("c", "grounded", True, 4, [7]),
            ("c", "grounded", True, 5, []),
            ("d", "hallucinated", True, 6, [8]),
            ("d", "grounded", True, 4, []),
        ]
    )


def test_counts_shares_and_auroc_by_hand() -> None:
    stats = layer_statistics(_synthetic(), n_layers=8, n_bootstrap=200, seed=1)
    h, g = stats.hallucinated, stats.grounded
    assert (h.n_tokens, h.n_with_mutation, g.n_tokens, g.n_with_mutation) == (4, 3, 5, 1)
    assert stats.tpr == pytest.approx(3 / 4) and stats.fpr == pytest.approx(1 / 5)
    assert stats.auroc.value == pytest.approx((1 + 3 / 4 - 1 / 5) / 2)
    assert stats.share_difference.value == pytest.approx(3 / 4 - 1 / 5)
    # The yes/no AUROC equals the rank AUROC of the 0/1 score.
    labels = [1, 0, 1, 1, 0, 0, 1, 0, 0]
    detected = [1, 0, 1, 0, 1, 0, 1, 0, 0]
    assert stats.auroc.value == pytest.approx(roc_auc_score(labels, detected))
    assert stats.auroc.low is not None and stats.auroc.high is not None
    assert stats.auroc.low <= stats.auroc.value <= stats.auroc.high
    # Distributions over layers 0..8.
    assert h.critical.counts == [0, 0, 0, 1, 2, 0, 1, 0, 0]
    assert h.first_mutation.counts == [0, 0, 0, 0, 0, 0, 1, 1, 1] and h.first_mutation.n_none == 1
    assert h.all_mutations.counts == [0, 0, 0, 0, 0, 0, 1, 2, 1]
    assert h.critical.median == 4.0 and g.critical.mean == pytest.approx(23 / 5)
    # All tokens: every row, whatever its label.
    assert stats.all_tokens.n_tokens == 12 and stats.all_tokens.n_with_mutation == 6
    assert stats.all_tokens.critical.n_none == 1
    assert stats.n_items == 4 and stats.fisher_p is not None and 0 < stats.fisher_p <= 1
    assert LayerStatistics.from_dict(stats.to_dict()) == stats
    lines = stats.summary_lines()
    assert "AUROC" in lines[2]
    assert "of all tokens with a mutation layer" in lines[0]
    assert f"hallucinated: {stats.hallucinated.n_tokens} tokens (each judged word's first token)" in lines[1]


def test_all_tokens_unit_counts_every_token_of_a_word() -> None:
    stats = layer_statistics(_synthetic(), n_layers=8, unit="all_tokens", n_bootstrap=0)
    assert stats.hallucinated.n_tokens == 5 and stats.hallucinated.n_with_mutation == 3
    assert stats.auroc.low is None  # no bootstrap


def test_continuous_score_auroc() -> None:
    frame = _synthetic()
    frame["mutation_score"] = [0.9, 0.1, 0.2, 0.5, 0.8, 0.1, 0.3, 0.4, 0.6, 0.2, 0.7, 0.1]
    stats = layer_statistics(frame, n_layers=8, n_bootstrap=100)
    judged = frame[frame["label"].isin(["hallucinated", "grounded"]) & frame["first"]]
    expected = roc_auc_score(judged["label"] == "hallucinated", judged["mutation_score"])
    assert stats.score_auroc is not None and stats.score_auroc.value == pytest.approx(expected)


def test_undefined_without_hallucinated_tokens() -> None:
    frame = _tokens([("a", "grounded", True, 3, []), ("a", None, False, 2, [4])])
    stats = layer_statistics(frame, n_layers=4)
    assert stats.hallucinated.n_tokens == 0 and stats.hallucinated.share_with_mutation is None
    assert stats.auroc.value is None and stats.auroc.low is None and stats.fisher_p is None


def test_weighted_auroc_matches_sklearn_and_duplication() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=200).astype(float)  # many ties
    positive = rng.random(200) < 0.3
    assert weighted_auroc(scores, positive) == pytest.approx(roc_auc_score(positive, scores))
    weights = rng.integers(0, 3, size=200)
    repeated = np.repeat(np.arange(200), weights)
    assert weighted_auroc(scores, positive, weights) == pytest.approx(
        roc_auc_score(positive[repeated], scores[repeated])
    )
    assert weighted_auroc(scores, np.zeros(200, dtype=bool)) is None


def test_bad_inputs() -> None:
    with pytest.raises(SettingsError, match="unit must be"):
        layer_statistics(_synthetic(), n_layers=8, unit="words")  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="lacks column"):
        layer_statistics(_synthetic().drop(columns=["first"]), n_layers=8)
    with pytest.raises(SettingsError, match=r"layer indices must be in \[0, 5\]"):
        layer_statistics(_synthetic(), n_layers=5)
    with pytest.raises(SettingsError, match="mutation lists"):
        TokenLayers(critical=[1, 2], mutations=[[3]])
    layers = TokenLayers(critical=[1, None], mutations=[[3], []], scores=[0.5, 0.0])
    assert TokenLayers.from_dict(layers.to_dict()) == layers


def test_from_detector_arrays_and_eos() -> None:
    layers = TokenLayers.from_arrays(
        np.array([4, -1, 2]), [[7, 5], [], [3]], scores=np.array([2.0, 0.0, 1.5])
    )
    assert layers == TokenLayers([4, None, 2], [[5, 7], [], [3]], [2.0, 0.0, 1.5])
    frame = _synthetic()
    frame["is_eos"] = False
    frame.loc[len(frame)] = {
        "item": "d",
        "label": None,
        "first": False,
        "critical_layer": 8,
        "mutation_layers": [8],
        "is_eos": True,
    }
    without = layer_statistics(frame, n_layers=8, n_bootstrap=0)
    assert without.all_tokens.n_tokens == 12
    assert layer_statistics(frame, n_layers=8, include_eos=True, n_bootstrap=0).all_tokens.n_tokens == 13
