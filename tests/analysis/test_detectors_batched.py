"""The critical layers of many curves at once (``jsd_change_layers``, ``critical_layers_from_jsd``,
``critical_layers_from_prob``) are the per-curve definitions: checked against the definitions written out as loops
(``evolens.testing.detectors``: what evolens computed before they were vectorised), on curves with ties, zeros, tiny
negative values (the paper's reduction), surges cut at the last layer, and any depth."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evolens.analysis import (
    NOT_FOUND,
    DetectorParams,
    critical_layer_from_jsd,
    critical_layer_from_prob,
    critical_layers_from_jsd,
    critical_layers_from_prob,
    jsd_change_layers,
    jsd_change_point,
    mutation_layers,
    mutation_layers_by_token,
    stage_critical_layers,
    stage_jsd_medians,
)
from evolens.analysis import detectors as detectors_module
from evolens.analysis.detectors import stage_critical_layer
from evolens.errors import SettingsError
from evolens.testing.detectors import loop_change_point, loop_critical_layer_from_prob, loop_mutation_layers
from evolens.testing.detectors import loop_critical_layer as loop_critical


def step_jsd(n_layers: int, critical: int, *, high: float, low: float) -> np.ndarray:
    """``high`` on the transitions before ``critical``, ``low`` from it on."""
    return np.where(np.arange(n_layers) < critical, high, low)


VALUES = st.one_of(
    st.sampled_from([0.0, 0.001, 0.01, 0.1, 0.5, 1.0]),  # ties and flat runs
    st.floats(0.0, 1.0),
    st.floats(1e-9, 1e-3),
    st.sampled_from([-1e-12, -1e-7]),  # the paper's reduction can round below 0
)


@st.composite
def curves_and_params(draw: st.DrawFn) -> tuple[np.ndarray, DetectorParams]:
    n_layers = draw(st.integers(3, 40))
    n_tokens = draw(st.integers(1, 6))
    kind = draw(st.sampled_from(["any", "steps"]))
    if kind == "steps":  # a drop to a plateau at a random layer, with noise and an occasional spike
        columns = []
        for _ in range(n_tokens):
            c = draw(st.integers(1, n_layers - 1))
            curve = step_jsd(n_layers, c, high=draw(st.floats(0.05, 0.9)), low=draw(st.floats(1e-4, 0.05)))
            noise = np.array(draw(st.lists(st.floats(0.5, 2.0), min_size=n_layers, max_size=n_layers)))
            columns.append(curve * noise)
        jsd = np.stack(columns, axis=1)
    else:
        flat = draw(st.lists(VALUES, min_size=n_layers * n_tokens, max_size=n_layers * n_tokens))
        jsd = np.array(flat, dtype=np.float64).reshape(n_layers, n_tokens)
    params = DetectorParams(
        first_layer=draw(st.integers(0, min(3, n_layers - 2))),  # deeper is refused (check_depth)
        persistence=draw(st.sampled_from([0.0, 0.1, 0.25])),
        jsd_reduction=draw(st.sampled_from(["bits", "paper"])),
    )
    return jsd, params


@settings(max_examples=300, deadline=None)
@given(curves_and_params())
def test_batched_change_points_and_critical_layers_are_the_loop_definition(case) -> None:
    jsd, params = case
    expected_split = [loop_change_point(jsd[:, t], params) for t in range(jsd.shape[1])]
    expected_critical = [loop_critical(jsd[:, t], params) for t in range(jsd.shape[1])]
    assert jsd_change_layers(jsd, params).tolist() == expected_split
    assert critical_layers_from_jsd(jsd, params).tolist() == expected_critical
    for t in range(jsd.shape[1]):  # one curve at a time: the same functions
        assert jsd_change_point(jsd[:, t], params).layer == expected_split[t]
        assert critical_layer_from_jsd(jsd[:, t], params) == expected_critical[t]


def test_change_point_statistics_are_those_of_the_segments() -> None:
    curve = step_jsd(32, 12, high=0.6, low=0.01) * np.linspace(0.8, 1.2, 32)
    cp = jsd_change_point(curve, DetectorParams())
    assert cp.layer == 12
    assert cp.median_before == float(np.median(curve[1:12]))
    assert cp.median_after == float(np.median(curve[12:]))
    assert cp.mean_before == float(curve[1:12].mean())
    assert cp.mean_after == float(curve[12:].mean())


def test_masked_medians_are_numpy_medians_to_the_bit() -> None:
    rng = np.random.default_rng(3)
    values = rng.standard_normal((40, 7)) * 10.0 ** rng.integers(-8, 3, (40, 7))
    starts, stops = rng.integers(0, 20, 7), rng.integers(21, 41, 7)
    rows = np.arange(40)[:, None]
    medians = detectors_module._masked_medians(values, (rows >= starts) & (rows < stops))
    for t in range(7):
        assert medians[t] == np.median(values[starts[t] : stops[t], t])


def test_columns_are_found_the_same_across_blocks(monkeypatch) -> None:
    """Many columns go in blocks (bounded work arrays): the block boundaries change nothing."""
    rng = np.random.default_rng(0)
    n_layers, n_tokens = 24, 50
    critical = rng.integers(2, 20, n_tokens)
    jsd = np.stack([step_jsd(n_layers, int(c), high=0.5, low=0.01) for c in critical], axis=1)
    jsd *= rng.uniform(0.7, 1.3, (n_layers, n_tokens))
    whole = critical_layers_from_jsd(jsd)
    monkeypatch.setattr(detectors_module, "_CHANGE_POINT_ELEMENTS", 3 * 24 * 22)  # 3 columns per block
    assert critical_layers_from_jsd(jsd).tolist() == whole.tolist()
    assert whole.tolist() == [loop_critical(jsd[:, t], DetectorParams()) for t in range(n_tokens)]
    assert (whole != NOT_FOUND).all()


def test_bad_curves_are_refused_in_one_line() -> None:
    with pytest.raises(SettingsError, match="2-D"):
        critical_layers_from_jsd(np.zeros(8))
    with pytest.raises(SettingsError, match="NaN or infinite"):
        jsd_change_layers(np.full((8, 2), np.nan))
    with pytest.raises(SettingsError, match="NaN or infinite"):
        critical_layers_from_prob(np.full((9, 2), np.inf))
    with pytest.raises(SettingsError, match="at least 2 decoder layers"):
        critical_layers_from_prob(np.ones((2, 3)))
    assert critical_layers_from_jsd(np.zeros((8, 0))).tolist() == []
    assert critical_layers_from_prob(np.zeros((9, 0))).tolist() == []


PROBS = st.one_of(
    st.sampled_from([0.0, 0.01, 0.04, 0.05, 0.25, 0.5, 1.0]),  # ties, exactly at theta and at prob_min_peak
    st.floats(0.0, 1.0),
)


@st.composite
def prob_curves_and_params(draw: st.DrawFn) -> tuple[np.ndarray, DetectorParams]:
    n_layers = draw(st.integers(2, 40))
    n_tokens = draw(st.integers(1, 6))
    flat = draw(st.lists(PROBS, min_size=(n_layers + 1) * n_tokens, max_size=(n_layers + 1) * n_tokens))
    probs = np.array(flat, dtype=np.float64).reshape(n_layers + 1, n_tokens)
    if draw(
        st.booleans()
    ):  # a surge: low, then high from a random state on (possibly only at the last states)
        at = draw(st.integers(1, n_layers))
        probs[at:] = np.maximum(probs[at:], draw(st.floats(0.3, 1.0)))
        probs[:at] *= draw(st.floats(0.0, 0.2))
    params = DetectorParams(
        first_layer=draw(st.integers(0, min(3, n_layers - 2))),
        persistence=draw(st.sampled_from([0.0, 0.1, 0.25, 0.5])),
        prob_rel=draw(st.sampled_from([0.25, 0.5, 0.9])),
    )
    return probs, params


@settings(max_examples=300, deadline=None)
@given(prob_curves_and_params())
def test_batched_probability_critical_layers_are_the_loop_definition(case) -> None:
    probs, params = case
    expected = [loop_critical_layer_from_prob(probs[:, t], params) for t in range(probs.shape[1])]
    assert critical_layers_from_prob(probs, params).tolist() == expected
    assert [critical_layer_from_prob(probs[:, t], params) for t in range(probs.shape[1])] == expected


@st.composite
def mutation_cases(draw: st.DrawFn):
    n_layers = draw(st.integers(2, 36))
    n_tokens = draw(st.integers(1, 5))
    jsd = np.array(
        draw(st.lists(VALUES, min_size=n_layers * n_tokens, max_size=n_layers * n_tokens)), dtype=np.float64
    ).reshape(n_layers, n_tokens)
    jsd = np.abs(jsd)  # spikes over a plateau: some large values among small ones
    critical = np.array(draw(st.lists(st.integers(-1, n_layers), min_size=n_tokens, max_size=n_tokens)))
    size = (n_layers + 1) * n_tokens
    ids = np.array(draw(st.lists(st.integers(0, 2), min_size=size, max_size=size))).reshape(
        n_layers + 1, n_tokens
    )
    probs = np.array(draw(st.lists(PROBS, min_size=size, max_size=size)), dtype=np.float64).reshape(ids.shape)
    baseline = None
    if draw(st.booleans()):
        baseline = np.array(draw(st.lists(st.floats(0.0, 0.5), min_size=n_layers, max_size=n_layers)))
    params = DetectorParams(
        persistence=draw(st.sampled_from([0.0, 0.1, 0.3])),
        jsd_reduction=draw(st.sampled_from(["bits", "paper"])),
        mutation_rule=draw(st.sampled_from(["jsd", "top1", "either", "both"])),
        spike_mads=draw(st.sampled_from([0.0, 5.0])),
        prob_min_peak=draw(st.sampled_from([0.0, 0.05, 0.5])),
    )
    return jsd, critical, ids, probs, baseline, params


@settings(max_examples=300, deadline=None)
@given(mutation_cases())
def test_batched_mutation_layers_are_the_loop_definition(case) -> None:
    jsd, critical, ids, probs, baseline, params = case
    expected = [
        loop_mutation_layers(jsd[:, t], int(critical[t]), params, ids[:, t], probs[:, t], baseline)
        for t in range(jsd.shape[1])
    ]
    batched = mutation_layers_by_token(
        jsd, critical, params, top1_ids=ids, top1_probs=probs, baseline=baseline
    )
    assert batched == expected
    for t in range(jsd.shape[1]):
        one = mutation_layers(
            jsd[:, t], int(critical[t]), params, top1_ids=ids[:, t], top1_probs=probs[:, t], baseline=baseline
        )
        assert one == expected[t]
    if params.mutation_rule in ("jsd", "either"):  # without the top-1 curves: the spikes alone
        alone = [
            loop_mutation_layers(jsd[:, t], int(critical[t]), params, baseline=baseline)
            for t in range(jsd.shape[1])
        ]
        assert mutation_layers_by_token(jsd, critical, params, baseline=baseline) == alone


def test_mutation_layers_refuse_bad_input_in_one_line() -> None:
    jsd = np.full((8, 2), 0.01)
    with pytest.raises(SettingsError, match=r"critical layer must be in \[0, 8\] or -1, got 9"):
        mutation_layers_by_token(jsd, np.array([3, 9]))
    with pytest.raises(SettingsError, match="2 tokens"):
        mutation_layers_by_token(jsd, np.array([3]))
    with pytest.raises(SettingsError, match="needs the top-1"):
        mutation_layers_by_token(jsd, np.array([3, 3]), DetectorParams(mutation_rule="top1"))
    with pytest.raises(SettingsError, match="top-1 curves must have 9 entries"):
        mutation_layers_by_token(jsd, np.array([3, 3]), top1_ids=np.zeros((8, 2)), top1_probs=np.ones((8, 2)))
    with pytest.raises(SettingsError, match="baseline must have 8 entries"):
        mutation_layers_by_token(jsd, np.array([3, 3]), baseline=np.ones(7))
    # no token with a state after its critical one: nothing else is read, as one token at a time
    assert mutation_layers_by_token(jsd, np.array([-1, 8]), baseline=np.ones(7)) == [[], []]
    assert mutation_layers(jsd[:, 0], -1, top1_ids=np.zeros(3), top1_probs=np.zeros(3)) == []


@settings(max_examples=200, deadline=None)
@given(curves_and_params(), st.data())
def test_stage_medians_are_the_medians_of_each_stage(case, data) -> None:
    jsd, params = case
    n_layers, n_tokens = jsd.shape
    jsd = np.abs(jsd)
    critical = np.array(data.draw(st.lists(st.integers(-1, n_layers), min_size=n_tokens, max_size=n_tokens)))
    rapid, plateau = stage_jsd_medians(jsd, critical, params.first_layer)
    for t, c in enumerate(critical.tolist()):
        first = params.first_layer
        want_rapid = float(np.median(jsd[first:c, t])) if c != NOT_FOUND and c > first else None
        want_plateau = float(np.median(jsd[c:, t])) if c != NOT_FOUND and c < n_layers else None
        assert math.isnan(rapid[t]) if want_rapid is None else rapid[t] == want_rapid, (t, c)
        assert math.isnan(plateau[t]) if want_plateau is None else plateau[t] == want_plateau, (t, c)


def test_per_token_baselines_are_each_tokens_own() -> None:
    """The decoding rules give each row its own running baseline: one ``[L, T]`` array, one column per token."""
    rng = np.random.default_rng(1)
    jsd = np.where(np.arange(16)[:, None] < 5, 0.4, 0.01) * rng.uniform(0.8, 1.2, (16, 3))
    jsd[12, :] = 0.2  # a spike every token has
    baselines = np.stack([np.full(16, 0.01), np.full(16, 0.2), np.full(16, 0.01)], axis=1)
    params = DetectorParams(mutation_rule="jsd")
    each = mutation_layers_by_token(jsd, np.array([5, 5, 5]), params, baseline=baselines)
    one_by_one = [mutation_layers(jsd[:, t], 5, params, baseline=baselines[:, t]) for t in range(3)]
    assert each == one_by_one
    assert [m.layer for m in each[0]] == [13] and each[1] == []  # the second token's baseline hides the spike
    with pytest.raises(SettingsError, match="per token"):
        mutation_layers_by_token(jsd, np.array([5, 5, 5]), params, baseline=baselines[:, :2])


@pytest.mark.parametrize("stage_critical", ["jsd", "prob"])
@pytest.mark.parametrize("fallback", [True, False])
def test_stage_critical_layers_take_the_chosen_one_or_fall_back(stage_critical, fallback) -> None:
    params = DetectorParams(stage_critical=stage_critical, stage_fallback=fallback)
    by_prob = np.array([4, -1, 6, -1])
    by_jsd = np.array([5, 3, -1, -1])
    primary, other = (by_jsd, by_prob) if stage_critical == "jsd" else (by_prob, by_jsd)
    expected = [p if p != NOT_FOUND or not fallback else o for p, o in zip(primary, other, strict=True)]
    assert stage_critical_layers(by_prob, by_jsd, params).tolist() == expected
    assert [
        stage_critical_layer(int(p), int(j), params) for p, j in zip(by_prob, by_jsd, strict=True)
    ] == expected
