from __future__ import annotations

import numpy as np
import pytest

from evolens.analysis import (
    NOT_FOUND,
    Annotations,
    ItemLayers,
    analyze_metrics,
    common_prefix,
    count_hallucinations,
    default_keep_last,
    item_layers,
    mention_spans,
    mentions,
    similarity,
    skip_presets,
    token_diff,
)
from evolens.errors import SettingsError
from tests.analysis.synthetic import make_metrics, step_jsd, step_probs


def test_similarity_and_diff() -> None:
    a = [1, 2, 3, 4, 5]
    assert similarity(a, a) == 1.0 and similarity([], []) == 1.0
    assert similarity(a, [9, 9]) == 0.0
    assert similarity(a, [1, 2, 7, 4, 5]) == pytest.approx(2 * 4 / 10)
    assert common_prefix(a, [1, 2, 7, 4, 5]) == 2 and common_prefix(a, a[:3]) == 3
    ops = token_diff(a, [1, 2, 7, 4, 5, 6], list("abcde"), list("abxdef"))
    assert [(o.tag, o.a_tokens, o.b_tokens) for o in ops] == [
        ("equal", ["a", "b"], ["a", "b"]),
        ("replace", ["c"], ["x"]),
        ("equal", ["d", "e"], ["d", "e"]),
        ("insert", [], ["f"]),
    ]
    with pytest.raises(SettingsError):
        token_diff(a, a, ["a"], list("abcde"))


def test_mentions_and_hallucination_counts() -> None:
    text = "A Dog and two dogs near the traffic  light; a bus. Dogma is not a dog word."
    assert mentions(text, ["dog", "traffic light", "bus", "cat"]) == {"dog": 3, "traffic light": 1, "bus": 1}
    spans = mention_spans(text, ["dog", "traffic light"])
    assert [text[a:b] for a, b, w in spans if w == "dog"] == ["Dog", "dogs", "dog"]
    assert [text[a:b] for a, b, w in spans if w == "traffic light"] == ["traffic  light"]
    ann = Annotations.of(ground_truth=["Dog", "bus"], hallucination=["cat", "frisbee", "traffic light"])
    original = count_hallucinations("a dog with a cat and a frisbee", ann)
    assert original.hallucinated == ["cat", "frisbee"] and original.n_hallucinated == 2
    assert original.correct == ["dog"] and original.corrected == [] and original.introduced == []
    variant = count_hallucinations(
        "a dog with a cat under a traffic light", ann, original="a dog with a cat and a frisbee"
    )
    assert variant.corrected == ["frisbee"] and variant.introduced == ["traffic light"]
    assert Annotations.from_dict(ann.to_dict()) == ann
    with pytest.raises(SettingsError, match="both"):
        Annotations.of(["dog"], ["Dog "])
    with pytest.raises(SettingsError, match="one string"):
        Annotations(ground_truth="dog", hallucination=frozenset())  # type: ignore[arg-type]


def test_item_layers_and_presets() -> None:
    n_layers = 32
    rng = np.random.default_rng(0)
    crits = [17, 18, 18, 19, 18]
    probs = np.stack([step_probs(rng, n_layers, c) for c in crits], axis=1)
    spikes = [[26], [26], [], [26, 29], []]
    jsd = np.stack([step_jsd(rng, n_layers, c, s).jsd for c, s in zip(crits, spikes, strict=True)], axis=1)
    analysis = analyze_metrics(make_metrics(probs, jsd))
    assert analysis.critical_layer_jsd.tolist() == crits
    layers = item_layers(analysis)
    assert layers.critical_layer == 18
    assert layers.mutation_layers == (27, 30)  # 27 in 3 of 5 tokens, 30 in 1 of 5 (>= 10%)
    assert item_layers(analysis, min_fraction=0.5).mutation_layers == (27,)
    assert item_layers(analysis, min_fraction=1.0).mutation_layers == (27,)  # none reaches it: the mode
    presets = skip_presets(layers)
    assert default_keep_last(32) == 5
    assert presets == {
        "skip1": tuple(range(19, 27)),  # state 18 goes straight into layer 27
        "skip2": (27, 30),
        "skip3": tuple(range(19, 28)),  # the last 5 layers 28..32 kept
    }
    assert skip_presets(layers, ["skip3"], keep_last=2) == {"skip3": tuple(range(19, 31))}
    adjacent = ItemLayers(32, 18, (19,))
    assert skip_presets(adjacent, ["skip1", "skip2"]) == {"skip1": (), "skip2": (19,)}
    none = ItemLayers(32, NOT_FOUND, ())
    assert skip_presets(none) == {"skip1": (), "skip2": (), "skip3": ()}
    with pytest.raises(SettingsError, match="unknown skip preset"):
        skip_presets(layers, ["skip4"])
    with pytest.raises(SettingsError, match="keep_last"):
        skip_presets(layers, keep_last=32)


def test_item_layers_validation() -> None:
    with pytest.raises(SettingsError, match="not before mutation"):
        ItemLayers(32, 20, (18,))
    with pytest.raises(SettingsError, match="not before mutation"):
        ItemLayers(32, 20, (20,))
    with pytest.raises(SettingsError, match="out of range"):
        ItemLayers(32, 20, (33,))
    with pytest.raises(SettingsError, match="critical layer must be"):
        ItemLayers(32, 32, ())
    with pytest.raises(SettingsError, match="need a critical"):
        ItemLayers(32, NOT_FOUND, (5,))
    assert ItemLayers.from_dict(ItemLayers(32, 18, (27,)).to_dict()) == ItemLayers(32, 18, (27,))


def test_mention_spans_locate_every_mention() -> None:
    from evolens.analysis.compare import mention_spans

    text = "Two Dogs and a dog; dogged? A traffic  light."
    spans = mention_spans(text, ["dog", "traffic light"])
    assert spans == [(4, 8, "dog"), (15, 18, "dog"), (30, 44, "traffic light")]
    assert [text[a:b] for a, b, _ in spans] == ["Dogs", "dog", "traffic  light"]
    assert mentions(text, ["dog", "traffic light"]) == {"dog": 2, "traffic light": 1}
    # lower() lengthens "İ": offsets still index the original text
    assert [("İstanbul dog"[a:b], w) for a, b, w in mention_spans("İstanbul dog", ["dog"])] == [
        ("dog", "dog")
    ]
