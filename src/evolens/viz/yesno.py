"""The yes/no decision through the layers (logit-based yes/no scoring, :mod:`evolens.data.yesno`), drawn from the
totals stored in ``results/yesno.json`` only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from evolens.viz.layout import panel_grid
from evolens.viz.style import styled


@styled
def yes_no_figure(totals: Mapping[str, Any]) -> Figure:
    """Two panels: the mean margin log P(yes) - log P(no) per layer of right and wrong logit answers, and the
    cumulative share of answers decided by each layer (the late window shaded in both).

    Args:
        totals: ``results/yesno.json → totals`` (:func:`evolens.data.yesno.yes_no_totals`).
    """
    n_layers = int(totals["n_layers"])
    layers = np.arange(n_layers + 1)
    late = int(totals["late_window_start"])
    fig, axes = panel_grid(2, ncols=2, panel_size=(4.2, 3.2))
    margin_ax, decided_ax = axes
    for key, label, colour in (
        ("mean_margin_correct", "right logit answers", "tab:green"),
        ("mean_margin_wrong", "wrong logit answers", "tab:red"),
    ):
        values = totals.get(key)
        if values is not None:
            margin_ax.plot(layers, values, color=colour, marker="o", markersize=3, linewidth=1.4, label=label)
    margin_ax.axhline(0.0, color="0.5", linewidth=0.8, linestyle=":")
    margin_ax.set_xlabel("layer")
    margin_ax.set_ylabel("mean log P(yes) - log P(no) (nats)")
    margin_ax.set_title("yes/no margin per layer", parse_math=False)
    if margin_ax.get_legend_handles_labels()[0]:
        margin_ax.legend(frameon=False, fontsize="x-small")
    decided_ax.step(layers, totals["decided_cumulative"], where="post", color="tab:blue", linewidth=1.6)
    decided_ax.set_ylim(0, 1.02)
    decided_ax.set_xlabel("decision layer")
    decided_ax.set_ylabel("share of answers decided")
    decided_ax.set_title(
        f"decided by layer · late flips {100 * float(totals['late_flip_rate']):.1f}%", parse_math=False
    )
    for ax in axes:
        ax.axvspan(late, n_layers, color="0.9", zorder=0)
        ax.set_xlim(0, n_layers)
    return fig


__all__ = ["yes_no_figure"]
