"""Hallucination detectors compared (``evolens detect``): ROC curves and the per-layer hidden-state probe, drawn from a
stored :class:`~evolens.hallucination.detect.DetectResult` only."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from evolens.errors import SettingsError
from evolens.hallucination.detect_results import ALL_ERRORS, DetectResult
from evolens.viz.layout import panel_grid
from evolens.viz.style import cmap_hex, styled

FAMILY_TITLES = {
    "baseline": "baselines (output distribution)",
    "paper": "the paper's signals",
    "probe": "probes",
}


def _auroc_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


@styled
def roc_figure(result: DetectResult, table: str = ALL_ERRORS) -> Figure:
    """ROC curves of every signal on one table's tokens, one panel per family (baselines, the paper's, probes).

    Args:
        result: A stored detector comparison.
        table: Which table's tokens (``"all errors"``, or an error group such as ``"prior-driven"``).

    Raises:
        SettingsError: No such table in ``result``.
    """
    chosen = result.table(table)
    if chosen is None:
        raise SettingsError(f"no table {table!r} in the result; it has {[t.name for t in result.tables]}")
    families = [f for f in FAMILY_TITLES if any(s.family == f for s in result.signals)]
    fig, axes = panel_grid(len(families), ncols=3, panel_size=(3.8, 3.6), sharey=True)
    for ax, family in zip(axes, families, strict=True):
        names = [s.name for s in result.signals if s.family == family]
        colours = cmap_hex("tab10", len(names))
        for colour, name in zip(colours, names, strict=True):
            score = chosen.score(name)
            if score is None or not score.fpr:
                continue
            ax.plot(score.fpr, score.tpr, color=colour, linewidth=1.4,
                    label=f"{name} ({_auroc_text(score.auroc.value)})")  # fmt: skip
        ax.plot([0, 1], [0, 1], color="0.6", linestyle=":", linewidth=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_aspect("equal")
        ax.set_xlabel("false positive rate (grounded)")
        ax.set_title(FAMILY_TITLES[family], parse_math=False)
        legend = ax.legend(
            frameon=False, loc="lower right", fontsize="x-small", title="AUROC", title_fontsize="x-small"
        )
        for text in legend.get_texts():
            text.set_parse_math(False)
    axes[0].set_ylabel("true positive rate (hallucinated)")
    fig.suptitle(
        f"Hallucination detectors, {chosen.name}: {chosen.n_hallucinated} hallucinated vs {chosen.n_grounded} "
        f"grounded tokens, {chosen.n_items} items"
    )
    return fig


@styled
def probe_layer_figure(result: DetectResult) -> Figure:
    """The hidden-state probe at each layer: out-of-fold AUROC with its item-bootstrap interval and balanced
    accuracy, against chance (0.5) and the best output-distribution baseline.

    Raises:
        SettingsError: The result has no hidden-state probe.
    """
    curve = result.hidden_curve
    if curve is None:
        raise SettingsError(
            "the result has no hidden-state probe (run evolens detect on a run with hidden states)"
        )
    fig, (ax,) = panel_grid(1, ncols=1, panel_size=(6.0, 3.4))
    layers = np.asarray(curve.layers)
    value = np.array([np.nan if e.value is None else e.value for e in curve.auroc])
    low = np.array([np.nan if e.low is None else e.low for e in curve.auroc])
    high = np.array([np.nan if e.high is None else e.high for e in curve.auroc])
    ax.fill_between(layers, low, high, color="#1f77b4", alpha=0.18, linewidth=0, label="AUROC 95% interval")
    ax.plot(layers, value, color="#1f77b4", marker="o", markersize=3, label="AUROC (out-of-fold)")
    ax.plot(
        layers, curve.balanced_accuracy, color="#ff7f0e", marker="s", markersize=3, label="balanced accuracy"
    )
    ax.axhline(0.5, color="0.6", linestyle=":", linewidth=0.8, label="chance")
    table = result.table()
    baselines = [table.score(s.name) for s in result.signals if s.family == "baseline"] if table else []
    best = max((s for s in baselines if s is not None and s.auroc.value is not None),
               key=lambda s: s.auroc.value or 0.0, default=None)  # fmt: skip
    if best is not None and best.auroc.value is not None:
        ax.axhline(best.auroc.value, color="#2ca02c", linestyle="--", linewidth=0.9,
                   label=f"best baseline AUROC ({best.name})")  # fmt: skip
    ax.set_xlim(layers[0] - 0.3, layers[-1] + 0.3)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("layer of the hidden state (0 = embeddings)")
    ax.set_ylabel("probe score")
    ax.grid(axis="y", alpha=0.25, linewidth=0.6)
    legend = ax.legend(frameon=False, fontsize="x-small", loc="lower right")
    for text in legend.get_texts():
        text.set_parse_math(False)
    ax.set_title(
        "Where hallucination becomes linearly readable: hidden-state probe per layer", parse_math=False
    )
    return fig
