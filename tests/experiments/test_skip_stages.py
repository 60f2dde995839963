"""The stages of the layer-skip experiment on their own: planning each item's skip sets, comparing its variants
with the original, merging the reports of chunks, and running in chunks."""

from __future__ import annotations

import pytest

from evolens.analysis import Annotations, DetectorParams
from evolens.analysis.layers import ItemLayers
from evolens.api import TraceOptions
from evolens.errors import SettingsError
from evolens.experiments import SkipReport, merge_reports, run_skip, run_skip_chunked
from evolens.experiments.skip import (
    Generation,
    SkipOptions,
    compare_variants,
    plan_skips,
    summarize_variants,
)

N = 8  # decoder layers of the plans below


def test_plan_with_given_layers_and_named_sets() -> None:
    planner = plan_skips(N, ("skip2", "skip1"), {"mid": [5, 4, 5]}, critical=2, mutation=[6, 6], keep_last=2)
    assert planner.given == ItemLayers(N, 2, (6,), source="given")
    layers = planner.item_layers(trace=None)  # type: ignore[arg-type]  # given layers: no trace is read
    assert layers == planner.given
    # presets in the order asked for, then the named sets (checked: sorted, de-duplicated)
    assert planner.plan(layers) == {"skip2": (6,), "skip1": (3, 4, 5), "mid": (4, 5)}
    assert planner.settings() == {
        "presets": ["skip2", "skip1"],
        "layers": {"mid": [4, 5]},
        "critical": 2,
        "mutation": [6, 6],  # as given
        "keep_last": 2,
        "mutation_min_fraction": 0.1,
    }
    assert planner.params == DetectorParams()


def test_plan_of_named_sets_only() -> None:
    planner = plan_skips(N, (), {"late": [7]})
    assert planner.item_layers(trace=None) is None  # type: ignore[arg-type]  # nothing to detect
    assert planner.plan(None) == {"late": (7,)}


@pytest.mark.parametrize(
    ("presets", "layers", "options", "message"),
    [
        (("skip9",), None, {}, "unknown skip preset"),
        (("skip1",), {"skip1": [2]}, {}, "unique"),
        ((), {"original": [2]}, {}, "unique"),
        ((), {"a": [0]}, {}, "out of range"),
        ((), {"all": list(range(1, N + 1))}, {}, "every one"),
        (("skip1",), None, {"mutation": [5]}, "need the critical layer"),
        (("skip1",), None, {"critical": 5, "mutation": [4]}, "not before mutation"),
        ((), None, {}, "nothing to run"),
    ],
)
def test_plan_refuses(presets, layers, options, message) -> None:
    with pytest.raises(SettingsError, match=message):
        plan_skips(N, presets, layers, **options)


def _gen(*ids: int) -> Generation:
    return Generation(" ".join(f"w{i}" for i in ids), [f"w{i}" for i in ids], list(ids), "max_new_tokens")


def test_compare_variants_reuses_the_original_for_an_empty_set() -> None:
    original, changed = _gen(1, 2, 3, 4), _gen(1, 2, 9, 4)
    ann = Annotations.of(["w1"], ["w9"])
    variants = compare_variants(original, {"a": (3,), "none": ()}, {(3,): changed}, ann)
    assert [(v.name, v.skipped, v.ran) for v in variants] == [
        ("original", (), True),
        ("a", (3,), True),
        ("none", (), False),
    ]
    first, a, none = variants
    assert first.similarity == 1.0 and first.diff == [] and first.common_prefix == 4
    assert a.token_ids == [1, 2, 9, 4] and a.common_prefix == 2 and a.similarity == pytest.approx(0.75)
    assert a.hallucination is not None and a.hallucination.introduced == ["w9"]
    assert none.token_ids == original.token_ids and none.similarity == 1.0


def test_merge_reports_recomputes_the_summary() -> None:
    from evolens.experiments.skip import SkipResult

    def report(item_id: str, changed: Generation) -> SkipReport:
        variants = compare_variants(_gen(1, 2), {"a": (2,)}, {(2,): changed}, None)
        result = SkipResult(item_id, "p", None, N, "hook", None, variants)
        return SkipReport([result], summarize_variants([result]), {"method": "hook", "items": 1})

    merged = merge_reports([report("x", _gen(1, 2)), report("y", _gen(3, 4))], {"items": 2, "dataset": "d"})
    assert [r.item_id for r in merged.results] == ["x", "y"]
    assert merged.settings == {"method": "hook", "items": 2, "dataset": "d"}
    a = {s.name: s for s in merged.summary}["a"]
    assert a.n_items == 2 and a.mean_similarity == pytest.approx(0.5)  # 1 and 0 over the two items
    with pytest.raises(SettingsError, match="at least one"):
        merge_reports([])


def test_run_skip_chunked_equals_run_skip_per_chunk(tiny_models) -> None:
    lvlm = tiny_models("llama")
    prompts = ["describe the image", "what color is the sky ?", "a"]
    ann = [Annotations.of(["sky"], ["sea"]), None, None]
    trace = TraceOptions.from_flat(max_new_tokens=3)
    options = {"presets": (), "layers": {"mid": [2]}, "options": trace}
    done: list[int] = []
    report = run_skip_chunked(
        lvlm,
        [None] * 3,
        prompts,
        SkipOptions(presets=(), layers={"mid": [2]}, trace=trace),
        chunk_size=2,
        annotations=ann,
        extra_settings={"items": 3},
        on_chunk=done.append,
    )
    assert done == [2, 1]
    first = run_skip(lvlm, [None] * 2, prompts[:2], annotations=ann[:2], item_ids=["0", "1"], **options)
    last = run_skip(lvlm, [None], prompts[2:], annotations=ann[2:], item_ids=["2"], **options)
    assert report.to_dict() == merge_reports([first, last], {"items": 3}).to_dict()
    assert [r.item_id for r in report.results] == ["0", "1", "2"] and report.settings["items"] == 3
