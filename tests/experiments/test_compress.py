"""Stage-based compression's plan (issue 18): the stage from traced tokens, the removal order, the controls, the
method, and timed generation on a tiny model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evolens.api import TraceOptions
from evolens.errors import SettingsError
from evolens.experiments.compress import (
    Cell,
    Stage,
    check_ks,
    choose_method,
    generate_timed,
    parse_stage,
    plan_cells,
    random_layers,
    removal_order,
    stage_from_traces,
)
from evolens.experiments.skip import generate_skipped
from tests.analysis.synthetic import make_metrics, make_trace, step_jsd, step_probs
from tests.experiments.conftest import make_image

L = 16


def _traces(spikes_of_token: list[list[int]], n_items: int = 3, seed: int = 0) -> list:
    """Items of ``len(spikes_of_token)`` tokens, every token critical at state 6, token t spiking at the
    transitions ``spikes_of_token[t]`` (mutation layer = transition + 1)."""
    rng = np.random.default_rng(seed)
    traces = []
    for item in range(n_items):
        probs = np.stack([step_probs(rng, L, 6) for _ in spikes_of_token], axis=1)
        jsd = np.stack([step_jsd(rng, L, 6, spikes).jsd for spikes in spikes_of_token], axis=1)
        traces.append(make_trace(make_metrics(probs, jsd), item_id=str(item)))
    return traces


def test_the_stage_runs_from_the_critical_layer_to_the_median_end_of_stabilisation() -> None:
    # two tokens in ten mutate (at layer 12): most never do, so the stage runs to the last layer
    stage = stage_from_traces(_traces([[11], [11]] + [[]] * 8))
    assert (stage.critical_layer, stage.stage_end, stage.mutation_layer) == (6, L + 1, 12)
    assert stage.layers == tuple(range(7, L + 1)) and stage.source == "detected"
    assert (stage.n_items, stage.n_tokens, stage.tokens_with_critical, stage.tokens_with_mutation) == (
        3,
        30,
        30,
        6,
    )
    # six in ten mutate, at layers 9 .. 14: the ends 9 .. 14, 17 x 4 have median 13.5 -> 14 (half up)
    stage = stage_from_traces(_traces([[8], [9], [10], [11], [12], [13]] + [[]] * 4))
    assert (stage.critical_layer, stage.stage_end) == (6, 14)
    assert stage.layers == tuple(range(7, 14))
    # the removal order: ascending median JSD of what each layer changes (layer l: transition l - 1)
    jsd = stage.layer_jsd
    assert sorted(stage.order) == list(stage.layers)
    assert [jsd[layer - 1] for layer in stage.order] == sorted(jsd[layer - 1] for layer in stage.layers)
    assert stage.removed(2) == tuple(sorted(stage.order[:2]))
    assert Stage.from_dict(stage.to_dict()) == stage


def test_a_given_stage_is_ordered_by_the_same_jsd_and_no_critical_layer_is_refused() -> None:
    traces = _traces([[]] * 4)
    stage = stage_from_traces(traces, given=(3, 5))
    assert stage.layers == (3, 4, 5) and stage.source == "given" and stage.critical_layer is None
    assert stage.order == removal_order((3, 4, 5), stage.layer_jsd)
    flat = [make_trace(make_metrics(np.full((L + 1, 3), 0.3), np.full((L, 3), 0.01)))]
    with pytest.raises(SettingsError, match=r"no critical layer.*--stage A-B"):
        stage_from_traces(flat)
    with pytest.raises(SettingsError, match="at least one"):
        stage_from_traces([])


def test_removal_order_breaks_ties_by_layer_and_puts_nan_last() -> None:
    jsd = [0.5, 0.1, 0.1, math.nan, 0.05]
    assert removal_order([1, 2, 3, 4, 5], jsd) == (5, 2, 3, 1, 4)


def test_parse_stage_and_check_ks_refuse_what_is_out_of_range() -> None:
    assert parse_stage("3-5", 8) == (3, 5) and parse_stage(" 4 ", 8) == (4, 4)
    for bad, message in (("0-3", "out of range"), ("5-3", "out of range"), ("3-9", "out of range"),
                         ("a-b", "must be A-B"), ("1-8", "every one")):  # fmt: skip
        with pytest.raises(SettingsError, match=message):
            parse_stage(bad, 8)
    stage = Stage(8, (6, 7, 8), (7, 8, 6), (0.0,) * 8, "given")
    assert check_ks(None, stage.layers) == (1, 2, 3) and check_ks([3, 1, 3], stage.layers) == (1, 3)
    for bad in ([0], [4], [True]):
        with pytest.raises(SettingsError, match="out of range"):
            check_ks(bad, stage.layers)


def test_plan_cells_interleaves_the_full_model_and_seeds_the_random_draws() -> None:
    stage = Stage(8, (6, 7, 8), (7, 8, 6), (0.0,) * 8, "given")
    cells = plan_cells(stage, [1, 2], n_draws=3, seed=5)
    assert [c.name for c in cells] == [
        "full-k1", "stage-k1", "random-k1-d0", "random-k1-d1", "random-k1-d2", "last-k1",
        "full-k2", "stage-k2", "random-k2-d0", "random-k2-d1", "random-k2-d2", "last-k2",
    ]  # fmt: skip
    by_name = {c.name: c for c in cells}
    assert by_name["full-k2"].layers == ()
    assert by_name["stage-k1"].layers == (7,) and by_name["stage-k2"].layers == (7, 8)
    assert by_name["last-k1"].layers == (8,) and by_name["last-k2"].layers == (7, 8)
    draws = [by_name[f"random-k2-d{d}"].layers for d in range(3)]
    assert all(len(set(d)) == 2 and all(1 <= x <= 8 for x in d) for d in draws)
    assert draws == [random_layers(8, 2, 5, d) for d in range(3)]  # seeded per (seed, k, draw)
    more = plan_cells(stage, [2, 3], n_draws=5, seed=5)
    assert [c.layers for c in more if c.rule == "random" and c.k == 2][
        :3
    ] == draws  # adding draws keeps these
    assert plan_cells(stage, [2], n_draws=3, seed=6) != plan_cells(stage, [2], n_draws=3, seed=5)
    assert all(Cell.from_dict(c.to_dict()) == c for c in cells)
    with pytest.raises(SettingsError, match="random draws"):
        plan_cells(stage, [1], n_draws=0)


def test_random_draws_are_uniform_over_the_layers() -> None:
    counts = np.zeros(9)
    for d in range(400):
        for layer in random_layers(8, 2, 0, d):
            counts[layer] += 1
    assert counts[0] == 0 and counts[1:].min() > 70 and counts[1:].max() < 130  # 100 expected each


def test_method_defaults_to_rebuild_where_supported_and_timed_generation_matches_skipping(
    tiny_models,
) -> None:
    lvlm = tiny_models("llava")
    stage = Stage(lvlm.n_layers, (2, 3), (3, 2), (0.0,) * lvlm.n_layers, "given")
    cells = plan_cells(stage, n_draws=1)
    assert choose_method(lvlm, cells, None) == ("rebuild", None)
    assert choose_method(lvlm, cells, "hook") == ("hook", None)
    with pytest.raises(SettingsError, match="unknown method"):
        choose_method(lvlm, cells, "prune")  # type: ignore[arg-type]
    images, prompts = [make_image(0), None, make_image(1)], ["describe the image", "what is red ?", "count"]
    options = TraceOptions.from_flat(max_new_tokens=4, batch_size=2, keep_hidden_states=False)
    timed = generate_timed(lvlm, images, prompts, (3,), method="rebuild", options=options)
    hooked = generate_skipped(lvlm, images, prompts, (3,), method="hook", options=options)
    assert [g.token_ids for g in timed.generations] == [g.token_ids for g in hooked]
    assert timed.n_tokens == sum(len(g.token_ids) + (g.stop_reason == "eos") for g in hooked)
    assert timed.seconds > 0 and timed.tokens_per_s > 0 and timed.cpu_seconds >= 0


def test_a_family_rebuild_cannot_shorten_falls_back_to_hook_with_a_note(tiny_models, monkeypatch) -> None:
    import evolens.experiments.compress as compress

    lvlm = tiny_models("llava")
    monkeypatch.setattr(compress, "rebuild_unsupported", lambda lvlm, layers: "per-layer embeddings")
    cells = plan_cells(Stage(lvlm.n_layers, (2,), (2,), (0.0,) * lvlm.n_layers, "given"), n_draws=1)
    method, note = choose_method(lvlm, cells, None)
    assert method == "hook" and note is not None and "per-layer embeddings" in note and "no compute" in note
    with pytest.raises(SettingsError, match=r"cannot remove layers.*--method hook"):
        choose_method(lvlm, cells, "rebuild")
