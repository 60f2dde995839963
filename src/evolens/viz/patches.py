"""The image-token lens drawn (Neo et al., 2024): what each patch decodes to at a layer, and one word's probability
over the patches and the layers. Both read a stored :class:`~evolens.metrics.patches.PatchLens`; the image, when
given, is the trace's input.

Layer axis: 0 is the embedding state (the projected image features), ``l`` the output of decoder layer ``l``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from evolens.errors import SettingsError
from evolens.metrics.patches import PatchLens
from evolens.viz.layout import panel_grid, target_axes
from evolens.viz.style import as_array, styled, token_label


def _check_layer(result: PatchLens, layer: int) -> int:
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer <= result.n_layers:
        raise SettingsError(f"layer must be in [0, {result.n_layers}], got {layer!r}")
    return layer


def _grid_of(result: PatchLens) -> tuple[int, int]:
    if not result.grid.known:
        raise SettingsError(f"no patch grid to draw on: {result.grid.note}")
    return result.grid.rows, result.grid.cols


def _backdrop(ax: Axes, image: Any, rows: int, cols: int, *, alpha: float = 1.0) -> None:
    """The image stretched over the grid's cells (cell (r, c) spans [c, c + 1] × [r, r + 1]), or a blank grid."""
    if image is not None:
        pixels = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
        ax.imshow(pixels, extent=(0, cols, rows, 0), alpha=alpha, interpolation="nearest")
    ax.set_xlim(0, cols)
    ax.set_ylim(rows, 0)
    ax.set_xticks(np.arange(cols + 1), minor=True)
    ax.set_yticks(np.arange(rows + 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=0.6, alpha=0.8)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    ax.set_aspect("equal")


@styled
def patch_grid_figure(
    result: PatchLens, layer: int, *, image: Any = None, ax: Axes | None = None, min_prob: float = 0.0
) -> Figure:
    """The image with its patch grid, each patch labelled by its top-1 token at ``layer`` (and its probability).

    Args:
        result: The image-token lens of one trace (with a patch grid).
        layer: The layer (0 = embeddings).
        image: The trace's image (PIL or ``[H, W, 3]`` array), or ``None`` for a blank grid.
        ax: Draw into these axes instead of a new figure.
        min_prob: Leave patches whose top-1 probability is below this unlabelled.

    Raises:
        SettingsError: No patch grid, or a layer out of range.
    """
    rows, cols = _grid_of(result)
    layer = _check_layer(result, layer)
    side = min(7.0, max(3.0, 0.55 * cols))
    fig, ax = target_axes(ax, (side, side))
    _backdrop(ax, image, rows, cols, alpha=0.75)
    words = result.top1_words(layer)
    probs = result.topk_probs[layer, :, 0].tolist()
    size = max(3.0, min(9.0, 90.0 / cols))
    for index, (word, prob) in enumerate(zip(words, probs, strict=True)):
        if prob < min_prob:
            continue
        r, c = result.grid.cell(index)
        ax.text(
            c + 0.5, r + 0.5, f"{token_label(word)}\n{prob:.2f}", ha="center", va="center", fontsize=size,
            parse_math=False, color="black", bbox={"boxstyle": "round,pad=0.15", "fc": "white", "alpha": 0.6,
                                                  "lw": 0},
        )  # fmt: skip
    ax.set_title(
        f"{result.item_id}: top-1 token of each patch at layer {layer}", fontsize=9, parse_math=False
    )
    return fig


@styled
def patch_word_figure(result: PatchLens, word: str, *, image: Any = None, layer: int | None = None) -> Figure:
    """One word's probability at every image token and layer (a ``[layers, image tokens]`` heat map) and, with a
    patch grid, over the image at ``layer`` (default: the layer where its mean over the patches peaks).

    Raises:
        SettingsError: A word the result did not keep, or a layer out of range.
    """
    probs = as_array(result.word_probs[..., result.word_index(word)], "word probabilities", ndim=2)
    if layer is None:
        layer = int(probs.mean(1).argmax()) if probs.size else 0
    layer = _check_layer(result, layer)
    fig, axes = panel_grid(2 if result.grid.known else 1, ncols=2, panel_size=(4.6, 3.8))
    heat = axes[0].imshow(
        probs, aspect="auto", origin="lower", cmap="magma", vmin=0.0, interpolation="nearest"
    )
    axes[0].set_xlabel("image token (raster order)")
    axes[0].set_ylabel("layer (0 = embeddings)")
    axes[0].set_title(f"P({token_label(word)}) per image token and layer", fontsize=9, parse_math=False)
    fig.colorbar(heat, ax=axes[0], shrink=0.85)
    if result.grid.known:
        rows, cols = result.grid.rows, result.grid.cols
        _backdrop(axes[1], image, rows, cols)
        cells = axes[1].imshow(
            probs[layer].reshape(rows, cols), extent=(0, cols, rows, 0), cmap="magma", alpha=0.6,
            vmin=0.0, vmax=max(float(probs.max()), 1e-9), interpolation="nearest",
        )  # fmt: skip
        axes[1].set_title(
            f"P({token_label(word)}) over the patches at layer {layer}", fontsize=9, parse_math=False
        )
        fig.colorbar(cells, ax=axes[1], shrink=0.85)
    return fig
