"""The toy evaluation's scoring, a pure function of the answers: true answers score perfectly, prior answers count."""

from __future__ import annotations

from evolens.toy.evaluate import heldout_items, heldout_scenes, score


def test_true_answers_and_prior_answers() -> None:
    scenes = heldout_scenes(4, 12)
    items = heldout_items(scenes)
    truth = score(scenes, items, [q.answer for _, q in items], n_typical=4)
    assert truth.vqa["typical"]["all"].value == truth.vqa["atypical"]["all"].value == 1.0
    assert truth.prior_color_errors.hits == truth.yes_no_prior_answers.hits == 0
    assert truth.prior_color_errors.n > 0 and truth.yes_no_prior_answers.n > 0
    # answer every probe as the prior suggests: each counts, and nothing else does
    prior = [q.prior_answer or q.prior_yes_no or q.answer for _, q in items]
    judged = score(scenes, items, prior, n_typical=4)
    assert judged.prior_color_errors.hits == judged.prior_color_errors.n
    assert judged.yes_no_prior_answers.hits == judged.yes_no_prior_answers.n == truth.yes_no_prior_answers.n
    assert judged.vqa["typical"]["all"].value == 1.0  # typical scenes hold no probes
    assert "yes/no colour questions on them answered as the prior suggests" in judged.summary_lines()[-1]
