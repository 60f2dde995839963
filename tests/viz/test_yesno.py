"""The yes/no figure, drawn from stored totals only: mean margins of right and wrong answers, the share decided."""

from __future__ import annotations

import numpy as np

from evolens.data.yesno import YesNoCurve, YesNoItem, yes_no_totals
from evolens.report.figures import deterministic_svg
from evolens.viz.save import figure_bytes
from evolens.viz.yesno import yes_no_figure


def _item(item_id: str, truth: str, margin: list[float], decided: int, late: bool) -> YesNoItem:
    logp_yes = np.log(np.full(len(margin), 0.4)) + np.array(margin) / 2
    logp_no = np.log(np.full(len(margin), 0.4)) - np.array(margin) / 2
    answer = "yes" if margin[-1] > 0 else "no"
    return YesNoItem(item_id, "pope", truth, answer, YesNoCurve(logp_yes, logp_no, answer, decided, late))


def _totals() -> dict:
    return yes_no_totals(
        [
            _item("1", "yes", [1.0, 1.0, 2.0, 3.0, 4.0], 0, False),
            _item("2", "no", [1.0, -1.0, -2.0, -3.0, -2.0], 1, False),
            _item("3", "no", [-1.0, -1.0, -1.0, 1.0, 2.0], 3, True),
        ]
    )


def test_the_figure_draws_the_stored_means_and_shares() -> None:
    totals = _totals()
    fig = yes_no_figure(totals)
    margin_ax, decided_ax = fig.axes
    lines = {line.get_label(): line for line in margin_ax.get_lines() if not line.get_label().startswith("_")}
    np.testing.assert_allclose(lines["right logit answers"].get_ydata(), totals["mean_margin_correct"])
    np.testing.assert_allclose(lines["wrong logit answers"].get_ydata(), [-1.0, -1.0, -1.0, 1.0, 2.0])
    np.testing.assert_allclose(decided_ax.get_lines()[0].get_ydata(), totals["decided_cumulative"])
    assert "late flips 33.3%" in decided_ax.get_title()
    with deterministic_svg():  # the same totals, the same file
        assert figure_bytes(fig, "svg") == figure_bytes(yes_no_figure(totals), "svg")


def test_the_figure_draws_without_wrong_answers() -> None:
    totals = yes_no_totals([_item("1", "yes", [1.0, 2.0, 3.0], 0, False)])
    assert totals["mean_margin_wrong"] is None
    margin_ax, _ = yes_no_figure(totals).axes
    assert margin_ax.get_lines()[0].get_label() == "right logit answers"
