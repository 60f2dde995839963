"""The report's section on hallucination detectors (``results/detect.json``)."""

from __future__ import annotations

import re

from evolens.hallucination.detect_results import DetectResult
from evolens.report.detect import detect_section, detect_tables
from tests.hallucination.detect_data import synthetic_result


def test_the_section_shows_every_table_and_figure() -> None:
    result = synthetic_result()
    html = detect_section(result)
    assert html.startswith("<h3>Hallucination detectors</h3>")
    assert html.count("<figure>") == len(result.tables) + 1  # a ROC figure per table, the probe curve
    tables = detect_tables(result)
    assert [t["title"].split(":")[0] for t in tables] == [
        "all errors",
        "prior-driven",
        "other",
        "hidden-state probe per layer (out-of-fold)",
    ]
    final_prob = result.tables[0].score("final_prob")
    assert final_prob is not None and final_prob.auroc.value == 1.0
    row = next(r for r in tables[0]["rows"] if r[0] == "final_prob")
    assert row[1] == "baseline" and row[3].startswith("1.000 [1.000, 1.000]")
    assert len(tables[-1]["rows"]) == 3  # states 0..2
    assert re.search(r"50 bootstrap replicates over items", html)


def test_without_the_hidden_probe_the_section_has_no_layer_curve() -> None:
    result = synthetic_result()
    plain = DetectResult(result.n_layers, result.options, result.signals[:-2], result.tables)
    html = detect_section(plain)
    assert "hidden-state probe per layer" not in html and html.count("<figure>") == len(result.tables)
