"""Figures of ``evolens detect`` from a stored result only: ROC curves and the per-layer probe curve."""

from __future__ import annotations

import numpy as np
import pytest

from evolens.errors import SettingsError
from evolens.hallucination.detect_results import DetectResult
from evolens.report.figures import deterministic_svg
from evolens.viz.detect import probe_layer_figure, roc_figure
from evolens.viz.save import figure_bytes
from tests.hallucination.detect_data import synthetic_result


@pytest.fixture(scope="module")
def result() -> DetectResult:
    return synthetic_result()


def test_the_roc_figure_draws_each_stored_curve_per_family(result: DetectResult) -> None:
    fig = roc_figure(result)
    assert [ax.get_title() for ax in fig.axes] == [
        "baselines (output distribution)",
        "the paper's signals",
        "probes",
    ]
    table = result.table()
    assert table is not None
    drawn = {}
    for ax in fig.axes:
        for line, text in zip(ax.get_lines(), ax.get_legend().get_texts(), strict=False):
            drawn[text.get_text().split(" ")[0]] = line
    assert set(drawn) == {s.name for s in result.signals}
    for score in table.scores:  # each curve is the stored one, its AUROC in the legend
        np.testing.assert_allclose(drawn[score.name].get_xdata(), score.fpr)
        np.testing.assert_allclose(drawn[score.name].get_ydata(), score.tpr)
    with deterministic_svg():  # the same stored result, the same file
        assert figure_bytes(fig, "svg") == figure_bytes(roc_figure(result), "svg")
    prior = roc_figure(result, "prior-driven")
    assert "prior-driven: 5 hallucinated vs 80 grounded" in prior.get_suptitle()
    with pytest.raises(SettingsError, match="no table"):
        roc_figure(result, "typos")


def test_the_probe_figure_shows_auroc_and_accuracy_per_layer(result: DetectResult) -> None:
    fig = probe_layer_figure(result)
    (ax,) = fig.axes
    curve = result.hidden_curve
    assert curve is not None
    auroc, accuracy = ax.get_lines()[:2]
    np.testing.assert_allclose(auroc.get_xdata(), curve.layers)
    np.testing.assert_allclose(auroc.get_ydata(), [e.value for e in curve.auroc])
    np.testing.assert_allclose(accuracy.get_ydata(), curve.balanced_accuracy)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "chance" in labels and any(label.startswith("best baseline AUROC") for label in labels)
    without = DetectResult(result.n_layers, result.options, result.signals, result.tables)
    with pytest.raises(SettingsError, match="no hidden-state probe"):
        probe_layer_figure(without)
