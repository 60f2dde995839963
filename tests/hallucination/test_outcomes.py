"""Per-item outcomes, quality and paired comparisons (issue 18): counts checked on items whose truth is chosen."""

from __future__ import annotations

import math

import pytest
from scipy.stats import binomtest

from evolens.data.evaluation import Response, evaluate
from evolens.errors import SettingsError
from evolens.hallucination.outcomes import Quality, compare_outcomes, item_outcomes, mcnemar_exact

ANN = {
    "q1": {"task": "vqa", "answer": "red", "prior": "yellow", "atypical": True},
    "q2": {"task": "vqa", "answer": "blue", "atypical": False},
    "q3": {"task": "vqa", "answer": "green", "atypical": False},
    "q4": {"task": "vqa", "answer": "white", "prior": "grey", "atypical": True},
}


def outcomes(answers: dict[str, str]) -> dict:
    evaluation = evaluate([Response(k, v, ANN[k]) for k, v in answers.items()], method="fallback")
    return item_outcomes(evaluation, ANN)


def test_outcomes_mark_prior_driven_answers_and_groups() -> None:
    out = outcomes({"q1": "yellow", "q2": "blue", "q3": "red", "q4": "white"})
    assert [out[k].correct for k in ("q1", "q2", "q3", "q4")] == [False, True, False, True]
    assert out["q1"].prior_driven and not out["q3"].prior_driven
    quality = Quality.of(out)
    assert (quality.n_judged, quality.accuracy, quality.n_prior, quality.prior_answers) == (4, 0.5, 2, 1)
    assert (quality.n_typical, quality.accuracy_typical) == (2, 0.5)
    assert (quality.n_atypical, quality.accuracy_atypical) == (2, 0.5)


def test_paired_comparison_counts_corrected_and_broken() -> None:
    base = outcomes({"q1": "yellow", "q2": "blue", "q3": "red", "q4": "white"})
    other = outcomes({"q1": "red", "q2": "blue", "q3": "green", "q4": "grey"})
    cmp = compare_outcomes(base, other, n_bootstrap=500, seed=1)
    assert (cmp.n_pairs, cmp.corrected, cmp.broken) == (4, 2, 1)
    assert (cmp.prior_corrected, cmp.prior_broken) == (1, 1)
    assert cmp.difference == pytest.approx(0.25) and cmp.accuracy_other == 0.75
    assert cmp.low is not None and cmp.high is not None and cmp.low <= 0.25 <= cmp.high
    same = compare_outcomes(base, base)
    assert (same.corrected, same.broken, same.difference, same.mcnemar_p) == (0, 0, 0.0, 1.0)
    assert same.low == same.high == 0.0


@pytest.mark.parametrize(("b", "c"), [(0, 0), (3, 0), (7, 2), (10, 10), (1, 12)])
def test_mcnemar_exact_is_the_binomial_test_of_discordant_pairs(b: int, c: int) -> None:
    expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue
    assert math.isclose(mcnemar_exact(b, c), expected, rel_tol=1e-9)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(SettingsError):
        compare_outcomes({}, {}, level=1.5)
    with pytest.raises(SettingsError):
        mcnemar_exact(-1, 2)
