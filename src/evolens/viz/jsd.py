"""Adjacent-layer Jensen-Shannon divergence: the tokens x layers heatmap (paper Fig. 4) and layer profiles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from evolens.errors import SettingsError
from evolens.viz.layout import target_axes
from evolens.viz.style import as_array, cmap_hex, styled, token_label

if TYPE_CHECKING:
    from evolens.trace import Trace

Normalize = Literal["none", "maxabs"]

PAPER_MAX_TOKENS = 40


def maxabs_columns(values: Any) -> np.ndarray:
    """Scale every column by its largest absolute value (scikit-learn's ``MaxAbsScaler`` fitted on ``values``).

    Args:
        values: ``[n_rows, n_columns]``; in the paper's heatmap rows are tokens and columns layer pairs.

    Returns:
        The scaled array; an all-zero column stays zero.

    >>> maxabs_columns([[1.0, 0.0], [-2.0, 0.0]]).tolist()
    [[0.5, 0.0], [-1.0, 0.0]]
    """
    array = as_array(values, "values", ndim=2)
    scale = np.abs(array).max(axis=0, initial=0.0)
    scale[scale == 0] = 1.0
    return array / scale


@styled
def jsd_heatmap_figure(
    jsd: Any,
    tokens: Sequence[str],
    *,
    normalize: Normalize = "none",
    max_tokens: int | None = PAPER_MAX_TOKENS,
    annotate: bool = True,
    units: str = "bits",
    cmap: str = "Purples",
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Heatmap of adjacent-layer divergences, one row per generated token and one column per decoder layer.

    Column ``l`` (1-based) holds the divergence between layer ``l``'s input and output, i.e. ``jsd[l - 1]`` of
    :meth:`evolens.Trace.jsd` — how much decoder layer ``l`` changes the next-token distribution.

    Args:
        jsd: ``[n_layers, n_steps]`` divergences (``trace.jsd("bits")`` or ``trace.jsd("paper")``).
        tokens: ``n_steps`` display strings (row labels).
        normalize: ``"none"`` shows the values; ``"maxabs"`` divides each column by its largest absolute value over
            the tokens shown (the paper's ``MaxAbsScaler``), so each layer's column spans [0, 1].
        max_tokens: Show the first ``max_tokens`` tokens (the paper shows 40); ``None`` shows all.
        annotate: Write each cell's value in it.
        units: Colour-bar label of raw values.
        cmap: Matplotlib colormap ("Purples" as in the paper).
        title: Figure title.
        ax: Draw into these axes instead of a new figure.
    """
    values = as_array(jsd, "jsd", ndim=2)
    n_layers, n_steps = values.shape
    if n_steps != len(tokens):
        raise SettingsError(f"jsd has {n_steps} steps (columns) but {len(tokens)} tokens were given")
    if n_steps == 0 or n_layers == 0:
        raise SettingsError("jsd is empty: nothing to draw")
    if normalize not in ("none", "maxabs"):
        raise SettingsError(f"normalize must be 'none' or 'maxabs', got {normalize!r}")
    if max_tokens is not None and max_tokens < 1:
        raise SettingsError(f"max_tokens must be >= 1 or None, got {max_tokens}")
    shown = n_steps if max_tokens is None else min(n_steps, max_tokens)
    grid = values[:, :shown].T  # [tokens, layer pairs]
    if normalize == "maxabs":
        grid = maxabs_columns(grid)
    fig, ax = target_axes(ax, (1.8 + 0.34 * n_layers, 1.2 + 0.24 * shown))
    vmax = float(np.nanmax(np.abs(grid))) or 1.0
    image = ax.imshow(grid, aspect="auto", cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest")
    ax.set_xticks(range(n_layers), [str(i + 1) for i in range(n_layers)])
    ax.set_yticks(range(shown), [token_label(t) for t in tokens[:shown]], parse_math=False)
    ax.set_xlabel("decoder layer (divergence between its input and output)")
    ax.set_ylabel("generated token")
    ax.spines[:].set_visible(False)
    label = "scaled per layer (MaxAbs over the tokens shown)" if normalize == "maxabs" else f"JSD ({units})"
    fig.colorbar(image, ax=ax, label=label, shrink=0.8)
    if annotate:
        size = max(4.0, min(7.0, 160.0 / max(n_layers, shown)))
        for (row, col), value in np.ndenumerate(grid):
            ax.text(
                col,
                row,
                f"{value:.2f}" if abs(value) >= 0.005 or value == 0 else f"{value:.0e}",
                ha="center",
                va="center",
                fontsize=size,
                color="white" if value > 0.6 * vmax else "black",
            )
    if title is not None:
        ax.set_title(title, parse_math=False)
    return fig


def jsd_trace_figure(
    trace: Trace,
    *,
    reduction: Literal["bits", "paper"] = "bits",
    normalize: Normalize | None = None,
    **kwargs: Any,
) -> Figure:
    """Paper Fig. 4 for a trace.

    ``reduction="bits"`` (default) shows the JSD in bits as is; ``reduction="paper"`` shows the paper code's
    divergence scaled per column with MaxAbs (the paper's view). ``normalize`` overrides the scaling.
    """
    if normalize is None:
        normalize = "maxabs" if reduction == "paper" else "none"
    units = "bits" if reduction == "bits" else "paper reduction, nats / |V|"
    kwargs.setdefault("units", units)
    return jsd_heatmap_figure(trace.jsd(reduction), trace.tokens, normalize=normalize, **kwargs)


@styled
def jsd_profile_figure(
    groups: Mapping[str, Any] | Any,
    *,
    units: str = "bits",
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Mean adjacent-layer divergence per decoder layer (line) with its interquartile range (band).

    Args:
        groups: ``[n_layers, n_tokens]`` divergences (e.g. ``trace.jsd()`` or several traces' concatenated along
            the token axis), or a mapping from a group name (``"hallucinated"``, ``"grounded"``) to such arrays.
        units: Y-axis units.
        title: Figure title.
        ax: Draw into these axes instead of a new figure.
    """
    named = dict(groups) if isinstance(groups, Mapping) else {"all tokens": groups}
    if not named:
        raise SettingsError("no groups to draw")
    fig, ax = target_axes(ax, (6.0, 3.4))
    colors = cmap_hex("tab10", len(named))
    for color, (name, data) in zip(colors, named.items(), strict=True):
        values = as_array(data, f"groups[{name!r}]", ndim=2)
        if values.shape[1] == 0:
            continue
        layers = np.arange(1, values.shape[0] + 1)
        q25, q75 = np.nanpercentile(values, [25, 75], axis=1)
        ax.fill_between(layers, q25, q75, color=color, alpha=0.2, linewidth=0)
        ax.plot(
            layers,
            np.nanmean(values, axis=1),
            color=color,
            linewidth=2,
            label=f"{name} (n={values.shape[1]})",
        )
    ax.set_xlabel("decoder layer")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"JSD between its input and output ({units})")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.25, linewidth=0.6)
    leg = ax.legend(frameon=False)
    for text in leg.get_texts():
        text.set_parse_math(False)
    if title is not None:
        ax.set_title(title, parse_math=False)
    return fig
