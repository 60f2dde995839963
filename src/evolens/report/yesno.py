"""The report's section on logit-based yes/no scoring (``results/yesno.json`` of a run, written by its merge): the
scores from the logits beside the scores from the text, where the decision forms and how often it flips late, and
the figure drawn from the stored totals with :mod:`evolens.viz.yesno`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evolens.data.yesno import YESNO_JSON
from evolens.report.blocks import gallery, tables
from evolens.report.escape import text

_SCORES = ("accuracy", "precision", "recall", "f1", "yes_ratio")


def _pct(value: Any) -> str:
    return "—" if value is None else f"{100 * float(value):.1f}"


def _benchmarks(scores: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    if scores.get("pope"):
        out["POPE"] = scores["pope"]
    amber = scores.get("amber_discriminative") or {}
    if amber.get("overall"):
        out["AMBER discriminative"] = amber["overall"]
    return out


def yes_no_tables(totals: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``{"title", "columns", "rows"}`` tables: scores from logits and from text, then the decision per layer."""
    logits = _benchmarks(totals.get("scores") or {})
    from_text = _benchmarks(totals.get("text_scores") or {})
    rows = []
    for name, scores in logits.items():
        rows.append([name, "logits", *(_pct(scores.get(k)) for k in _SCORES)])
        if name in from_text:
            rows.append([name, "text", *(_pct(from_text[name].get(k)) for k in _SCORES)])
    share, cumulative = totals.get("decided_share") or [], totals.get("decided_cumulative") or []
    decided = [
        [str(layer), _pct(s), _pct(c)] for layer, (s, c) in enumerate(zip(share, cumulative, strict=True))
    ]
    median = totals.get("median_decision_layer")
    return [
        {
            "title": f"{totals.get('n_items', 0)} yes/no answers scored from the logits (P(yes) vs P(no) at the "
            f"first answer position) and from the text; logit and text answers agree for "
            f"{_pct(totals.get('agreement'))}%",
            "columns": ["benchmark", "answers from", "accuracy", "precision", "recall", "F1", "yes ratio"],
            "rows": rows,
        },
        {
            "title": f"decision layer (median {'—' if median is None else f'{median:.1f}'}); late flips "
            f"{_pct(totals.get('late_flip_rate'))}% (a sign change from layer {totals.get('late_window_start')} on)",
            "columns": ["layer", "decided here (%)", "decided by here (%)"],
            "rows": decided,
        },
    ]


def yes_no_section(results_dir: Path) -> str:
    """The section, or ``""`` when the run wrote no ``yesno.json``."""
    source = Path(results_dir) / YESNO_JSON
    if not source.is_file():
        return ""
    try:
        totals = json.loads(source.read_text(encoding="utf-8"))["totals"]
    except (OSError, ValueError, KeyError) as err:
        return f'<p class="load-problem">cannot read {text(str(source))}: {text(str(err))}</p>'
    parts = ["<h3>Yes/no answers from the logits, layer by layer</h3>"]
    if totals.get("n_items"):
        from evolens.viz.yesno import yes_no_figure

        caption = (
            "mean yes/no margin per layer (right vs wrong logit answers) and the share decided by each layer"
        )
        parts.append(gallery([(caption, yes_no_figure(totals))]))
    parts.append(tables(yes_no_tables(totals)))
    return "".join(parts)


__all__ = ["yes_no_section", "yes_no_tables"]
