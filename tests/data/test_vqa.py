"""One-word VQA judging: first word against the exact answer, prior answers counted, mentions for token labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from evolens.data import evaluate
from evolens.data.evaluation import Response
from evolens.data.vqa import VqaScores, judge_vqa
from evolens.errors import DatasetError
from tests.run_options import run_options


@pytest.mark.parametrize(
    ("text", "answer", "wrong", "span"),
    [("Red.", "red", False, (0, 3)), (" blue, I think", "red", True, (1, 5)), ("", "red", True, None)],
)
def test_first_word_is_the_answer(text: str, answer: str, wrong: bool, span: tuple[int, int] | None) -> None:
    judged = judge_vqa("q", text, {"task": "vqa", "answer": answer})
    assert judged.hallucinated is wrong and judged.truth == answer
    if span is None:
        assert judged.mentions == () and judged.answer is None
    else:
        mention = judged.mentions[0]
        assert (mention.start, mention.end) == span
        assert mention.label == ("hallucinated" if wrong else "grounded")


def test_scores_by_kind_and_prior_answers() -> None:
    responses = [
        Response("1", "red", {"task": "vqa", "answer": "blue", "kind": "color", "prior": "red"}),
        Response("2", "green", {"task": "vqa", "answer": "green", "kind": "color", "prior": "red"}),
        Response("3", "two", {"task": "vqa", "answer": "two", "kind": "count"}),
        Response("4", "one", {"task": "vqa", "answer": "three", "kind": "count"}),
    ]
    scores = evaluate(responses).vqa
    assert scores is not None
    assert (scores.n, scores.correct, scores.accuracy) == (4, 2, 0.5)
    assert scores.by_kind == {
        "color": {"n": 2, "correct": 1, "accuracy": 0.5},
        "count": {"n": 2, "correct": 1, "accuracy": 0.5},
    }
    assert (scores.n_prior, scores.prior_answers, scores.prior_rate) == (2, 1, 0.5)
    assert VqaScores.from_dict(scores.to_dict()) == scores


def test_an_answer_must_be_one_word() -> None:
    with pytest.raises(DatasetError, match="one-word"):
        judge_vqa("q", "red", {"task": "vqa", "answer": "dark red"})


@pytest.mark.parametrize("answer", [None, "", "dark red", 3])
def test_a_vqa_item_without_a_one_word_answer_stops_the_run_before_any_tracing(
    tmp_path: Path, answer: object, tiny_llava
) -> None:
    import json

    import evolens
    from evolens.data import ImageFolder
    from tests.data.fixtures import write_folder

    root = write_folder(tmp_path / "imgs", n=2)
    good = {"id": "ok", "image": "a/img0.png", "prompt": "what color ?", "task": "vqa", "answer": "red"}
    bad = {"id": "bad", "image": "b/img1.png", "prompt": "what color ?", "task": "vqa"}
    if answer is not None:
        bad["answer"] = answer
    jsonl = tmp_path / "vqa.jsonl"
    jsonl.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(DatasetError, match=r"vqa.jsonl, line 2: a 'vqa' item needs a one-word 'answer'"):
        evolens.run(
            tiny_llava,
            ImageFolder(root, jsonl=jsonl),
            tmp_path / "run",
            **run_options(device="cpu", progress=False),
        )
    assert not (tmp_path / "run").exists()
