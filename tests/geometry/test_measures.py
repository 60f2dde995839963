"""The numbers behind the maps, on features with a known structure."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ortho_group

from evolens.errors import SettingsError
from evolens.geometry import measures

from .synthetic import split_states


# ------------------------------------------------------------------ dispersion
def test_dispersion_known_values():
    # two units at +-1 along one axis, at distance 3 from the origin along another
    states = np.array([[[3.0, 1.0], [3.0, -1.0]], [[0.0, 0.0], [0.0, 0.0]], [[0.0, 2.0], [0.0, -2.0]]])
    np.testing.assert_allclose(measures.dispersion(states), [1.0, 0.0, 2.0])
    np.testing.assert_allclose(measures.relative_dispersion(states), [1 / np.sqrt(10), 0.0, 1.0])


def test_relative_dispersion_ignores_per_layer_scale():
    states = split_states()
    scaled = states * np.geomspace(1, 100, states.shape[0])[:, None, None]
    np.testing.assert_allclose(measures.relative_dispersion(scaled), measures.relative_dispersion(states))
    assert not np.allclose(measures.dispersion(scaled), measures.dispersion(states))


# ------------------------------------------------------------------ jump
@pytest.mark.parametrize("split", [3, 6, 9])
def test_jump_found_where_the_cluster_splits(split):
    states = split_states(split=split)
    layers = list(range(states.shape[0]))
    jump = measures.jump_layer(measures.relative_dispersion(states), layers)
    assert jump.layer == split
    assert jump.size > 0.3
    assert jump.r2 > 0.9


def test_jump_step_function_exact():
    jump = measures.jump_layer([0.2, 0.2, 0.2, 0.2, 0.7, 0.7, 0.7], [1, 2, 3, 4, 5, 6, 7])
    assert jump.layer == jump.candidate == 5
    assert jump.size == pytest.approx(0.5) and jump.ratio == pytest.approx(3.5)
    assert jump.r2 == pytest.approx(1.0)


def test_no_jump_for_flat_decreasing_or_short_curves():
    assert measures.jump_layer([0.5] * 6, range(6)).layer is None
    down = measures.jump_layer([0.9, 0.8, 0.5, 0.2, 0.1, 0.1], range(6))
    assert down.layer is None and down.candidate is None and np.isnan(down.size)
    assert measures.jump_layer([0.1, 0.9, 0.9], range(3)).candidate is None  # 2 layers a side needed


def test_noise_is_not_a_jump():
    noisy = 0.6 + np.random.default_rng(0).normal(size=12) * 0.01
    jump = measures.jump_layer(noisy, range(12))
    assert jump.candidate is not None and jump.layer is None  # the best split exists but is no clear step
    assert jump.ratio < 1.25


def test_thresholds():
    curve = [0.40, 0.40, 0.40, 0.45, 0.45, 0.45]  # a clean step, but only 12.5 % up
    assert measures.jump_layer(curve, range(6)).layer is None
    assert measures.jump_layer(curve, range(6), measures.JumpSettings(min_ratio=1.1)).layer == 3
    from_zero = measures.jump_layer([0.0, 0.0, 0.0, 0.3, 0.3], range(5))
    assert from_zero.layer == 3 and from_zero.ratio == float("inf")
    for bad in ({"curve": "median"}, {"min_segment": 0}, {"min_r2": 1.5}, {"min_ratio": 0.5}):
        with pytest.raises(SettingsError):
            measures.JumpSettings(**bad)


def test_gradual_rise_has_lower_r2_than_a_step():
    ramp = measures.jump_layer(np.linspace(0.1, 1, 12), range(12))
    step = measures.jump_layer(np.r_[np.zeros(6), np.ones(6)], range(12))
    assert ramp.layer is not None
    assert ramp.r2 < 0.8 < step.r2


def test_min_segment_respected():
    # the biggest step is after the first point, but each side needs 3 layers
    jump = measures.jump_layer(
        [0.1, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], range(7), measures.JumpSettings(min_segment=3)
    )
    assert jump.candidate == 3


def test_jump_round_trip():
    jump = measures.jump_layer([0.0, 0.0, 1.0, 1.0], [1, 2, 3, 4])
    assert jump.ratio == float("inf")
    assert measures.Jump.from_dict(jump.to_dict()) == jump
    none = measures.jump_layer([1.0, 1.0], [1, 2])
    back = measures.Jump.from_dict(none.to_dict())
    assert back.layer is None and np.isnan(back.r2)


# ------------------------------------------------------------------ linearity / straightness
def test_straight_line_trajectory():
    rng = np.random.default_rng(0)
    direction = rng.normal(size=(1, 3, 32))
    start = rng.normal(size=(1, 3, 32))
    steps = np.arange(10, dtype=float)[:, None, None] ** 1.5  # uneven spacing along the line
    states = start + steps * direction + rng.normal(size=(10, 3, 32)) * 1e-4
    np.testing.assert_allclose(measures.linearity(states), 1.0, atol=1e-6)
    np.testing.assert_allclose(measures.straightness(states), 1.0, atol=1e-4)


def test_circle_and_back_and_forth():
    angle = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    circle = np.stack([np.cos(angle), np.sin(angle)], axis=-1)[:, None, :]
    assert measures.linearity(circle)[0] == pytest.approx(0.5, abs=1e-9)
    # back and forth on a line: perfectly linear, far from straight
    zigzag = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0])[:, None, None] * np.ones((1, 1, 4))
    assert measures.linearity(zigzag)[0] == pytest.approx(1.0)
    assert measures.straightness(zigzag)[0] == pytest.approx(1 / 5)


def test_isotropic_noise_is_not_linear():
    states = np.random.default_rng(1).normal(size=(33, 5, 256))
    assert (measures.linearity(states) < 0.15).all()
    assert (measures.straightness(states) < 0.2).all()


def test_constant_trajectory_is_nan():
    states = np.ones((5, 2, 3))
    assert np.isnan(measures.linearity(states)).all()
    assert np.isnan(measures.straightness(states)).all()


# ------------------------------------------------------------------ CKA
def test_cka_identical_is_one_and_independent_is_low():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 20))
    assert measures.linear_cka(x, x) == pytest.approx(1.0)
    assert measures.linear_cka(x, rng.normal(size=(200, 20))) < 0.2


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), scale=st.floats(1e-3, 1e3), shift=st.floats(-100, 100))
def test_cka_invariant_to_orthogonal_maps_scaling_and_translation(seed, scale, shift):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(30, 8)) * rng.uniform(0.1, 5, size=8)  # anisotropic, so invariance is not trivial
    y = rng.normal(size=(30, 8)) + 0.5 * x
    q = ortho_group.rvs(8, random_state=seed % (2**32 - 1))
    reference = measures.linear_cka(x, y)
    assert measures.linear_cka(scale * x @ q + shift, y) == pytest.approx(reference, abs=1e-9)
    assert measures.linear_cka(x, y @ q.T * scale) == pytest.approx(reference, abs=1e-9)


def test_cka_not_invariant_to_anisotropic_scaling():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 6))
    stretched = x * np.array([100.0, 1, 1, 1, 1, 1])
    assert measures.linear_cka(x, stretched) < 0.5


def test_cka_matrix_and_adjacent():
    states = split_states(n_layers=6, split=3)
    matrix = measures.cka_matrix(states)
    assert matrix.shape == (7, 7)
    np.testing.assert_allclose(matrix, matrix.T)
    np.testing.assert_allclose(np.diag(matrix), 1.0)
    np.testing.assert_allclose(measures.adjacent_cka(states), np.diag(matrix, 1))
    for i in range(6):
        assert matrix[i, i + 1] == pytest.approx(measures.linear_cka(states[i], states[i + 1]))


def test_cka_nan_for_a_layer_without_variance():
    states = np.random.default_rng(0).normal(size=(3, 5, 4))
    states[0] = 1.0  # every unit identical (e.g. the embedding of the same token)
    matrix = measures.cka_matrix(states)
    assert np.isnan(matrix[0]).all() and np.isnan(matrix[:, 0]).all()
    assert np.isfinite(matrix[1:, 1:]).all()
    assert np.isnan(measures.linear_cka(states[0], states[1]))


def test_cka_bad_shapes():
    with pytest.raises(SettingsError, match="same n_units"):
        measures.linear_cka(np.zeros((3, 2)), np.zeros((4, 2)))
    with pytest.raises(SettingsError, match="at least 2"):
        measures.linear_cka(np.zeros((1, 2)), np.zeros((1, 2)))


# ------------------------------------------------------------------ trustworthiness
def test_trustworthiness_perfect_and_random():
    rng = np.random.default_rng(0)
    plane = rng.normal(size=(80, 2))
    embedded = np.c_[plane, np.zeros((80, 3))]  # 2-D data sitting in 5-D
    score, k = measures.trustworthiness(embedded, plane, n_neighbors=10)
    assert score == pytest.approx(1.0) and k == 10
    random_score, _ = measures.trustworthiness(embedded, rng.normal(size=(80, 2)), n_neighbors=10)
    assert random_score < 0.7


def test_trustworthiness_clips_k_for_small_maps():
    rng = np.random.default_rng(0)
    _, k = measures.trustworthiness(rng.normal(size=(9, 4)), rng.normal(size=(9, 2)), n_neighbors=10)
    assert k == 4
    with pytest.raises(SettingsError, match="at least 3"):
        measures.trustworthiness(np.zeros((2, 3)), np.zeros((2, 2)))


def test_states_must_be_finite_and_3d():
    with pytest.raises(SettingsError, match="shape"):
        measures.dispersion(np.zeros((3, 4)))
    bad = np.zeros((2, 3, 4))
    bad[0, 0, 0] = np.nan
    with pytest.raises(SettingsError, match="NaN"):
        measures.linearity(bad)
