"""The report's section on hallucination detectors (``results/detect.json`` of a run, written by
``evolens detect``): one table per set of tokens, the hidden-state probe per layer and the figures, drawn from the
stored result with :mod:`evolens.viz.detect`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from evolens.hallucination.detect_results import estimate_text
from evolens.report.blocks import gallery, tables
from evolens.report.escape import text

if TYPE_CHECKING:
    from evolens.hallucination.detect_results import DetectResult


def detect_tables(result: DetectResult) -> list[dict[str, Any]]:
    """``{"title", "columns", "rows"}`` tables: each set of tokens, then the hidden-state probe per layer."""
    info = {s.name: s for s in result.signals}
    out: list[dict[str, Any]] = []
    for chosen in result.tables:
        rows = [
            [s.name, info[s.name].family if s.name in info else "", info[s.name].description if s.name in info else "",
             estimate_text(s.auroc), estimate_text(s.auprc)]
            for s in chosen.scores
        ]  # fmt: skip
        out.append({
            "title": f"{chosen.name}: {chosen.n_hallucinated} hallucinated vs {chosen.n_grounded} grounded tokens, "
                     f"{chosen.n_items} items (AUPRC of chance {chosen.prevalence:.3f})",
            "columns": ["signal", "family", "what (higher = hallucinated, after orienting)", "AUROC [95% CI]",
                        "AUPRC [95% CI]"],
            "rows": rows,
        })  # fmt: skip
    curve = result.hidden_curve
    if curve is not None:
        out.append({
            "title": "hidden-state probe per layer (out-of-fold)",
            "columns": ["layer", "AUROC [95% CI]", "balanced accuracy"],
            "rows": [[str(layer), estimate_text(a), f"{b:.3f}"]
                     for layer, a, b in zip(curve.layers, curve.auroc, curve.balanced_accuracy, strict=True)],
        })  # fmt: skip
    return out


def detect_section(result: DetectResult) -> str:
    """The HTML of the section: figures first, then the tables and a note on the method."""
    from evolens.viz.detect import probe_layer_figure, roc_figure

    figures: list[tuple[str, Any]] = [
        (f"ROC curves, {t.name}", roc_figure(result, t.name)) for t in result.tables
    ]
    if result.hidden_curve is not None:
        figures.append(("hidden-state probe per layer", probe_layer_figure(result)))
    o = result.options
    note = (
        f"Unit: {o.unit.replace('_', ' ')} of each judged word. Every score is oriented so that higher means "
        f"hallucinated (AUROC 0.5 is chance, below it the opposite direction separates). 95% intervals from "
        f"{o.n_bootstrap} bootstrap replicates over items. Probes: logistic regression, {o.n_folds}-fold "
        "cross-validation grouped by item, scored out of fold; the best hidden-state layer is chosen on the same "
        "folds (optimistic). Error groups are judged against all grounded tokens."
    )
    return (
        "<h3>Hallucination detectors</h3>"
        + gallery(figures)
        + tables(detect_tables(result))
        + f'<p class="note">{text(note)}</p>'
    )
