from __future__ import annotations

import json
import math

import numpy as np
import pytest

from evolens.analysis import (
    NOT_FOUND,
    DetectorParams,
    TraceAnalysis,
    analyze_metrics,
)
from evolens.errors import SettingsError, StoreError
from tests.analysis.synthetic import make_metrics, step_jsd, step_probs

L = 16


def _three_tokens() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token 0: critical 9 (prob 8), no mutation. Token 1: critical 6, mutation at 13 (spike + flip).
    Token 2: flat JSD (no critical layer), never-high probability."""
    rng = np.random.default_rng(1)
    probs = np.stack(
        [
            step_probs(rng, L, 8),
            np.r_[rng.uniform(0, 0.01, 13), [0.7, 0.8, 0.8, 0.9]],  # the generated token wins only at 13
            np.full(L + 1, 0.01),
        ],
        axis=1,
    )
    jsd = np.stack(
        [
            step_jsd(rng, L, 9).jsd,
            step_jsd(rng, L, 6, [12]).jsd,
            np.full(L, 0.02),
        ],
        axis=1,
    )
    top1 = np.zeros((L + 1, 3), dtype=np.int64)
    top1[:, 0] = 0
    top1[:, 1] = np.r_[[5] * 13, [1] * 4]  # a correct token 5 led until the mutation at 13
    top1[:, 2] = 2
    return probs, jsd, top1


def test_analyze_metrics_known_layers() -> None:
    probs, jsd, top1 = _three_tokens()
    metrics = make_metrics(
        probs, jsd, top1_ids=top1, top1_probs=np.full((L + 1, 3), 0.6), target_ids=np.arange(3)
    )
    a = analyze_metrics(metrics, tokens=[" a", " dog", "."], item_id="x", ends_with_eos=True)
    assert a.n_layers == L and a.n_steps == 3
    assert a.critical_layer_jsd.tolist() == [9, 6, NOT_FOUND]
    assert a.critical_layer_prob.tolist() == [8, 13, NOT_FOUND]
    assert a.critical_layer.tolist() == [9, 6, NOT_FOUND]
    assert a.mutation_layer.tolist() == [NOT_FOUND, 13, NOT_FOUND]
    (mutation,) = a.mutations[1]
    assert mutation.is_spike and mutation.is_flip and (mutation.token_before, mutation.token_after) == (5, 1)
    stages = a.stages
    assert stages.shape == (L + 1, 3)
    assert stages[:, 0].tolist() == [0] * 9 + [1] * 8
    assert stages[:, 1].tolist() == [0] * 6 + [1] * 7 + [2] * 4
    assert (stages[:, 2] == -1).all()
    # agreement: token 0 differs by 1 (tolerance max(1, round(.05 * 16)) = 1), token 1 by 7, token 2 undecided
    assert a.agreement().tolist() == [1, 0, -1]
    assert a.is_eos.tolist() == [False, False, True]
    assert a.agreement_rate() == 0.5
    assert a.agreement_rate(include_eos=True) == 0.5
    assert math.isnan(a.plateau_jsd[2]) and a.plateau_jsd[0] < 0.01 < a.rapid_jsd[0]


def test_stage_critical_and_fallback() -> None:
    probs, jsd, top1 = _three_tokens()
    jsd[:, 0] = 0.02  # token 0 loses its JSD critical layer
    metrics = make_metrics(probs, jsd, top1_ids=top1, top1_probs=np.full((L + 1, 3), 0.6))
    a = analyze_metrics(metrics)
    assert (
        a.critical_layer_jsd[0] == NOT_FOUND and a.critical_layer[0] == 8
    )  # fell back to the probability one
    b = analyze_metrics(metrics, DetectorParams(stage_fallback=False))
    assert b.critical_layer[0] == NOT_FOUND
    c = analyze_metrics(metrics, DetectorParams(stage_critical="prob"))
    assert c.critical_layer.tolist()[:2] == [8, 13]
    d = analyze_metrics(metrics, DetectorParams(prob_curve="top1"))
    # top-1 probability 0.6 everywhere: already high at the first analysed state, no surge
    assert (d.critical_layer_prob == NOT_FOUND).all()


def test_round_trip_and_save(tmp_path) -> None:
    probs, jsd, top1 = _three_tokens()
    a = analyze_metrics(make_metrics(probs, jsd, top1_ids=top1), tokens=["a", "b", "c"], item_id="img-1")
    data = a.to_dict()
    json.dumps(data, allow_nan=False)  # strict JSON: no NaN
    b = TraceAnalysis.from_dict(data)
    for name in ("critical_layer_prob", "critical_layer_jsd", "critical_layer", "mutation_layer", "stages"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert b.mutations == a.mutations and b.tokens == a.tokens and b.params == a.params
    assert np.allclose(a.plateau_jsd, b.plateau_jsd, equal_nan=True)
    path = a.save(tmp_path)  # a directory receives analysis.json
    assert path == tmp_path / "analysis.json"
    c = TraceAnalysis.load(tmp_path)
    assert c.item_id == "img-1" and np.array_equal(c.stages, a.stages)
    (tmp_path / "other.json").write_text(json.dumps({"kind": "something", "schema": 1, "data": {}}))
    with pytest.raises(StoreError, match=r"not 'evolens\.trace_analysis'"):
        TraceAnalysis.load(tmp_path / "other.json")
    with pytest.raises(StoreError, match="does not exist"):
        TraceAnalysis.load(tmp_path / "missing.json")


def test_bad_inputs() -> None:
    probs, jsd, _top1 = _three_tokens()
    metrics = make_metrics(probs, jsd)
    with pytest.raises(SettingsError, match="token strings"):
        analyze_metrics(metrics, tokens=["a"])
    with pytest.raises(SettingsError, match="first_layer"):
        analyze_metrics(metrics, DetectorParams(first_layer=15))


def _last_layer_jumps(n_tokens: int = 10):
    """Every token's last transition jumps (a layer effect); tokens 0 and 1 also spike at transition 19."""
    rng = np.random.default_rng(3)
    n = 24
    probs = np.stack([step_probs(rng, n, 12) for _ in range(n_tokens)], axis=1)
    jsd = np.stack([step_jsd(rng, n, 12, [19] if t < 2 else []).jsd for t in range(n_tokens)], axis=1)
    jsd[-1] = rng.uniform(0.25, 0.35, n_tokens)
    return probs, jsd


