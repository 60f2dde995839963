"""Logit-based yes/no scoring (evolens.data.yesno): spellings, the margin curve, the decision layer, late flips and
the benchmarks' scores from set yes/no probabilities."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evolens.data.amber_eval import AmberDiscriminativeScores
from evolens.data.pope import pope_scores
from evolens.data.scores import ItemEvaluation
from evolens.data.yesno import (
    YesNoItem,
    YesNoTokens,
    decision_layer,
    is_yes_no,
    late_window_start,
    truth_of,
    yes_no_curve,
    yes_no_lines,
    yes_no_tokens,
    yes_no_totals,
)
from evolens.errors import SettingsError

YES_IDS, NO_IDS = (10, 11), (20,)
TOKENS = YesNoTokens(YES_IDS, NO_IDS)
TRACKED = [5, 10, 20, 11]  # another tracked id first, then the yes/no ids in another order


class FakeTokenizer:
    """Whole words are tokens (those in ``vocab``); anything else is two unknown pieces."""

    def __init__(self, vocab: dict[str, int]) -> None:
        self.vocab = vocab
        self.words = {v: k for k, v in vocab.items()}

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [self.vocab[text]] if text in self.vocab else [0, 0]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.words.get(i, "<unk>") for i in ids)


def _logprobs(p_yes: list[tuple[float, float]], p_no: list[float], n_steps: int = 2) -> np.ndarray:
    """``[L + 1, n_steps, 4]`` log-probabilities over TRACKED: per layer the two yes spellings and the no one."""
    out = np.full((len(p_no), n_steps, len(TRACKED)), math.log(1e-6))
    for layer, ((y10, y11), n20) in enumerate(zip(p_yes, p_no, strict=True)):
        out[layer, 0, TRACKED.index(10)] = math.log(y10)
        out[layer, 0, TRACKED.index(11)] = math.log(y11)
        out[layer, 0, TRACKED.index(20)] = math.log(n20)
    return out


def test_spellings_are_single_tokens_that_decode_back() -> None:
    tok = FakeTokenizer({"Yes": 7, " Yes": 8, "yes": 9, " yes": 9, "No": 12, " no": 13})
    found = yes_no_tokens(tok)
    assert found.yes == (7, 8, 9) and found.no == (12, 13)
    assert found.spellings == {"Yes": 7, " Yes": 8, "yes": 9, " yes": 9, "No": 12, " no": 13}
    assert YesNoTokens.from_dict(found.to_dict()) == found


def test_a_tokenizer_without_yes_is_refused_in_one_line() -> None:
    with pytest.raises(SettingsError, match="no single token for 'yes'") as err:
        yes_no_tokens(FakeTokenizer({"No": 12, "Yess": 3}))
    assert "\n" not in str(err.value)
    with pytest.raises(SettingsError, match="both as yes and no"):
        YesNoTokens((1,), (1,))


def test_the_tiny_word_tokenizer_has_lower_case_spellings_only() -> None:
    from evolens.testing.tokenizer import word_tokenizer

    tok = word_tokenizer()
    found = yes_no_tokens(tok)
    assert found.yes == (tok.convert_tokens_to_ids("yes"),) and found.no == (tok.convert_tokens_to_ids("no"),)


def test_margin_sums_the_spellings_and_the_last_layer_decides() -> None:
    # layer:      0           1           2           3           4          5
    p_yes = [(0.1, 0.1), (0.05, 0.05), (0.3, 0.1), (0.2, 0.2), (0.3, 0.3), (0.25, 0.25)]
    p_no = [0.1, 0.3, 0.2, 0.5, 0.2, 0.1]
    curve = yes_no_curve(TRACKED, _logprobs(p_yes, p_no), TOKENS)
    expected = [math.log((a + b) / n) for (a, b), n in zip(p_yes, p_no, strict=True)]
    np.testing.assert_allclose(curve.margin, expected, rtol=1e-9)
    np.testing.assert_allclose(np.exp(curve.logp_yes[-1]), 0.5)
    assert curve.answer == "yes"
    assert curve.decision_layer == 4  # layer 3 still says no (0.4 < 0.5)
    assert (
        late_window_start(5) == 4 and not curve.late_flip
    )  # the change 3 -> 4 is before the last transition


def test_a_change_in_the_last_transition_is_a_late_flip() -> None:
    p_yes = [(0.3, 0.3)] * 5 + [(0.05, 0.05)]
    p_no = [0.1] * 5 + [0.6]
    curve = yes_no_curve(TRACKED, _logprobs(p_yes, p_no), TOKENS)
    assert curve.answer == "no" and curve.decision_layer == 5 and curve.late_flip
    steady = yes_no_curve(TRACKED, _logprobs([(0.1, 0.1)] * 6, [0.5] * 6), TOKENS)
    assert steady.answer == "no" and steady.decision_layer == 0 and not steady.late_flip
    wider = yes_no_curve(TRACKED, _logprobs(p_yes, p_no), TOKENS, late_fraction=0.5)
    assert wider.late_flip


def test_decision_layer_edge_cases_and_window() -> None:
    assert decision_layer(np.array([1.0, -1.0, 0.0])) is None
    assert decision_layer(np.array([1.0, 0.0, 2.0])) == 2  # a zero margin is not the final sign
    assert decision_layer(np.array([-1.0, 1.0, -1.0, -2.0])) == 2
    assert late_window_start(32) == 32 - 7 and late_window_start(1) == 0
    with pytest.raises(SettingsError):
        late_window_start(4, 0.0)
    with pytest.raises(SettingsError, match="did not track"):
        yes_no_curve([5, 10], np.zeros((3, 1, 2)), TOKENS)


def test_tasks_and_truths() -> None:
    assert is_yes_no({"task": "pope"}) and is_yes_no({"task": "amber-discriminative"})
    assert not is_yes_no({"task": "chair"}) and not is_yes_no({})
    assert truth_of({"task": "pope", "label": "no"}) == "no"
    assert truth_of({"task": "amber-discriminative", "truth": "yes"}) == "yes"


def _item(item_id: str, task: str, truth: str, yes: float, no: float, kind: str = "") -> YesNoItem:
    p_yes = [(0.2, 0.2)] * 5 + [(yes / 2, yes / 2)]
    p_no = [0.2] * 5 + [no]
    return YesNoItem(item_id, task, truth, "yes", yes_no_curve(TRACKED, _logprobs(p_yes, p_no), TOKENS), kind)


def test_totals_score_logit_answers_with_the_benchmarks_rules() -> None:
    items = [
        _item("1", "pope", "yes", 0.6, 0.3),  # yes, right
        _item("2", "pope", "no", 0.6, 0.3),  # yes, wrong
        _item("3", "pope", "no", 0.1, 0.8),  # no, right, flips at the last layer
        _item("4", "amber-discriminative", "no", 0.1, 0.8, "discriminative-hallucination"),
        _item("5", "amber-discriminative", "no", 0.6, 0.1, "discriminative-attribute-state"),
    ]
    totals = yes_no_totals(items)
    pope = [ItemEvaluation(i, "pope", "", (), False, answer=a, truth=t) for i, a, t in
            [("1", "yes", "yes"), ("2", "yes", "no"), ("3", "no", "no")]]  # fmt: skip
    assert totals["scores"]["pope"] == pope_scores(pope).to_dict()
    amber = [ItemEvaluation(i, "amber-discriminative", "", (), False, answer=a, truth="no") for i, a in
             [("4", "no"), ("5", "yes")]]  # fmt: skip
    expected = AmberDiscriminativeScores.from_items(
        amber, ["discriminative-hallucination", "discriminative-attribute-state"]
    )
    assert totals["scores"]["amber_discriminative"] == expected.to_dict()
    assert totals["n_items"] == 5 and totals["n_layers"] == 5
    assert totals["agreement"] == pytest.approx(3 / 5)  # every text answer is "yes"
    assert totals["late_flip_rate"] == pytest.approx(2 / 5)  # items 3 and 4 change sign at the last layer
    assert totals["decided_share"] == pytest.approx([3 / 5, 0, 0, 0, 0, 2 / 5])
    assert totals["decided_cumulative"][-1] == pytest.approx(1.0)
    assert totals["median_decision_layer"] == 0.0
    assert len(totals["mean_margin_correct"]) == 6 and totals["mean_margin_wrong"] is not None
    lines = yes_no_lines(totals)
    assert lines[0].startswith("AMBER discriminative (2 questions, logits): accuracy 50.0")
    assert lines[1].startswith("POPE (3 questions, logits): accuracy 66.7")
    assert "late flips 40.0%" in lines[2]
    assert yes_no_totals([])["n_items"] == 0 and yes_no_lines(yes_no_totals([])) == []
