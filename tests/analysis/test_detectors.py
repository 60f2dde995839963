from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from evolens.analysis import (
    MUTATION,
    NOT_FOUND,
    RAPID,
    STABLE,
    UNKNOWN,
    DetectorParams,
    critical_layer_from_jsd,
    critical_layer_from_prob,
    crossings,
    hierarchy_score,
    jsd_change_point,
    mutation_layers,
    spike_threshold,
    stage_of_layers,
)
from evolens.errors import SettingsError
from tests.analysis.synthetic import step_jsd, step_probs

P = DetectorParams()

# The toy LVLM trial's mean curves (HELPERS notes): p(answer) by state 0..8 and adjacent JSD 0->1 .. 7->8.
TOY_PROBS = [0.02, 0.25, 0.30, 0.39, 0.64, 0.92, 0.95, 0.96, 0.96]
TOY_JSD = [0.68, 0.06, 0.09, 0.13, 0.15, 0.017, 0.006, 0.005]


def test_toy_trial_curves() -> None:
    assert critical_layer_from_jsd(TOY_JSD, P) == 5
    assert critical_layer_from_prob(TOY_PROBS, P) == 4
    assert mutation_layers(TOY_JSD, 5, P) == []
    # the trial's late mutation: last transition .27 against a ~.01 plateau
    late = [*TOY_JSD[:-1], 0.27]
    found = mutation_layers(late, 5, P)
    assert [m.layer for m in found] == [8]
    assert found[0].is_spike and not found[0].is_flip