def test_layer_baseline_separates_layer_effects_from_mutations() -> None:
    probs, jsd = _last_layer_jumps()
    metrics = make_metrics(probs, jsd)
    a = analyze_metrics(metrics)
    assert a.baseline_jsd is not None and a.baseline_jsd[-1] > 0.2
    assert a.mutation_layers == [[20], [20]] + [[]] * 8
    off = analyze_metrics(metrics, DetectorParams(spike_layer_ratio=0.0))
    assert off.baseline_jsd is None
    assert off.mutation_layers == [[20, 24], [20, 24]] + [[24]] * 8
    # a trace too short for its own baseline (a one-word answer) gets one from the dataset
    short = make_metrics(probs[:, :2], jsd[:, :2])
    assert analyze_metrics(short).mutation_layers == [[20, 24], [20, 24]]
    given = analyze_metrics(short, baseline_jsd=np.median(jsd, axis=1))
    assert given.mutation_layers == [[20], [20]]
    assert TraceAnalysis.from_dict(given.to_dict()).baseline_jsd.tolist() == given.baseline_jsd.tolist()
    with pytest.raises(SettingsError, match="baseline_jsd"):
        analyze_metrics(short, baseline_jsd=[0.1, 0.2])


def test_jsd_baseline_over_traces() -> None:
    from evolens.analysis import jsd_baseline
    from tests.analysis.synthetic import make_trace

    probs, jsd = _last_layer_jumps()
    traces = [
        make_trace(make_metrics(probs[:, :5], jsd[:, :5]), eos=True),
        make_trace(make_metrics(probs[:, 5:], jsd[:, 5:])),
    ]
    expected = np.median(np.concatenate([jsd[:, :4], jsd[:, 5:]], axis=1), axis=1)
    np.testing.assert_allclose(jsd_baseline(traces), expected, rtol=1e-6)
