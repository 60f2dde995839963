"""Token-level detectors: every signal and metric on small hand-made tables with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from evolens.errors import SettingsError, StoreError
from evolens.hallucination.bootstrap import ItemBootstrap
from evolens.hallucination.detect import detect, select_tokens
from evolens.hallucination.detect_results import ALL_ERRORS, DetectOptions, DetectResult
from evolens.hallucination.probes import grouped_folds, probe_scores
from evolens.hallucination.scoring import (
    ROC_POINTS,
    roc_points,
    score_estimates,
    weighted_auprc,
)
from evolens.hallucination.signals import SIGNALS, TokenProfiles, signal_values, token_profiles, top1_layer
from tests.hallucination.detect_data import long_table, synthetic_dataset


# ------------------------------------------------------------------------------------------ scoring
def test_auprc_matches_sklearn_with_ties_and_weights() -> None:
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 6, size=80).astype(float)  # many ties
    positive = rng.random(80) < 0.3
    weights = rng.integers(0, 4, size=80).astype(float)
    assert weighted_auprc(scores, positive) == pytest.approx(average_precision_score(positive, scores))
    assert weighted_auprc(scores, positive, weights) == pytest.approx(
        average_precision_score(positive, scores, sample_weight=weights)
    )
    assert weighted_auprc(scores, np.zeros(80, dtype=bool)) is None


def test_a_separating_score_has_auroc_and_auprc_one_and_reversed_zero() -> None:
    positive = np.array([True, True, False, False, False])
    scores = np.array([0.9, 0.8, 0.3, 0.2, 0.1])
    boot = ItemBootstrap.of(np.array(["a", "b", "c", "d", "e"]), 200, seed=0)
    auroc, auprc = score_estimates(scores, positive, boot)
    assert (auroc.value, auprc.value, auroc.low, auroc.high) == (1.0, 1.0, 1.0, 1.0)
    reversed_auroc, reversed_auprc = score_estimates(-scores, positive, boot)
    assert reversed_auroc.value == 0.0 and reversed_auprc.value == pytest.approx(0.5 * (1 / 4 + 2 / 5))
    assert reversed_auprc.value == pytest.approx(average_precision_score(positive, -scores))


def test_roc_points_run_from_origin_to_one_and_are_thinned() -> None:
    rng = np.random.default_rng(0)
    scores, positive = rng.random(1000), rng.random(1000) < 0.5
    fpr, tpr = roc_points(scores, positive)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert len(fpr) <= ROC_POINTS and np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    # the trapezoid under the full curve is the AUROC
    full_fpr, full_tpr = roc_points(scores[:100], positive[:100])
    assert np.trapezoid(full_tpr, full_fpr) == pytest.approx(
        roc_auc_score(positive[:100], scores[:100]), abs=1e-5
    )
    assert roc_points(scores, np.ones(1000, dtype=bool)) == ([], [])


def test_the_bootstrap_draws_items_whole() -> None:
    items = np.array(["x", "x", "y", "z", "z", "z"])
    boot = ItemBootstrap.of(items, 50, seed=3)
    for weights in boot.weights():
        assert weights[0] == weights[1] and weights[3] == weights[4] == weights[5]
        assert weights[[0, 2, 3]].sum() == 3  # three items drawn per replicate
    assert ItemBootstrap.of(items, 0, seed=0).weights() == []


# ------------------------------------------------------------------------------------------ probes
def test_grouped_folds_never_put_an_item_in_two_folds() -> None:
    items = np.repeat([f"i{k}" for k in range(12)], 3)
    positive = np.tile([True, False, False], 12)
    folds = grouped_folds(items, positive, 4, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(36))
    seen = [set(items[f]) for f in folds]
    for a in range(4):
        for b in range(a + 1, 4):
            assert not seen[a] & seen[b]


def test_too_few_positive_items_to_cross_validate_is_refused() -> None:
    items = np.array(["a", "a", "b", "c", "d", "e"])
    positive = np.array([True, True, False, False, False, False])  # positives in one item only
    with pytest.raises(SettingsError, match="too few hallucinated tokens"):
        grouped_folds(items, positive, 2, seed=0)
    with pytest.raises(SettingsError, match="at least 2 folds"):
        grouped_folds(items, positive, 1, seed=0)


def test_a_probe_reads_a_linearly_coded_label_out_of_fold() -> None:
    rng = np.random.default_rng(0)
    positive = np.tile([True, False, False, False], 20)
    items = np.repeat(np.arange(20), 4)
    features = rng.normal(size=(80, 3))
    features[:, 1] += 4.0 * positive
    folds = grouped_folds(items, positive, 5, seed=0)
    probe = probe_scores(features, positive, folds)
    assert roc_auc_score(positive, probe.scores) > 0.98 and probe.balanced_accuracy > 0.9
    noise = probe_scores(rng.normal(size=(80, 3)), positive, folds)
    assert 0.2 < roc_auc_score(positive, noise.scores) < 0.8


# ------------------------------------------------------------------------------------------ signals
def _profiles(n_layers: int = 3) -> TokenProfiles:
    """Two tokens over states 0..3: token 0 settles at state 1, token 1 is never top-1 at the end."""
    rank = np.array([[5, 1, 1, 1], [1, 1, 1, 2]], dtype=float)
    logprob = np.log(np.array([[0.01, 0.5, 0.6, 0.7], [0.3, 0.4, 0.35, 0.2]]))
    entropy = np.array([[5.0, 2.0, 1.5, 1.0], [2.0, 2.0, 2.0, 3.0]])
    kl = np.array([[4.0, 1.0, 0.5, 0.0], [0.8, 0.6, 0.4, 0.0]])
    jsd = np.array([[0.5, 0.1, 0.05], [0.2, 0.02, 0.4]])
    return TokenProfiles(logprob, rank, entropy, kl, jsd, np.array([0.9, -0.3]))


def test_signals_of_hand_made_tokens() -> None:
    tokens = pd.DataFrame({"critical_layer": [1, None], "mutation_layers": [[], [3]]})
    values = signal_values(tokens, _profiles())
    assert set(values) == {s.name for s in SIGNALS}
    np.testing.assert_allclose(values["final_prob"], [0.7, 0.2])
    np.testing.assert_allclose(values["final_entropy"], [1.0, 3.0])
    np.testing.assert_allclose(values["final_margin"], [0.9, -0.3])
    np.testing.assert_array_equal(values["mutation_detected"], [0.0, 1.0])
    np.testing.assert_allclose(values["mutation_stage_jsd"], [0.0, 0.4])  # transition 2 -> 3 enters state 3
    np.testing.assert_array_equal(values["critical_layer"], [1.0, 4.0])  # none: L + 1
    np.testing.assert_array_equal(values["top1_layer"], [1.0, 4.0])  # not top-1 at L: L + 1
    assert values["kl_last_to_critical"][0] == 1.0 and np.isnan(values["kl_last_to_critical"][1])


def test_top1_layer_is_where_the_token_stays_on_top() -> None:
    ranks = np.array([[1, 1, 1, 1], [1, 2, 1, 1], [2, 2, 2, 1], [1, 1, 1, 3]])
    np.testing.assert_array_equal(top1_layer(ranks), [0, 2, 3, 4])


def test_token_profiles_read_the_long_table_in_token_order() -> None:
    metrics = long_table(["a", "b"], 3, 2)
    tokens = pd.DataFrame({"item": ["b", "a"], "step": [2, 0]})
    profiles = token_profiles(tokens, metrics, 2)
    row = metrics[(metrics["item"] == "b") & (metrics["step"] == 2)].sort_values("layer")
    np.testing.assert_allclose(profiles.logprob[0], row["logprob"])
    np.testing.assert_allclose(profiles.jsd_bits[0], row["jsd_next_bits"][:-1])
    last = row.iloc[-1]
    expected = last["logprob"] - (last["topk_logprobs"][1] if last["rank"] == 1 else last["topk_logprobs"][0])
    assert profiles.final_margin[0] == pytest.approx(expected)
    x, names = profiles.features()
    assert x.shape == (2, len(names)) == (2, 4 * 3 + 2)
    with pytest.raises(SettingsError, match="lacks layers"):
        token_profiles(pd.DataFrame({"item": ["c"], "step": [0]}), metrics, 2)


def test_select_tokens_keeps_first_judged_tokens_without_eos() -> None:
    tokens = pd.DataFrame({
        "item": ["a"] * 5, "step": range(5), "first": [True, False, True, True, True],
        "label": ["hallucinated", "hallucinated", None, "exempt", "grounded"],
        "is_eos": [False, False, False, False, True],
    })  # fmt: skip
    assert select_tokens(tokens)["step"].tolist() == [0]
    assert select_tokens(tokens, "all_tokens")["step"].tolist() == [0, 1]
    with pytest.raises(SettingsError, match="no token is labelled"):
        select_tokens(tokens.assign(label=None))


# ------------------------------------------------------------------------------------------ detect
def test_detect_scores_every_signal_and_splits_error_groups(tmp_path: Path) -> None:
    tokens, profiles, hidden = synthetic_dataset()
    options = DetectOptions(n_bootstrap=100, n_folds=3)
    result = detect(tokens, profiles, options, hidden=hidden)
    assert [t.name for t in result.tables] == [ALL_ERRORS, "prior-driven", "other"]
    table = result.table()
    assert table is not None and (table.n_hallucinated, table.n_grounded, table.n_items) == (10, 80, 30)
    assert [s.name for s in table.scores] == [s.name for s in result.signals]
    final_prob = table.score("final_prob")
    assert final_prob is not None and final_prob.auroc.value == 1.0 and final_prob.auprc.value == 1.0
    assert result.hidden_curve is not None and len(result.hidden_curve.layers) == 3
    by_layer = [e.value or 0.0 for e in result.hidden_curve.auroc]
    assert by_layer[2] > 0.95 and max(by_layer[:2]) < 0.85
    best = table.score("hidden_probe_best")
    assert best is not None and best.auroc.value == by_layer[2]
    prior = result.table("prior-driven")
    assert prior is not None and (prior.n_hallucinated, prior.n_grounded) == (5, 80)
    path = result.save(tmp_path / "detect.json")
    assert DetectResult.load(path) == result
    assert DetectResult.from_dict(result.to_dict()) == result


def test_detect_refuses_what_it_cannot_score() -> None:
    tokens, profiles, hidden = synthetic_dataset()
    with pytest.raises(SettingsError, match="needs hidden states"):
        detect(tokens, profiles, DetectOptions(n_bootstrap=0))
    with pytest.raises(SettingsError, match="both hallucinated and grounded"):
        detect(tokens.assign(label="grounded"), profiles, DetectOptions(hidden_probe=False))
    with pytest.raises(SettingsError, match="too few hallucinated tokens"):
        detect(tokens, profiles, DetectOptions(n_folds=11, n_bootstrap=0), hidden=hidden)
    without_probes = detect(
        tokens, profiles, DetectOptions(n_bootstrap=0, metric_probe=False, hidden_probe=False)
    )
    assert [s.family for s in without_probes.signals] == [s.family for s in SIGNALS]
    with pytest.raises(SettingsError, match="n_folds"):
        DetectOptions(n_folds=1)


def test_a_stored_result_of_another_kind_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"kind": "evolens.other", "schema": 1, "data": {}}')
    with pytest.raises(StoreError, match=r"evolens\.other"):
        DetectResult.load(tmp_path / "x.json")