@settings(max_examples=60, deadline=None)
@given(
    n_layers=st.integers(8, 80),
    frac=st.floats(0.15, 0.75),
    n_spikes=st.integers(0, 3),
    seed=st.integers(0, 2**31 - 1),
)
@example(
    n_layers=9, frac=0.25, n_spikes=2, seed=0
)  # was ambiguous before spikes were bounded by the rapid stage
def test_jsd_step_curve_known_answer(n_layers: int, frac: float, n_spikes: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_persist = P.n_persist(n_layers)
    critical = int(np.clip(round(frac * n_layers), 2, n_layers - n_persist - 1))
    # spikes only after the persistence window, at most a third of the plateau, not adjacent, and no more than the
    # rapid stage has transitions (one high transition and two late spikes at L = 9 have no single right answer:
    # the change point may as well sit before the spikes)
    room = list(range(critical + n_persist, n_layers))[::2]
    k = min(n_spikes, len(room), (n_layers - critical) // 3, critical - P.first_layer)
    spikes = sorted(rng.choice(room, size=k, replace=False).tolist()) if k else []
    curve = step_jsd(rng, n_layers, critical, spikes)
    assert critical_layer_from_jsd(curve.jsd, P) == critical
    found = mutation_layers(curve.jsd, critical, P)
    assert [m.layer for m in found] == curve.mutation_layers
    assert all(m.is_spike and m.ratio > P.spike_ratio for m in found)


@settings(max_examples=40, deadline=None)
@given(n_layers=st.integers(6, 80), frac=st.floats(0.1, 0.9), seed=st.integers(0, 2**31 - 1))
def test_prob_step_curve_known_answer(n_layers: int, frac: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    critical = int(np.clip(round(frac * n_layers), 2, n_layers))
    p = step_probs(rng, n_layers, critical, peak=rng.uniform(0.2, 1.0))
    assert critical_layer_from_prob(p, P) == critical
    # any depth: the same curve as a tensor
    assert critical_layer_from_prob(torch.tensor(p), P) == critical


@settings(max_examples=30, deadline=None)
@given(n_layers=st.integers(6, 80), seed=st.integers(0, 2**31 - 1), level=st.floats(0.001, 0.3))
def test_flat_jsd_has_no_critical_layer(n_layers: int, seed: int, level: float) -> None:
    rng = np.random.default_rng(seed)
    flat = level * np.exp(rng.uniform(-0.5, 0.5, n_layers))  # within a factor e of each other
    assert critical_layer_from_jsd(flat, P) == NOT_FOUND
    assert hierarchy_score(flat, P).ratio < P.jsd_drop_ratio


def test_embedding_transition_is_skipped_by_default() -> None:
    # plateau from state 1: only the uninformative embedding transition is high -> no rapid stage, no critical layer
    jsd = [0.7] + [0.003] * 15
    assert critical_layer_from_jsd(jsd, P) == NOT_FOUND
    # with the embedding state included it becomes the rapid stage, which is what first_layer=1 avoids
    assert critical_layer_from_jsd(jsd, DetectorParams(first_layer=0)) == 1


def test_jsd_drop_needs_ratio_and_gap() -> None:
    jsd = [0.5] + [0.02] * 7 + [0.008] * 8
    assert critical_layer_from_jsd(jsd, P) == NOT_FOUND  # ratio 2.5 < 4
    assert critical_layer_from_jsd(jsd, DetectorParams(jsd_drop_ratio=2.0)) == 8
    tiny = [0.5] + [0.002] * 7 + [0.0001] * 8  # ratio 20 but the gap is below 0.005 bits
    assert critical_layer_from_jsd(tiny, P) == NOT_FOUND
    assert critical_layer_from_jsd(tiny, DetectorParams(jsd_min_gap_bits=0.0)) == 8
    # the paper reduction has other units: the absolute gap does not apply
    assert critical_layer_from_jsd(tiny, DetectorParams(jsd_reduction="paper")) == 8


def test_jsd_plateau_must_persist() -> None:
    # a single low transition at the end is not a plateau (n_persist = 2 for 16 layers)
    jsd = [0.3] * 15 + [0.001]
    assert critical_layer_from_jsd(jsd, P) == NOT_FOUND
    jsd = [0.3] * 14 + [0.001, 0.001]
    assert critical_layer_from_jsd(jsd, P) == 14


def test_change_point_is_robust_to_spikes_in_both_segments() -> None:
    jsd = [0.7, 0.2, 0.3, 0.004, 0.25, 0.2, 0.3, 0.2, 0.003, 0.002, 0.004, 0.3, 0.003, 0.002, 0.002, 0.5]
    cp = jsd_change_point(jsd, P)
    assert cp.layer == 8
    assert critical_layer_from_jsd(jsd, P) == 8
    assert [m.layer for m in mutation_layers(jsd, 8, P)] == [12, 16]


def test_prob_no_surge_cases() -> None:
    # never stands out
    assert critical_layer_from_prob([0.0, 0.01, 0.02, 0.03, 0.04, 0.04], P) == NOT_FOUND
    # high from the first analysed state: no surge
    assert critical_layer_from_prob([0.0, 0.8, 0.9, 0.9, 0.95, 0.95], P) == NOT_FOUND
    # a transient bump does not count; the persistent rise does
    assert critical_layer_from_prob([0, 0.01, 0.7, 0.01, 0.02, 0.8, 0.9, 0.9], P) == 5
    # a surge at the very last layer is allowed (persistence truncated at L)
    assert critical_layer_from_prob([0, 0.01, 0.01, 0.02, 0.01, 0.01, 0.6], P) == 6


def test_top1_flip_rules() -> None:
    jsd = np.r_[[0.5] * 5, [0.003] * 7]  # critical 5
    ids = np.array([7] * 10 + [9] * 3)  # top-1 changes at state 10 and persists
    probs = np.full(13, 0.6)
    flip = mutation_layers(jsd, 5, DetectorParams(mutation_rule="top1"), top1_ids=ids, top1_probs=probs)
    assert [(m.layer, m.is_flip, m.is_spike, m.token_before, m.token_after) for m in flip] == [
        (10, True, False, 7, 9)
    ]
    assert mutation_layers(jsd, 5, DetectorParams(mutation_rule="jsd"), top1_ids=ids, top1_probs=probs) == []
    assert mutation_layers(jsd, 5, DetectorParams(mutation_rule="both"), top1_ids=ids, top1_probs=probs) == []
    spiky = jsd.copy()
    spiky[9] = 0.3  # transition 9 -> 10
    both = mutation_layers(spiky, 5, DetectorParams(mutation_rule="both"), top1_ids=ids, top1_probs=probs)
    assert [m.layer for m in both] == [10]
    # a transient flip (one state) is not a mutation
    transient = np.array([7] * 10 + [9] + [7] * 2)
    assert (
        mutation_layers(jsd, 5, DetectorParams(mutation_rule="top1"), top1_ids=transient, top1_probs=probs)
        == []
    )
    # a flip to a token that does not stand out is not a mutation
    weak = np.full(13, 0.01)
    assert mutation_layers(jsd, 5, DetectorParams(mutation_rule="top1"), top1_ids=ids, top1_probs=weak) == []
    with pytest.raises(SettingsError, match="top-1"):
        mutation_layers(jsd, 5, DetectorParams(mutation_rule="top1"))


def test_mutations_only_after_critical() -> None:
    jsd = [0.7, 0.3, 0.3, 0.3, 0.003, 0.003, 0.003, 0.003]
    assert mutation_layers(jsd, NOT_FOUND, P) == []
    assert mutation_layers(jsd, 8, P) == []
    with pytest.raises(SettingsError):
        mutation_layers(jsd, 9, P)


def test_spike_threshold_formula() -> None:
    jsd = np.array([0.5, 0.5, 0.01, 0.02, 0.03, 0.02, 0.01])
    threshold, level = spike_threshold(jsd, 2, P)
    assert level == pytest.approx(0.02)
    mad = 1.4826 * 0.01
    assert threshold == pytest.approx(max(3 * 0.02, 0.02 + 5 * mad, 0.01))


def test_stages() -> None:
    s = stage_of_layers(8, 3, 6)
    assert s.tolist() == [RAPID] * 3 + [STABLE] * 3 + [MUTATION] * 3
    assert stage_of_layers(8, 3, NOT_FOUND).tolist() == [RAPID] * 3 + [STABLE] * 6
    assert stage_of_layers(8, NOT_FOUND, NOT_FOUND).tolist() == [UNKNOWN] * 9
    with pytest.raises(SettingsError, match="after the critical"):
        stage_of_layers(8, 5, 5)
    with pytest.raises(SettingsError, match="after the critical"):
        stage_of_layers(8, 5, 3)
    with pytest.raises(SettingsError):
        stage_of_layers(8, 9, NOT_FOUND)
    with pytest.raises(SettingsError):
        stage_of_layers(8, NOT_FOUND, 4)


def test_crossings() -> None:
    gen = [0.0, 0.0, 0.1, 0.1, 0.2, 0.7, 0.8]
    alt = [0.0, 0.1, 0.3, 0.6, 0.5, 0.1, 0.1]
    assert crossings(gen, alt) == [(5, 1)]
    assert crossings(alt, gen) == [(1, 1), (5, -1)]
    assert crossings(alt, gen, first_layer=2) == [(5, -1)]
    with pytest.raises(SettingsError):
        crossings([0.1, 0.2], [0.1])


def test_hierarchy_score() -> None:
    rng = np.random.default_rng(0)
    curve = step_jsd(rng, 32, 18, [30]).jsd
    score = hierarchy_score(curve, P)
    assert score.split_layer == 18 and score.critical_layer == 18
    assert score.ratio == pytest.approx(score.mean_before / score.mean_after)
    assert score.ratio > 10
    assert math.isnan(hierarchy_score([0.0] * 8, P).ratio)


def test_bad_curves_and_depths() -> None:
    with pytest.raises(SettingsError, match="NaN"):
        critical_layer_from_jsd([0.1, float("nan"), 0.1, 0.1], P)
    with pytest.raises(SettingsError, match="1-D"):
        critical_layer_from_prob(np.zeros((3, 3)), P)
    with pytest.raises(SettingsError, match="first_layer"):
        critical_layer_from_jsd([0.1, 0.1, 0.1], DetectorParams(first_layer=2))


def test_params_validation_and_round_trip() -> None:
    params = DetectorParams(first_layer=0, mutation_rule="both", prob_curve="top1", persistence=0.2)
    assert DetectorParams.from_dict(params.to_dict()) == params
    assert params.n_persist(32) == 6 and P.n_persist(4) == 2 and P.n_persist(80) == 8
    assert P.agreement_layers(32) == 2 and P.agreement_layers(8) == 1
    for bad in (
        {"first_layer": -1},
        {"first_layer": 1.5},
        {"prob_rel": 0.0},
        {"prob_rel": 1.5},
        {"jsd_drop_ratio": 0.5},
        {"spike_mads": float("nan")},
        {"mutation_rule": "any"},
        {"jsd_reduction": "nats"},
        {"stage_fallback": "yes"},
    ):
        with pytest.raises(SettingsError):
            DetectorParams(**bad)  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="unknown detector parameter"):
        DetectorParams.from_dict({"first_layr": 1})
