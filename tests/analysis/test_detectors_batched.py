"""The critical layers of many curves at once (``jsd_change_layers``, ``critical_layers_from_jsd``,
``critical_layers_from_prob``) are the per-curve definitions: checked against the definitions written out as loops
(``evolens.testing.detectors``: what evolens computed before they were vectorised), on curves with ties, zeros, tiny
negative values (the paper's reduction), surges cut at the last layer, and any depth."""

from __future__ import annotations

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
)
from evolens.analysis import detectors as detectors_module
from evolens.errors import SettingsError
from evolens.testing.detectors import loop_change_point, loop_critical_layer_from_prob
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
