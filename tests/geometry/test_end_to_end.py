"""Maps made from real traces of a tiny random LLaVA, and from traces saved and loaded again."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import evolens
from evolens.errors import InputError, SettingsError
from evolens.geometry import FeatureMap, ReducerSettings, paper_stage_groups

FAST = ReducerSettings(perplexity=3.0, n_iter=120, exaggeration_iter=40)


def test_single_image_map_of_a_trace(tiny_traces, tmp_path):
    trace = tiny_traces[0]
    fmap = evolens.single_image_map(trace, critical_layer=3, mutation_layer=5, settings=FAST)
    n_layers, n_steps = trace.n_layers, trace.n_steps
    assert fmap.coords.shape == (n_steps * n_layers, 2)
    assert fmap.layers == tuple(range(1, n_layers + 1))
    assert fmap.unit_tokens == trace.tokens and fmap.unit_steps == list(range(n_steps))
    assert [g.name for g in fmap.groups] == ["rapid evolution", "stabilisation", "mutation"]
    assert fmap.source["model"]["family"] == "llava" and fmap.source["prompts"] == [trace.prompt]
    assert fmap.numbers.linearity.shape == (n_steps,)
    assert np.all((fmap.numbers.linearity > 0) & (fmap.numbers.linearity <= 1 + 1e-9))
    # the map is built from the pre-norm states: dispersion at layer l is that of trace.hidden_states[l]
    states = trace.hidden_states.double().numpy()
    centred = states - states.mean(axis=1, keepdims=True)
    expected = np.sqrt((centred**2).sum(-1).mean(-1))[1:]
    np.testing.assert_allclose(fmap.numbers.dispersion, expected, rtol=1e-6)
    loaded = FeatureMap.load(fmap.save(tmp_path / "single.json"))
    assert loaded.to_dict() == fmap.to_dict()


def test_multi_image_map_of_traces_and_of_loaded_traces(tiny_traces, tmp_path):
    fmap = evolens.multi_image_map(tiny_traces, include_embedding=True, settings=FAST)
    n_layers = tiny_traces[0].n_layers
    assert fmap.coords.shape == (4 * (n_layers + 1), 2)
    assert fmap.unit_items == ["0", "1", "2", "3"]
    assert fmap.unit_tokens == [t.tokens[0] for t in tiny_traces]
    assert fmap.numbers.cka_adjacent.shape == (n_layers,)
    # one question for every image: at step 0 the answer is predicted from the last prompt token, the same token
    # for every image, so the embedding states coincide and only the layers (attending to the image) tell apart
    assert fmap.numbers.dispersion[0] == pytest.approx(0.0, abs=1e-6)
    assert fmap.numbers.dispersion[1:].min() > 0
    assert np.isnan(fmap.numbers.cka_matrix[0]).all()
    loaded = [evolens.Trace.load(t.save(tmp_path / f"t{i}")) for i, t in enumerate(tiny_traces)]
    again = evolens.multi_image_map(loaded, include_embedding=True, settings=FAST)
    np.testing.assert_allclose(again.coords, fmap.coords, atol=1e-6)


def test_paper_groups_and_paper_settings_on_a_trace(tiny_traces):
    trace = tiny_traces[0]
    groups = paper_stage_groups(trace.n_layers, critical_layer=3)
    assert [g.layers for g in groups] == [(1, 2), (3,), (4, 5), (6,)]
    with pytest.raises(SettingsError, match="perplexity 40 needs at least 121 points"):
        evolens.single_image_map(trace, groups=groups, settings=ReducerSettings.paper(6))
    fmap = evolens.single_image_map(trace, groups=groups, settings=ReducerSettings(method="pca"))
    assert fmap.point_group.max() == 3


def test_trace_errors(tiny_traces):
    bare = dataclasses.replace(tiny_traces[1], hidden_states=None)
    with pytest.raises(InputError, match=r"trace 1 .* no hidden states"):
        evolens.multi_image_map([tiny_traces[0], bare], settings=FAST)
    with pytest.raises(InputError, match="no hidden states"):
        evolens.single_image_map(bare, settings=FAST)
    with pytest.raises(SettingsError, match="step 99 is out of range"):
        evolens.multi_image_map(tiny_traces, step=99, settings=FAST)
    with pytest.raises(InputError, match="at least 2"):
        evolens.multi_image_map(tiny_traces[:1], settings=FAST)


def _synthetic_trace(item_id: str = "syn", seed: int = 0):
    """A trace whose detectors find critical layers 4..8 (median 6) and, on every other token, mutation layer 14."""
    import torch

    from tests.analysis.synthetic import make_metrics, make_trace, step_jsd, step_probs

    rng = np.random.default_rng(seed)
    n_layers, crits = 16, [4, 5, 6, 7, 8, 5, 6, 7, 8, 4]
    probs = np.stack([step_probs(rng, n_layers, c) for c in crits], 1)
    jsd = np.stack([step_jsd(rng, n_layers, c, [13] if i % 2 else []).jsd for i, c in enumerate(crits)], 1)
    trace = make_trace(make_metrics(probs, jsd), item_id=item_id)
    trace.hidden_states = torch.randn(
        n_layers + 1, len(crits), 8, generator=torch.Generator().manual_seed(seed)
    )
    return trace


def test_stage_groups_are_detected_from_the_trace_by_default():
    from evolens.geometry import detect_stage_layers

    trace = _synthetic_trace()
    found = detect_stage_layers([trace])
    assert (found.critical_layer, found.mutation_layer, found.n_critical) == (6, 14, 10)
    pca = ReducerSettings(method="pca")
    fmap = evolens.single_image_map(trace, settings=pca)
    assert (fmap.critical_layer, fmap.mutation_layer) == (6, 14)
    assert [g.layers for g in fmap.groups] == [tuple(range(1, 6)), tuple(range(6, 14)), (14, 15, 16)]
    assert fmap.numbers.critical_layer == 6  # the dispersion jump is compared with the detected layer
    # given layers win; None turns the stages off; a given critical layer after the detected mutation drops it
    assert (
        evolens.single_image_map(trace, critical_layer=3, mutation_layer=9, settings=pca).critical_layer == 3
    )
    assert (
        len(evolens.single_image_map(trace, critical_layer=None, mutation_layer=None, settings=pca).groups)
        == 1
    )
    late = evolens.single_image_map(trace, critical_layer=15, settings=pca)
    assert (late.critical_layer, late.mutation_layer) == (15, None)
    # explicit tensors carry no metrics: nothing is detected
    assert len(evolens.single_image_map(trace.hidden_states, settings=pca).groups) == 1
    with pytest.raises(SettingsError, match="'auto'"):
        evolens.single_image_map(trace, critical_layer="detect", settings=pca)  # type: ignore[arg-type]


def test_multi_image_stage_groups_are_detected_at_the_step():
    traces = [_synthetic_trace(f"img{i}", seed=i) for i in range(4)]
    fmap = evolens.multi_image_map(traces, step=2, settings=ReducerSettings(method="pca"))
    # the token at step 2 has critical layer 6 and no spike in every trace
    assert (fmap.critical_layer, fmap.mutation_layer) == (6, None)
    assert [g.name for g in fmap.groups] == ["rapid evolution", "stabilisation"]
