"""Feature maps from explicit tensors: layout, labels, groups, numbers, storage, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from evolens.errors import InputError, SettingsError, StoreError
from evolens.geometry import (
    FeatureMap,
    JumpSettings,
    ReducerSettings,
    StageGroup,
    multi_image_map,
    single_image_map,
)

from .synthetic import split_states

FAST = ReducerSettings(perplexity=5.0, n_iter=150, exaggeration_iter=50)


def test_multi_image_layout_and_split_found():
    states = split_states(n_layers=12, n_units=10, split=7)
    fmap = multi_image_map(
        states, critical_layer=7, labels=[f"img{i}" for i in range(10)], tokens=["red"] * 10, settings=FAST
    )
    assert fmap.kind == "multi_image"
    assert fmap.layers == tuple(range(1, 13)) and fmap.n_layers == 12 and not fmap.include_embedding
    assert fmap.coords.shape == (120, 2) and fmap.n_points == 120 and fmap.n_units == 10
    # unit-major order
    assert fmap.point_layer[:12].tolist() == list(range(1, 13))
    assert fmap.point_unit[:13].tolist() == [0] * 12 + [1]
    assert fmap.unit_labels[3] == "img3: red"
    # the numbers: the images' features split at layer 7, which is the critical layer given
    assert fmap.numbers.jump.layer == 7
    assert fmap.numbers.jump_minus_critical == 0
    rel = fmap.numbers.relative_dispersion
    assert rel[:6].max() < 0.05 < 0.4 < rel[6:].min()
    assert fmap.numbers.linearity.shape == (10,) and fmap.numbers.straightness.shape == (10,)
    assert fmap.numbers.cka_adjacent.shape == (11,) and fmap.numbers.cka_matrix.shape == (12, 12)
    assert 0.0 <= fmap.projection.trustworthiness <= 1.0
    # the groups follow the critical layer
    assert [g.name for g in fmap.groups] == ["rapid evolution", "stabilisation"]
    assert fmap.point_group[:12].tolist() == [0] * 6 + [1] * 6


def test_jump_reported_relative_to_a_wrong_critical_layer():
    states = split_states(n_layers=12, n_units=10, split=5)
    fmap = multi_image_map(states, critical_layer=8, settings=ReducerSettings(method="pca"))
    assert fmap.numbers.jump.layer == 5 and fmap.numbers.jump_minus_critical == -3


def test_final_layer_excluded_from_the_jump_by_default():
    states = split_states(n_layers=10, n_units=8, split=20)  # no split in range ...
    states[-1] += (
        np.random.default_rng(3).normal(size=states[-1].shape) * 50
    )  # ... but the last layer scatters
    pca = ReducerSettings(method="pca")
    assert multi_image_map(states, settings=pca).numbers.jump.layer is None
    excluded = multi_image_map(states, settings=pca, jump=JumpSettings(min_segment=1)).numbers.jump
    assert excluded.layer is None and excluded.layers == tuple(range(1, 10))
    kept = multi_image_map(states, settings=pca, jump=JumpSettings(exclude_final=False, min_segment=1))
    assert kept.numbers.jump.layer == 10


def test_single_image_from_tensor_with_steps_and_embedding():
    states = torch.tensor(split_states(n_layers=6, n_units=8, split=3), dtype=torch.bfloat16)
    tokens = [f"t{i}" for i in range(8)]
    fmap = single_image_map(
        states,
        tokens=tokens,
        steps=[1, 3, 5, 7],
        include_embedding=True,
        settings=ReducerSettings(perplexity=3.0, n_iter=120, exaggeration_iter=40),
    )
    assert fmap.kind == "single_image"
    assert fmap.layers == tuple(range(7)) and fmap.include_embedding
    assert fmap.coords.shape == (28, 2)
    assert fmap.unit_steps == [1, 3, 5, 7] and fmap.unit_tokens == ["t1", "t3", "t5", "t7"]
    assert fmap.unit_labels == ["1: t1", "3: t3", "5: t5", "7: t7"]
    assert [g.name for g in fmap.groups] == ["all layers"] and fmap.groups[0].layers[0] == 0
    frame = fmap.points_frame()
    assert list(frame.columns) == ["x", "y", "layer", "unit", "group", "token", "step", "item"]
    assert frame.loc[7, "token"] == "t3" and frame.loc[7, "layer"] == 0


def test_user_groups_override_derived_groups():
    states = split_states(n_layers=8, n_units=6)
    fmap = multi_image_map(
        states,
        critical_layer=4,
        mutation_layer=7,
        groups={"shallow": range(1, 3), "deep": range(3, 9)},
        settings=ReducerSettings(method="pca"),
    )
    assert [g.name for g in fmap.groups] == ["shallow", "deep"]
    assert fmap.critical_layer == 4 and fmap.mutation_layer == 7  # still recorded and compared
    with pytest.raises(SettingsError, match="in no group"):
        multi_image_map(states, groups=[StageGroup("a", (1, 2))], settings=ReducerSettings(method="pca"))
    with pytest.raises(SettingsError, match="mutation_layer"):
        multi_image_map(states, critical_layer=6, mutation_layer=5, settings=ReducerSettings(method="pca"))


def test_numbers_space():
    states = split_states(n_layers=6, n_units=6)
    pca = ReducerSettings(method="pca", preprocessing="standardize")
    raw = multi_image_map(states, settings=pca)
    scaled = multi_image_map(states, settings=pca, numbers_space="preprocessed")
    assert raw.numbers.space == "raw" and scaled.numbers.space == "preprocessed"
    assert not np.allclose(raw.numbers.dispersion, scaled.numbers.dispersion)
    np.testing.assert_array_equal(raw.coords, scaled.coords)
    with pytest.raises(SettingsError, match="numbers_space"):
        multi_image_map(states, settings=pca, numbers_space="pca")  # type: ignore[arg-type]


def test_determinism_of_a_whole_map():
    states = split_states(n_layers=6, n_units=5)
    a = multi_image_map(states, settings=FAST)
    b = multi_image_map(states, settings=FAST)
    assert a.to_dict() == b.to_dict()


def test_save_load_round_trip(tmp_path):
    states = split_states(n_layers=6, n_units=6)
    states[0] = 1.0  # identical first layer -> NaN CKA, stored as null
    fmap = multi_image_map(
        states, include_embedding=True, critical_layer=3, tokens=["<b>&"] * 6, settings=FAST
    )
    assert np.isnan(fmap.numbers.cka_matrix[0, 0])
    path = fmap.save(tmp_path / "maps" / "vqa.json")
    text = path.read_text(encoding="utf-8")
    assert "NaN" not in text and json.loads(text)["schema"] == "evolens.geometry/1"
    back = FeatureMap.load(path)
    assert back.to_dict() == fmap.to_dict()
    np.testing.assert_array_equal(back.coords, fmap.coords)
    np.testing.assert_array_equal(back.numbers.cka_matrix, fmap.numbers.cka_matrix)  # NaN in the same places
    assert back.unit_tokens[0] == "<b>&" and back.numbers.jump == fmap.numbers.jump
    with pytest.raises(StoreError, match="exists"):
        fmap.save(path)
    fmap.save(path, overwrite=True)
    with pytest.raises(StoreError, match="directory"):
        fmap.save(tmp_path)


def test_load_errors(tmp_path):
    with pytest.raises(StoreError, match="no feature map"):
        FeatureMap.load(tmp_path / "missing.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(StoreError, match="cannot read"):
        FeatureMap.load(tmp_path / "junk.json")
    (tmp_path / "other.json").write_text('{"schema": "something else"}')
    with pytest.raises(StoreError, match="not an evolens feature map"):
        FeatureMap.load(tmp_path / "other.json")
    (tmp_path / "broken.json").write_text('{"schema": "evolens.geometry/1", "kind": "multi_image"}')
    with pytest.raises(StoreError, match="not a valid feature map"):
        FeatureMap.load(tmp_path / "broken.json")


def test_inconsistent_stored_map_is_refused(tmp_path):
    fmap = multi_image_map(split_states(n_layers=4, n_units=4), settings=ReducerSettings(method="pca"))
    data = fmap.to_dict()
    data["point_unit"] = data["point_unit"][:-1]
    (tmp_path / "cut.json").write_text(json.dumps(data))
    with pytest.raises(StoreError, match="inconsistent"):
        FeatureMap.load(tmp_path / "cut.json")
    data = fmap.to_dict()
    data["groups"] = [{"name": "a", "layers": [1, 2]}]
    with pytest.raises(StoreError, match="partition"):
        FeatureMap.from_dict(data)


def test_too_few_points_for_the_paper_perplexity():
    states = split_states(n_layers=4, n_units=6)  # 6 images x 4 layers = 24 points
    with pytest.raises(
        SettingsError, match=r"perplexity 35 needs at least 106 points.*24 points \(6 images × 4 layers\)"
    ):
        multi_image_map(states, settings=ReducerSettings.paper(7))


def test_input_errors():
    with pytest.raises(InputError, match="shape"):
        multi_image_map(np.zeros((4, 5)))
    with pytest.raises(InputError, match="at least 2 images"):
        multi_image_map(np.zeros((4, 1, 5)))
    with pytest.raises(InputError, match="tokens"):
        single_image_map(np.zeros((4, 5, 3)), tokens=["a"])
    with pytest.raises(SettingsError, match="out of range"):
        single_image_map(np.zeros((4, 5, 3)), steps=[0, 5])
    with pytest.raises(SettingsError, match="repeat"):
        single_image_map(np.zeros((4, 5, 3)), steps=[1, 1])
    with pytest.raises(SettingsError, match="step"):
        multi_image_map(split_states(n_units=4), step=-1)
    nan = split_states(n_layers=4, n_units=4)
    nan[1, 1, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        multi_image_map(nan)


def test_a_map_saved_in_the_v1_format_loads_and_saves_back_unchanged(tmp_path):
    # written by evolens before the envelope had one owner (issue 16): a PCA map of 4 images x 4 layers
    stored = Path(__file__).parent / "data" / "geometry_v1.json"
    fmap = FeatureMap.load(stored)
    assert fmap.kind == "multi_image" and fmap.layers == (1, 2, 3, 4) and fmap.n_points == 16
    assert fmap.unit_tokens == ["red", "blue", "red", "grün"] and fmap.unit_items == ["a", "b", "c", "d"]
    assert fmap.critical_layer == 2 and [g.layers for g in fmap.groups] == [(1,), (2, 3, 4)]
    assert fmap.projection.backend == "pca" and fmap.numbers.cka_matrix.shape == (4, 4)
    again = fmap.save(tmp_path / "geometry.json")
    assert again.read_bytes() == stored.read_bytes()


def test_an_unknown_option_is_refused():
    with pytest.raises(TypeError, match="critical_layers"):
        multi_image_map(split_states(n_layers=4, n_units=4), critical_layers=2)  # type: ignore[call-arg]
