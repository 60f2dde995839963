"""Dataset summaries: distributions of critical and mutation layers, hallucinated against grounded tokens."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from evolens.errors import SettingsError
from evolens.viz.layout import panel_grid, target_axes
from evolens.viz.style import as_array, styled
from evolens.viz.tokens import CORRECT_COLOR, HALLUCINATED_COLOR

GROUP_COLORS = {"hallucinated": HALLUCINATED_COLOR, "grounded": CORRECT_COLOR}


def _layer_values(values: Any, name: str) -> tuple[np.ndarray, int]:
    """Valid integer layers and the number of entries without one (NaN or negative: no such layer)."""
    array = as_array(values, name, ndim=1)
    valid = np.isfinite(array) & (array >= 0)
    return array[valid].astype(np.int64), int((~valid).sum())


@styled
def layer_histogram_figure(
    layers: Mapping[str, Any] | Any,
    *,
    n_layers: int,
    title: str | None = None,
    xlabel: str = "layer",
    density: bool = False,
    ax: Axes | None = None,
) -> Figure:
    """Histogram of layer indices with one bar per layer (groups side by side).

    Args:
        layers: ``[n]`` layer per token or item (NaN or a negative value: none found), or a mapping from a group name
            to such arrays (``{"hallucinated": ..., "grounded": ...}``).
        n_layers: Decoder layers L; the x axis spans 0..L.
        title: Panel title.
        xlabel: X-axis label ("critical layer", "mutation layer"...).
        density: Show fractions of each group instead of counts.
        ax: Draw into these axes instead of a new figure.
    """
    if n_layers < 1:
        raise SettingsError(f"n_layers must be >= 1, got {n_layers}")
    named = dict(layers) if isinstance(layers, Mapping) else {"": layers}
    if not named:
        raise SettingsError("no layer arrays to draw")
    fig, ax = target_axes(ax, (6.0, 3.2))
    bins = np.arange(n_layers + 2)
    width = 0.85 / len(named)
    for i, (name, values) in enumerate(named.items()):
        valid, missing = _layer_values(values, f"layers[{name!r}]" if name else "layers")
        if valid.size and valid.max() > n_layers:
            raise SettingsError(f"layer {int(valid.max())} is beyond n_layers={n_layers}")
        counts = np.bincount(valid, minlength=n_layers + 1).astype(float)
        if density and valid.size:
            counts /= valid.size
        label = f"{name + ': ' if name else ''}n={valid.size}" + (f", none: {missing}" if missing else "")
        offset = (i - (len(named) - 1) / 2) * width
        ax.bar(bins[:-1] + offset, counts, width=width, color=GROUP_COLORS.get(name), label=label)
    ax.set_xlim(-0.6, n_layers + 0.6)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction" if density else "count")
    ax.grid(axis="y", alpha=0.25, linewidth=0.6)
    # above the axes, between them and the title: inside, it would cover the tallest bars
    leg = ax.legend(
        frameon=False,
        loc="lower left",
        bbox_to_anchor=(0.0, 1.0),
        ncols=min(len(named), 2),  # three long labels in a row are wider than the figure
        fontsize="small",
        borderaxespad=0.1,
        handlelength=1.0,
        columnspacing=1.0,
    )
    for text in leg.get_texts():
        text.set_parse_math(False)
    if title is not None:
        ax.set_title(title, parse_math=False, pad=20)
    return fig


@styled
def dataset_summary_figure(
    *,
    n_layers: int,
    critical_layers: Any | None = None,
    mutation_layers: Any | None = None,
    hallucinated: Any | None = None,
    title: str | None = None,
) -> Figure:
    """Panels summarising a dataset: the critical-layer and mutation-layer distributions (split into hallucinated and
    grounded tokens when ``hallucinated`` is given) and the hallucinated / grounded counts.

    Args:
        n_layers: Decoder layers L.
        critical_layers: ``[n_tokens]`` critical layer per token (NaN or negative: none).
        mutation_layers: ``[n_tokens]`` mutation layer per token (NaN or negative: none).
        hallucinated: ``[n_tokens]`` booleans aligned with the arrays above.
        title: Figure title.
    """
    given = {"critical layer": critical_layers, "mutation layer": mutation_layers}
    arrays = {k: as_array(v, f"{k}s", ndim=1) for k, v in given.items() if v is not None}
    if not arrays and hallucinated is None:
        raise SettingsError("give critical_layers, mutation_layers and/or hallucinated")
    flags = None if hallucinated is None else as_array(hallucinated, "hallucinated", ndim=1, dtype=bool)
    for name, values in arrays.items():
        if flags is not None and values.size != flags.size:
            raise SettingsError(f"{name}s has {values.size} entries but hallucinated has {flags.size}")
    fig, axes = panel_grid(len(arrays) + (flags is not None), ncols=3, panel_size=(4.4, 3.2))
    for ax, (name, data) in zip(axes, arrays.items(), strict=False):
        groups: Any = data if flags is None else {"hallucinated": data[flags], "grounded": data[~flags]}
        layer_histogram_figure(
            groups, n_layers=n_layers, xlabel=name, density=flags is not None, ax=ax, title=f"{name}s"
        )
    if flags is not None:
        ax = axes[-1]
        counts = [int(flags.sum()), int((~flags).sum())]
        bars = ax.bar(["hallucinated", "grounded"], counts, color=[HALLUCINATED_COLOR, CORRECT_COLOR])
        ax.bar_label(bars, labels=[f"{c} ({c / max(flags.size, 1):.0%})" for c in counts], padding=2)
        ax.set_ylabel("tokens")
        ax.set_title("hallucinated vs grounded")
        ax.margins(y=0.15)
    if title is not None:
        fig.suptitle(title.replace("$", r"\$"))
    return fig
