"""The toy world: deterministic, its annotations match its pixels, its language is consistent."""

from __future__ import annotations

import numpy as np
import pytest

from evolens.toy import world
from evolens.toy.world import COLORS, PRIORS, RGB, SHAPES, SLOTS, Scene


def scenes(seed: int, n: int = 200, **kw: float) -> list[Scene]:
    rng = np.random.default_rng(seed)
    return [world.sample_scene(rng, **kw) for _ in range(n)]


def test_generator_is_deterministic_under_a_seed() -> None:
    a, b, c = scenes(7), scenes(7), scenes(8)
    assert a == b and a != c
    assert all(np.array_equal(world.render(x), world.render(y)) for x, y in zip(a, b, strict=True))


def test_scene_rules() -> None:
    for scene in scenes(1, 500):
        assert 1 <= len(scene.objects) <= 3
        assert len(set(scene.shapes)) == len(scene.shapes)
        slots = [o.slot for o in scene.objects]
        assert len(set(slots)) == len(slots)
        assert slots == sorted(slots, key=SLOTS.index)  # slot order, as captions say them
        assert all(o.color in COLORS and o.shape in SHAPES for o in scene.objects)


def test_annotations_match_the_pixels() -> None:
    for scene in scenes(2, 100):
        image, labels = world.render_with_labels(scene)
        background = labels < 0
        assert (image[background] == world.BACKGROUND).all()
        for idx, obj in enumerate(scene.objects):
            mask = labels == idx
            assert mask.sum() > 60, obj  # every object is visible
            assert (image[mask] == RGB[obj.color]).all()
            ys, xs = np.nonzero(mask)
            cx, cy = world.SLOT_CENTERS[obj.slot]
            assert abs(xs.mean() - cx) < 6 and abs(ys.mean() - cy) < 6, obj  # it sits in its slot


def test_shapes_are_distinct_masks() -> None:
    masks = {}
    for shape in SHAPES:
        scene = Scene((world.Obj(shape, "red", "left"),))
        masks[shape] = world.render_with_labels(scene)[1] == 0
    for a in SHAPES:
        for b in SHAPES:
            if a < b:
                assert (masks[a] ^ masks[b]).sum() >= 40, (a, b)  # dozens of pixels tell them apart


def test_priors_hold_in_training_scenes_and_test_groups_split_on_them() -> None:
    objs = [o for s in scenes(3, 4000) for o in s.objects if o.shape in PRIORS]
    share = np.mean([o.color == PRIORS[o.shape] for o in objs])
    assert 0.93 < share < 0.97, share
    rng = np.random.default_rng(0)
    assert not any(world.sample_test_scene(rng, atypical=False).atypical for _ in range(200))
    assert all(world.sample_test_scene(rng, atypical=True).atypical for _ in range(200))


def test_caption_round_trip() -> None:
    for scene in scenes(4, 200):
        text = world.caption(scene)
        assert world.parse_caption(text) == [(o.color, o.shape, o.slot) for o in scene.objects]
        assert world.parse_caption(text.replace(" ,", ",").replace(" .", ".")) == world.parse_caption(text)
    assert world.parse_caption("a heart and a blue moon on the left") == [
        (None, "heart", None),
        ("blue", "moon", "left"),
    ]


def test_questions_answer_from_the_scene() -> None:
    rng = np.random.default_rng(5)
    for scene in scenes(5, 300):
        qs = world.questions(scene, rng)
        by_kind = {q.kind: q for q in qs}
        assert {q.kind for q in qs} == {*world.ONE_WORD_KINDS, "describe"}
        color = by_kind["color"]
        assert scene.find(color.subject).color == color.answer  # type: ignore[arg-type,union-attr]
        slot_phrase = by_kind["shape"].text.removeprefix("what shape is ").removesuffix(" ?")
        slot = next(s for s, p in world.SLOT_PHRASES.items() if p == slot_phrase)
        assert scene.at(slot).shape == by_kind["shape"].answer  # type: ignore[union-attr]
        assert by_kind["count"].answer == world.COUNT_WORDS[len(scene.objects) - 1]
        exists = [q for q in qs if q.kind == "exists"]
        assert sorted(q.answer for q in exists) == ["no", "yes"]
        for q in exists:
            assert (q.subject in scene.shapes) == (q.answer == "yes")
        attr = by_kind["attribute"]
        asked = attr.text.split()[3]
        assert (scene.find(attr.subject).color == asked) == (attr.answer == "yes")  # type: ignore[union-attr,arg-type]
        assert by_kind["describe"].answer == world.caption(scene)
        assert attr.asked == asked and all(q.asked is None for q in qs if q.kind != "attribute")
        for q in qs:
            if q.prior_answer is not None:
                assert q.atypical and q.prior_answer == PRIORS[q.subject] != q.answer  # type: ignore[index]


def test_the_prior_answer_of_a_yes_no_colour_question() -> None:
    def attribute(shape: str, asked: str, answer: str, atypical: bool) -> world.Question:
        return world.Question("attribute", f"is the {shape} {asked} ?", answer, shape, atypical, asked)

    # an atypical (blue) moon: the prior says "yes" to yellow and "no" to its true colour
    assert attribute("moon", "yellow", "no", True).prior_yes_no == "yes"
    assert attribute("moon", "blue", "yes", True).prior_yes_no == "no"
    assert attribute("moon", "green", "no", True).prior_yes_no is None  # the prior agrees with the truth
    assert attribute("moon", "yellow", "yes", False).prior_yes_no is None  # a typical moon: no probe
    assert attribute("square", "red", "no", False).prior_yes_no is None  # no prior colour
    assert world.Question("exists", "is there a moon ?", "yes", "moon", True).prior_yes_no is None


def test_every_word_is_in_the_vocabulary() -> None:
    vocab = set(world.vocabulary())
    rng = np.random.default_rng(6)
    for scene in scenes(6, 100):
        for q in world.questions(scene, rng):
            assert set(q.text.split()) <= vocab and set(q.answer.split()) <= vocab


def test_unknown_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown shape"):
        world.render(Scene((world.Obj("hexagon", "red", "left"),)))


def test_caption_prior_colors_judge_the_atypical_objects_named_with_a_colour() -> None:
    scene = world.Scene(
        (
            world.Obj("moon", "blue", "top"),
            world.Obj("heart", "white", "left"),
            world.Obj("square", "red", "right"),
        )
    )
    # the moon given its prior colour, the heart its true one; the square has no prior; "star" is not in the scene
    assert world.caption_prior_colors(
        scene, "a yellow moon , a white heart , a red square and a red star ."
    ) == [True, False]
    assert world.caption_prior_colors(scene, "a moon at the top .") == []  # no colour named
