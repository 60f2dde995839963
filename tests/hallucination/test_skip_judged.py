"""Layer skipping judged on every task: a skip report built by hand, whose answers the test chooses, judged against
items whose truth it knows."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from evolens.data import DataItem
from evolens.errors import DatasetError, SettingsError
from evolens.experiments.skip import SkipReport, SkipResult, compare_variants
from evolens.experiments.skip.generate import Generation
from evolens.hallucination.skip_judged import ALL_TASKS, JudgeOptions, SkipJudged, judge_skip
from evolens.viz.skip import skip_judged_figure

DISC = "amber-discriminative"


def _gen(text: str) -> Generation:
    words = text.split()
    return Generation(text, words, [hash(w) % 1000 for w in words], "eos")


def _result(item_id: str, prompt: str, original: str, skip_a: str | None) -> SkipResult:
    """An item whose variant ``skipA`` answered ``skip_a`` (``None``: nothing skipped, the original reused) and
    whose variant ``skipB`` never ran."""
    plan = {"skipA": (3,) if skip_a is not None else (), "skipB": ()}
    generated = {(3,): _gen(skip_a)} if skip_a is not None else {}
    variants = compare_variants(_gen(original), plan, generated, None)
    return SkipResult(item_id, prompt, None, 4, "hook", None, variants)


def _vqa(item_id: str, answer: str, prior: str | None = None) -> DataItem:
    ann = {"task": "vqa", "answer": answer, "kind": "color", "atypical": prior is not None}
    return DataItem(item_id, None, "what color is the moon ?", {**ann, **({"prior": prior} if prior else {})})


def _yes_no(item_id: str, truth: str, prior: str) -> DataItem:
    ann = {"task": DISC, "truth": truth, "prior": prior, "type": "discriminative-attribute-state"}
    return DataItem(item_id, None, "is the moon blue ?", ann)


# item: (its truth, the original's answer, skipA's answer or None when skipA reused the original)
ITEMS = [
    (_vqa("q1", "blue", prior="yellow"), "yellow", "blue"),  # corrected, the prior's answer undone
    (_vqa("q2", "red"), "red", "green"),  # broken
    (_yes_no("q3", "yes", prior="no"), "no", None),  # wrong in both (skipA reused the original)
    (_yes_no("q4", "no", prior="yes"), "no", "yes"),  # broken, with the prior's answer
    (_vqa("q5", "circle"), "circle", "circle"),  # right in both
    (DataItem("q6", None, "hello", {}), "hi", "bye"),  # no evaluator: not judged
]


@pytest.fixture
def report() -> SkipReport:
    results = [_result(item.item_id, item.prompt, original, skip_a) for item, original, skip_a in ITEMS]
    return SkipReport(results, [], {"model": "hand-made"})


def test_corrected_and_broken_counted_against_the_truth(report: SkipReport, tmp_path: Path) -> None:
    judged = judge_skip(report, [item for item, _, _ in ITEMS], JudgeOptions(n_bootstrap=200))
    assert judged.variants == ["original", "skipA", "skipB"]
    assert judged.tasks == ["vqa", DISC, ALL_TASKS]
    assert judged.settings["n_judged"] == 5 and judged.settings["n_items"] == 6

    original = judged.row("original")
    assert original.comparison is None and original.n_ran == 5
    assert original.quality.n_judged == 5 and original.quality.accuracy == pytest.approx(3 / 5)
    assert original.quality.prior_answers == 2 and original.quality.n_prior == 3  # q1 and q3 gave the prior

    vqa = judged.row("skipA", "vqa").comparison
    assert vqa is not None
    assert (vqa.n_pairs, vqa.corrected, vqa.broken, vqa.prior_corrected, vqa.prior_broken) == (3, 1, 1, 1, 0)
    assert vqa.difference == 0.0
    yes_no = judged.row("skipA", DISC).comparison
    assert yes_no is not None
    assert (yes_no.n_pairs, yes_no.corrected, yes_no.broken, yes_no.prior_broken) == (2, 0, 1, 1)
    every = judged.row("skipA").comparison
    assert every is not None and (every.corrected, every.broken) == (1, 2)
    assert every.difference == pytest.approx(-1 / 5)
    assert every.low is not None and every.high is not None and every.low <= -0.2 <= every.high
    assert judged.row("skipA").quality.accuracy == pytest.approx(2 / 5)
    assert judged.row("skipA", DISC).n_ran == 1 and judged.row("skipA").n_ran == 4  # q3 reused the original

    never = judged.row("skipB").comparison
    assert never is not None and (never.corrected, never.broken, never.mcnemar_p) == (0, 0, 1.0)
    assert judged.row("skipB").n_ran == 0

    assert [(c.item_id, c.correct_before, c.correct_after) for c in judged.changed] == [
        ("q1", False, True),
        ("q2", True, False),
        ("q4", True, False),
    ]
    q1 = judged.changed[0]
    assert (q1.original, q1.text, q1.prior, q1.prior_before, q1.prior_after) == (
        "yellow",
        "blue",
        "yellow",
        True,
        False,
    )
    assert {s["benchmark"] for s in judged.scores["skipA"]} >= {"VQA"}

    saved = judged.save(tmp_path)
    assert saved.name == "skip_judged.json" and SkipJudged.load(tmp_path) == judged
    fig = skip_judged_figure(judged)
    assert [ax.get_title() for ax in fig.axes] == ["vqa (3 items)", f"{DISC} (2 items)", "all (5 items)"]


def test_judging_refuses_what_it_cannot_judge(report: SkipReport) -> None:
    with pytest.raises(DatasetError, match="none of the responses' ids"):
        judge_skip(report, [_vqa("elsewhere", "red")])
    with pytest.raises(SettingsError, match="protocol"):
        JudgeOptions(protocol="lenient")  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="level"):
        JudgeOptions(level=1.5)
    unjudged = judge_skip(report, [DataItem("q6", None, "hello", {})])
    assert unjudged.rows == [] and unjudged.settings["n_judged"] == 0
    with pytest.raises(SettingsError, match="nothing to draw"):
        skip_judged_figure(unjudged)


def test_an_evaluator_warning_comes_once_not_once_per_variant(report: SkipReport, caplog) -> None:
    items = [item for item, _, _ in ITEMS]
    with caplog.at_level(logging.WARNING, logger="evolens.data.evaluation"):
        judge_skip(report, items, JudgeOptions(n_bootstrap=0))
    free_form = [r for r in caplog.records if "not exactly 'Yes' or 'No'" in r.getMessage()]
    assert len(free_form) == 1  # the yes/no answers are lower-case: AMBER's script would count them wrong
