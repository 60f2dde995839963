"""The report's yes/no section, from a stored ``results/yesno.json`` only."""

from __future__ import annotations

import json
from pathlib import Path

from evolens.data.yesno import YesNoCurve, YesNoItem, yes_no_totals
from evolens.report.yesno import yes_no_section, yes_no_tables


def _totals() -> dict:
    import numpy as np

    items = []
    for item_id, truth, margin in (("1", "yes", [1.0, 2.0, 3.0]), ("2", "yes", [1.0, 1.0, -1.0])):
        m = np.array(margin)
        answer = "yes" if m[-1] > 0 else "no"
        decided = 0 if m[-1] > 0 else 2
        curve = YesNoCurve(m / 2, -m / 2, answer, decided, decided == 2)
        items.append(YesNoItem(item_id, "pope", truth, "yes", curve))
    totals = yes_no_totals(items)
    totals["text_scores"] = {"pope": totals["scores"]["pope"], "amber_discriminative": None}
    return totals


def test_the_tables_put_logit_scores_beside_text_scores() -> None:
    scores, decided = yes_no_tables(_totals())
    assert scores["rows"][0][:3] == ["POPE", "logits", "50.0"] and scores["rows"][1][:2] == ["POPE", "text"]
    assert "agree for 50.0%" in scores["title"]
    assert decided["rows"] == [["0", "50.0", "50.0"], ["1", "0.0", "50.0"], ["2", "50.0", "100.0"]]
    assert "late flips 50.0%" in decided["title"] and "from layer 1" in decided["title"]


def test_the_section_shows_the_figure_and_tables_or_nothing(tmp_path: Path) -> None:
    assert yes_no_section(tmp_path) == ""
    (tmp_path / "yesno.json").write_text(json.dumps({"totals": _totals(), "items": []}))
    html = yes_no_section(tmp_path)
    assert "Yes/no answers from the logits" in html and "<img" in html and "decided by here" in html
    (tmp_path / "yesno.json").write_text("{")
    assert "cannot read" in yes_no_section(tmp_path)
