"""The demo's count of prior-driven answers: one-word and yes/no colour probes, and captions, against the truth."""

from __future__ import annotations

from evolens.data.scores import ItemEvaluation
from evolens.demo import prior_answer_line
from evolens.toy.world import Obj, Scene


def _judged(item_id: str, task: str, text: str, answer: str | None = None) -> ItemEvaluation:
    return ItemEvaluation(item_id, task, text, (), False, answer=answer)


def test_prior_answers_are_counted_per_task() -> None:
    blue_moon = Scene((Obj("moon", "blue", "top"), Obj("square", "red", "left")))
    red_heart = Scene((Obj("heart", "red", "top"),))  # typical: not a probe
    scenes = {"a.png": blue_moon, "b.png": red_heart}
    items = {
        "v1": {"image": "a.png", "annotations": {"prior": "yellow"}},
        "v2": {"image": "a.png", "annotations": {"prior": "yellow"}},
        "v3": {"image": "a.png", "annotations": {}},  # no probe: not counted
        "y1": {"image": "a.png", "annotations": {"prior": "no"}},
        "y2": {"image": "a.png", "annotations": {"prior": "yes"}},
        "c1": {"image": "dir/a.png", "annotations": {}},  # the image is found by file name
        "c2": {"image": "b.png", "annotations": {}},
    }
    judged = [
        _judged("v1", "vqa", "yellow", "yellow"),
        _judged("v2", "vqa", "blue", "blue"),
        _judged("v3", "vqa", "yellow", "yellow"),
        _judged("y1", "amber-discriminative", "no", "no"),
        _judged("y2", "amber-discriminative", "no", "no"),
        # the moon named yellow (prior), the square's colour is no probe, a moon without a colour is not counted
        _judged("c1", "amber-generative", "a yellow moon at the top and a red square on the left ."),
        _judged("c2", "amber-generative", "a red heart at the top ."),
    ]
    line = prior_answer_line(judged, items, scenes)
    assert line == (
        "prior-driven answers (an atypical heart or moon given its prior colour): colour questions 1/2, yes/no 1/2, "
        "captions 1/1 (captions: of the atypical objects they name with a colour)"
    )


def test_no_probes_no_line() -> None:
    items = {"v": {"image": "a.png", "annotations": {}}}
    assert prior_answer_line([_judged("v", "vqa", "red", "red")], items, {}) is None
    # captions without their scene are not judged
    assert prior_answer_line([_judged("c", "amber-generative", "a yellow moon .")], {}, {}) is None
