"""Token probabilities across layers: candidate tokens of a step (paper Fig. 2) and a hallucinated token against
the correct one (paper Fig. 3).

Layer axis: 0 is the embedding state, ``l`` the output of decoder layer ``l`` (see :class:`evolens.Trace`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from evolens.errors import SettingsError
from evolens.viz.layout import panel_grid, target_axes
from evolens.viz.style import as_array, cmap_hex, styled, token_label

if TYPE_CHECKING:
    from evolens.trace import Trace

HALLUCINATED_COLOR = "#d62728"
CORRECT_COLOR = "#2ca02c"


def _layer_axis(ax: Axes, n_layers: int) -> None:
    ax.set_xlim(0, n_layers)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, 1)
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel("probability")
    ax.grid(alpha=0.25, linewidth=0.6)


@styled
def token_probability_figure(
    probs: Any,
    tokens: Sequence[str],
    *,
    title: str | None = None,
    max_candidates: int = 10,
    legend: bool = True,
    ax: Axes | None = None,
) -> Figure:
    """Probabilities of a step's candidate tokens across layers as overlapping filled areas (paper Fig. 2).

    Args:
        probs: ``[n_layers + 1, n_candidates]`` each candidate's probability at every layer (e.g.
            ``trace.candidates(step).probs``); the first column is the generated token, drawn with a bold edge.
        tokens: ``n_candidates`` display strings.
        title: Panel title (default: the generated token).
        max_candidates: Draw at most this many candidates (the generated token and the next ones in order).
        legend: Show the candidates' legend.
        ax: Draw into these axes instead of a new figure.

    Returns:
        The figure (y from 0 to 1, colormap tab20 as in the paper's code).
    """
    values = as_array(probs, "probs", ndim=2)
    if values.shape[1] != len(tokens):
        raise SettingsError(
            f"probs has {values.shape[1]} candidate columns but {len(tokens)} tokens were given"
        )
    if values.shape[0] < 2 or values.shape[1] == 0:
        raise SettingsError(f"probs must be [n_layers + 1, n_candidates] with data, got {values.shape}")
    if max_candidates < 1:
        raise SettingsError(f"max_candidates must be >= 1, got {max_candidates}")
    n_layers = values.shape[0] - 1
    fig, ax = target_axes(ax, (6.0, 3.6))
    layers = np.arange(n_layers + 1)
    colors = cmap_hex("tab20", min(values.shape[1], max_candidates))
    for col in range(min(values.shape[1], max_candidates)):
        first = col == 0
        ax.fill_between(
            layers, 0, values[:, col], color=colors[col], alpha=0.45, linewidth=0, zorder=2 + first
        )
        ax.plot(
            layers,
            values[:, col],
            color=colors[col],
            linewidth=2.0 if first else 1.0,
            label=token_label(tokens[col]) + (" (generated)" if first else ""),
            zorder=3 + first,
        )
    _layer_axis(ax, n_layers)
    ax.set_title(title if title is not None else token_label(tokens[0]), parse_math=False)
    if legend:
        leg = ax.legend(loc="upper left", frameon=False, ncols=1 + (values.shape[1] > 6))
        for text in leg.get_texts():
            text.set_parse_math(False)
    return fig


def token_probability_trace_figure(
    trace: Trace, step: int, *, from_layer: int | None = None, **kwargs: Any
) -> Figure:
    """Paper Fig. 2 for one step of a trace: the generated token and every token that is top-1 at a layer
    ``>= from_layer`` (default: the trace's default, the last 40% of the layers)."""
    cand = trace.candidates(step, from_layer)
    kwargs.setdefault("title", f"step {step}: {token_label(trace.tokens[step])}")
    return token_probability_figure(cand.probs, cand.tokens, **kwargs)


@styled
def token_probability_grid(
    trace: Trace,
    steps: Sequence[int] | None = None,
    *,
    from_layer: int | None = None,
    ncols: int = 6,
    max_candidates: int = 8,
) -> Figure:
    """Paper Fig. 2 as a grid: one panel per step (default: the first 18 generated tokens, as in the paper)."""
    chosen = list(range(min(18, trace.n_steps))) if steps is None else list(steps)
    for step in chosen:
        if not 0 <= step < trace.n_steps:
            raise SettingsError(f"step {step} is out of range: the trace has {trace.n_steps} steps")
    fig, axes = panel_grid(len(chosen), ncols=ncols, panel_size=(3.4, 2.6), sharey=True)
    for ax, step in zip(axes, chosen, strict=True):
        cand = trace.candidates(step, from_layer)
        token_probability_figure(
            cand.probs,
            cand.tokens,
            title=f"{step}: {token_label(trace.tokens[step])}",
            max_candidates=max_candidates,
            ax=ax,
        )
    return fig


@dataclass(frozen=True)
class TokenContrast:
    """A hallucinated token against the correct one at one step (the inputs of paper Fig. 3).

    Attributes:
        hallucinated_probs: ``[n_layers + 1]`` probability of the hallucinated (generated) token at every layer.
        correct_probs: ``[n_layers + 1]`` probability of the correct token.
        hallucinated_token: Its display string.
        correct_token: The correct token's display string.
        crossing_layer: Layer from which the hallucinated token overtakes the correct one (marked when given).
        mutation_layer: The mutation layer (marked when given).
        critical_layer: The critical layer (marked when given).
        title: Panel title.
    """

    hallucinated_probs: Any
    correct_probs: Any
    hallucinated_token: str
    correct_token: str
    crossing_layer: int | None = None
    mutation_layer: int | None = None
    critical_layer: int | None = None
    title: str | None = None


@styled
def hallucination_figure(contrast: TokenContrast, *, ax: Axes | None = None) -> Figure:
    """Probability of a hallucinated token (red) and the correct token (green) across layers, with the crossing,
    mutation and critical layers marked when given (paper Fig. 3)."""
    bad = as_array(contrast.hallucinated_probs, "hallucinated_probs", ndim=1)
    good = as_array(contrast.correct_probs, "correct_probs", ndim=1)
    if bad.shape != good.shape or bad.size < 2:
        raise SettingsError(
            f"the two curves must have the same length n_layers + 1 >= 2, got {bad.size} and {good.size}"
        )
    n_layers = bad.size - 1
    fig, ax = target_axes(ax, (5.0, 3.4))
    layers = np.arange(n_layers + 1)
    marks = [
        ("critical", contrast.critical_layer, "#7f7f7f", ":"),
        ("mutation", contrast.mutation_layer, "#9467bd", "--"),
        ("crossing", contrast.crossing_layer, "#1f1f1f", "-."),
    ]
    for name, layer, color, style in marks:
        if layer is None:
            continue
        if not 0 <= layer <= n_layers:
            raise SettingsError(f"{name}_layer must be in [0, {n_layers}], got {layer}")
        ax.axvline(
            layer, color=color, linestyle=style, linewidth=1.2, label=f"{name} layer {layer}", zorder=1
        )
    ax.fill_between(layers, 0, good, color=CORRECT_COLOR, alpha=0.25, linewidth=0)
    ax.fill_between(layers, 0, bad, color=HALLUCINATED_COLOR, alpha=0.25, linewidth=0)
    ax.plot(
        layers,
        good,
        color=CORRECT_COLOR,
        linewidth=2,
        label=f"correct: {token_label(contrast.correct_token)}",
    )
    ax.plot(
        layers,
        bad,
        color=HALLUCINATED_COLOR,
        linewidth=2,
        label=f"hallucinated: {token_label(contrast.hallucinated_token)}",
    )
    _layer_axis(ax, n_layers)
    if contrast.title is not None:
        ax.set_title(contrast.title, parse_math=False)
    leg = ax.legend(loc="upper left", frameon=False)
    for text in leg.get_texts():
        text.set_parse_math(False)
    return fig


@styled
def hallucination_grid(contrasts: Sequence[TokenContrast], *, ncols: int = 2) -> Figure:
    """Several :func:`hallucination_figure` panels side by side (the paper shows four)."""
    fig, axes = panel_grid(len(contrasts), ncols=ncols, panel_size=(4.6, 3.2), sharey=True)
    for ax, contrast in zip(axes, contrasts, strict=True):
        hallucination_figure(contrast, ax=ax)
    return fig
