"""The mitigation table of ``evolens decode`` as a figure, drawn from its stored result
(:class:`~evolens.hallucination.decode_results.DecodeResult`, ``DIR/decode.json``) only."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from evolens.errors import SettingsError
from evolens.hallucination.decode_results import DecodeResult, StrategyResult
from evolens.viz.layout import panel_grid
from evolens.viz.style import cmap_hex, plain_text, styled

CORRECTED, BROKEN = "tab:green", "tab:red"


@styled
def decode_figure(result: DecodeResult) -> Figure:
    """Three panels: the answers each strategy corrected and broke against the baseline (the prior-driven ones
    hatched), its accuracy difference in points with the paired bootstrap interval, and accuracy against the
    measured time per token as a multiple of the baseline's (the interleaved sample's when there is one, else the
    runs').

    Raises:
        SettingsError: The result has no strategy besides the baseline.
    """
    others = [s for s in result.strategies if s.paired is not None]
    if not others:
        raise SettingsError("nothing to draw: the result holds no strategy besides the baseline")
    fig, (counts_ax, delta_ax, cost_ax) = panel_grid(3, ncols=3, panel_size=(3.8, 3.2))
    x = np.arange(len(others))
    names = [s.name for s in others]
    width = 0.38
    for offset, colour, label, key, prior_key in (
        (-width / 2, CORRECTED, "corrected", "corrected", "prior_corrected"),
        (width / 2, BROKEN, "broken", "broken", "prior_broken"),
    ):
        totals = [getattr(s.paired, key) for s in others]
        priors = [getattr(s.paired, prior_key) for s in others]
        counts_ax.bar(x + offset, totals, width, color=colour, alpha=0.8, label=label)
        counts_ax.bar(x + offset, priors, width, color="none", edgecolor="0.15", hatch="///", linewidth=0.6)
    handles, _ = counts_ax.get_legend_handles_labels()
    hatched = Patch(
        facecolor="none", edgecolor="0.15", hatch="///", linewidth=0.6, label="of them prior-driven"
    )
    counts_ax.set_xticks(x, names, rotation=30, ha="right")
    counts_ax.set_xlim(-0.6, len(others) - 0.4)
    counts_ax.set_ylim(
        0, max(1, *(max(s.paired.corrected, s.paired.broken) for s in others if s.paired)) * 1.15
    )
    counts_ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    counts_ax.set_ylabel("answers")
    counts_ax.set_title(plain_text(f"against {result.baseline}"), parse_math=False)
    counts_ax.legend(handles=[*handles, hatched], frameon=False, fontsize="x-small")

    _delta_panel(delta_ax, others, result.baseline)
    _cost_panel(cost_ax, result)
    return fig


def _delta_panel(ax: Axes, others: list[StrategyResult], baseline: str) -> None:
    x = np.arange(len(others))
    values, lows, highs = [], [], []
    for s in others:
        p = s.paired
        assert p is not None
        d = np.nan if p.difference is None else 100 * p.difference
        values.append(d)
        lows.append(d - 100 * p.low if p.low is not None else 0.0)
        highs.append(100 * p.high - d if p.high is not None else 0.0)
    ax.errorbar(x, values, yerr=[lows, highs], fmt="o", color="tab:blue", capsize=3, linewidth=1.2)
    ax.axhline(0.0, color="0.5", linewidth=0.8, linestyle=":")
    ax.set_xticks(x, [s.name for s in others], rotation=30, ha="right")
    ax.set_xlim(-0.6, len(others) - 0.4)
    level = others[0].paired.level if others[0].paired is not None else 0.95
    ax.set_ylabel(f"accuracy difference (points, {100 * level:.0f}% CI)")
    ax.set_title(plain_text(f"accuracy − {baseline}"), parse_math=False)


def _cost_panel(ax: Axes, result: DecodeResult) -> None:
    colours = cmap_hex("tab10", 10)
    sampled = all(s.cost.sample_multiple is not None for s in result.strategies)
    for i, s in enumerate(result.strategies):
        multiple = s.cost.sample_multiple if sampled else 1.0 if s.paired is None else s.cost.multiple
        accuracy = s.quality.accuracy
        if multiple is None or accuracy is None:
            continue
        marker = "s" if s.paired is None else "o"
        ax.plot([multiple], [100 * accuracy], marker=marker, color=colours[i % 10], linestyle="none",
                label=plain_text(s.name))  # fmt: skip
    ax.axvline(1.0, color="0.5", linewidth=0.8, linestyle=":")
    how = "interleaved sample" if sampled else "the runs"
    ax.set_xlabel(plain_text(f"time per token (× {result.baseline}, {how})"))
    ax.set_ylabel("accuracy of judged answers (%)")
    ax.set_title("accuracy vs cost", parse_math=False)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(frameon=False, fontsize="x-small", loc="best")


__all__ = ["decode_figure"]
