"""The maps ``evolens embed`` makes: how many, where they go, their settings, stage layers and numbers in words."""

from __future__ import annotations

from pathlib import Path

import pytest

from evolens.errors import SettingsError, StoreError
from evolens.geometry.embed import (
    EmbedOptions,
    choose_stage_layers,
    describe_numbers,
    embed_map,
    map_count,
    map_targets,
    reducer_settings,
)

PCA = EmbedOptions(reducer_settings("pca", paper=False, figure=6, overrides={}))


def test_map_count_and_its_refusals(tmp_path):
    assert map_count("auto", 1, None) == "single" and map_count("auto", 3, tmp_path) == "multi"
    assert map_count("single", 3, None) == "single"
    with pytest.raises(SettingsError, match="needs --out"):
        map_count("auto", 2, None)
    with pytest.raises(SettingsError, match="at least 2 traces"):
        map_count("multi", 1, tmp_path)


def test_map_targets(tmp_path):
    a, b = tmp_path / "runs" / "a", tmp_path / "runs" / "b"
    assert map_targets([a], "single", None, overwrite=False) == [a]
    assert map_targets([a], "single", tmp_path / "o", overwrite=False) == [tmp_path / "o"]
    assert map_targets([a, b], "single", tmp_path / "o", overwrite=False) == [
        tmp_path / "o" / "a",
        tmp_path / "o" / "b",
    ]
    assert map_targets([a, b], "multi", tmp_path / "o", overwrite=False) == [tmp_path / "o"]
    with pytest.raises(SettingsError, match="share a directory name"):
        map_targets([a, tmp_path / "other" / "a"], "single", tmp_path / "o", overwrite=False)
    a.mkdir(parents=True)
    (a / "geometry.json").write_text("{}")
    with pytest.raises(SettingsError, match="--overwrite"):
        map_targets([a], "single", None, overwrite=False)
    assert map_targets([a], "single", None, overwrite=True) == [a]


def test_reducer_settings():
    paper = reducer_settings("tsne", paper=True, figure=7, overrides={"seed": 3, "perplexity": None})
    assert paper.perplexity == 35 and paper.seed == 3
    own = reducer_settings("umap", paper=False, figure=6, overrides={"n_neighbors": 4, "seed": None})
    assert own.method == "umap" and own.n_neighbors == 4 and own.seed == 0
    with pytest.raises(SettingsError, match="--paper"):
        reducer_settings("pca", paper=True, figure=6, overrides={})


def test_given_stage_layers_replace_the_detected_ones(tiny_traces):
    found = choose_stage_layers(tiny_traces[:1])
    assert found.description.startswith("detected")
    given = choose_stage_layers(tiny_traces[:1], critical=3, mutation=-1)
    assert (given.critical_layer, given.mutation_layer, given.description) == (3, None, "given")
    only_mutation = choose_stage_layers(tiny_traces[:1], mutation=5)
    assert (only_mutation.critical_layer, only_mutation.mutation_layer) == (None, 5)


def test_embed_map_and_its_numbers_in_words(tiny_traces):
    layers = choose_stage_layers(tiny_traces, step=1, critical=3, mutation=5)
    fmap = embed_map(tiny_traces, "multi", layers, EmbedOptions(PCA.settings, step=1, groups="paper"))
    assert fmap.kind == "multi_image" and fmap.unit_steps == [1] * 4 and fmap.critical_layer == 3
    assert [g.layers[0] for g in fmap.groups] == [1, 3, 4, 6]  # the paper's 1-2, 3-c, c+1..L-1, L with c = 3
    lines = describe_numbers(fmap)
    assert lines[0].startswith("map: 4 images x 6 layers = 24 points; pca, trustworthiness")
    assert lines[1].startswith("stage groups: ") and "critical layer 3" in lines[2]
    assert lines[3].startswith("relative dispersion by layer: 1: ")
    assert lines[4].startswith("linearity of each image's path") and lines[5].startswith("adjacent-layer CKA")
    single = embed_map(tiny_traces[:1], "single", layers, PCA)
    assert single.kind == "single_image" and describe_numbers(single)[0].startswith("map: 10 tokens")


def test_map_targets_refuses_a_file_where_a_directory_goes(tmp_path: Path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        map_targets([tmp_path / "a"], "single", tmp_path / "f" / "o", overwrite=False)
