"""The compression curve's figure (issue 18), from stored curve points only."""

from __future__ import annotations

import pytest

from evolens.errors import SettingsError
from evolens.viz.compress import compress_figure


def _point(rule: str, k: int, accuracy: float, speed: float, sd: float | None = None) -> dict:
    return {"rule": rule, "k": k, "accuracy": accuracy, "accuracy_sd": sd, "similarity": 1.0 - 0.1 * k,
            "similarity_sd": sd, "tokens_per_s": speed}  # fmt: skip


CURVE = [
    _point("full", 0, 0.9, 100.0),
    _point("stage", 1, 0.88, 110.0), _point("stage", 2, 0.8, 120.0),
    _point("random", 1, 0.7, 111.0, 0.05), _point("random", 2, 0.5, 121.0, 0.1),
    _point("last", 2, 0.6, 119.0), _point("last", 1, 0.85, 109.0),
]  # fmt: skip


def test_one_line_per_rule_from_the_full_model_in_each_panel() -> None:
    fig = compress_figure(CURVE, title="model $x$")
    by_k, agreement, by_speed = fig.axes
    labels = [t.get_text() for t in by_k.get_legend().get_texts()]
    assert sorted(labels) == sorted(["stabilisation stage (lowest JSD first)", "random layers (mean ± SD of draws)",
                                     "last layers", "full model"])  # fmt: skip
    last = by_k.containers[2].lines[0]  # errorbar container of "last": the full model, then k ascending
    assert list(last.get_xdata()) == [0.0, 1.0, 2.0] and list(last.get_ydata()) == [0.9, 0.85, 0.6]
    random_bars = by_k.containers[1]
    assert random_bars.has_yerr and list(random_bars.lines[0].get_ydata()) == [0.9, 0.7, 0.5]
    assert list(by_speed.containers[0].lines[0].get_xdata()) == [100.0, 110.0, 120.0]
    assert list(agreement.containers[0].lines[0].get_ydata()) == pytest.approx([1.0, 0.9, 0.8])
    assert fig.get_suptitle() == r"model \$x\$"


def test_bad_measure_or_no_full_model_is_refused() -> None:
    with pytest.raises(SettingsError, match="unknown measure"):
        compress_figure(CURVE, measure="speed")
    with pytest.raises(SettingsError, match="full-model point"):
        compress_figure([p for p in CURVE if p["rule"] != "full"])
    assert len(compress_figure(CURVE, measure="exact_match").axes) == 3
