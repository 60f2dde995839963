"""Feature encodings across layers in 2-D (t-SNE, UMAP or PCA coordinates): one image's tokens (paper Fig. 6) or
one token position over many images (paper Fig. 7).

The figures take coordinates computed elsewhere (``evolens.geometry``); they never reduce dimensions themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from evolens.errors import SettingsError
from evolens.viz.layout import panel_grid, target_axes
from evolens.viz.style import as_array, styled

BAND_COLORS = ("#ff7f0e", "#2ca02c", "#1f77b4", "#d62728")


@dataclass(frozen=True)
class LayerBand:
    """A colour band of consecutive layers (inclusive bounds)."""

    first: int
    last: int
    label: str
    color: str


def paper_layer_bands(n_layers: int, critical_layer: int | None = None) -> list[LayerBand]:
    """The paper's four colour groups scaled to ``n_layers``: layers 1-2, 3-critical, critical+1 to L-1, and L.

    For LLaVA-1.5-7B (32 layers) the critical layer defaults to 18, as in the paper's code; for other depths it is
    scaled (``round(18 / 32 * n_layers)``). Layer 0 (the embeddings) gets its own grey band; bands left empty in
    shallow models are dropped.

    >>> [(b.first, b.last) for b in paper_layer_bands(32)]
    [(0, 0), (1, 2), (3, 18), (19, 31), (32, 32)]
    >>> [(b.first, b.last) for b in paper_layer_bands(4)]
    [(0, 0), (1, 2), (3, 3), (4, 4)]
    """
    if n_layers < 2:
        raise SettingsError(f"layer bands need at least 2 layers, got {n_layers}")
    crit = max(2, round(18 / 32 * n_layers)) if critical_layer is None else critical_layer
    if not 1 <= crit <= n_layers - 1:
        raise SettingsError(f"critical_layer must be in [1, {n_layers - 1}], got {crit}")
    shallow = min(2, crit)
    bands = [
        LayerBand(0, 0, "0 (embeddings)", "#9e9e9e"),
        LayerBand(1, shallow, f"layers 1-{shallow}", BAND_COLORS[0]),
        LayerBand(shallow + 1, crit, f"layers {shallow + 1}-{crit}", BAND_COLORS[1]),
        LayerBand(crit + 1, n_layers - 1, f"layers {crit + 1}-{n_layers - 1}", BAND_COLORS[2]),
        LayerBand(n_layers, n_layers, f"layer {n_layers}", BAND_COLORS[3]),
    ]
    return [
        LayerBand(b.first, b.last, f"layer {b.first}" if b.first == b.last and b.first else b.label, b.color)
        for b in bands
        if b.first <= b.last
    ]


def _band(band: Any, index: int) -> tuple[str, np.ndarray, str]:
    """``(label, member layers, colour)`` of a :class:`LayerBand` or of a group with ``name`` and ``layers``."""
    if isinstance(band, LayerBand):
        return band.label, np.arange(band.first, band.last + 1), band.color
    if hasattr(band, "name") and hasattr(band, "layers"):
        palette = (*BAND_COLORS, "#9467bd", "#8c564b", "#e377c2", "#17becf")
        return str(band.name), np.asarray(list(band.layers), dtype=np.int64), palette[index % len(palette)]
    raise SettingsError(f"a band must be a LayerBand or have 'name' and 'layers', got {type(band).__name__}")


def _points(coords: Any, layers: Any, groups: Any | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``coords``, ``layers`` and ``groups`` checked: ``[n, 2]`` floats, ``[n]`` layer indices, ``[n]`` groups."""
    xy = as_array(coords, "coords", ndim=2)
    if xy.shape[1] != 2:
        raise SettingsError(f"coords must be [n_points, 2], got {tuple(xy.shape)}")
    layer_idx = as_array(layers, "layers", ndim=1, dtype=np.int64)
    if layer_idx.shape[0] != xy.shape[0]:
        raise SettingsError(f"{xy.shape[0]} points but {layer_idx.shape[0]} layer labels")
    group_ids = np.zeros(xy.shape[0], dtype=np.int64) if groups is None else np.asarray(groups)
    if group_ids.shape != (xy.shape[0],):
        raise SettingsError(f"{xy.shape[0]} points but groups has shape {tuple(group_ids.shape)}")
    if xy.shape[0] == 0:
        raise SettingsError("no points to draw")
    return xy, layer_idx, group_ids


def _scatter_bands(
    ax: Axes, xy: np.ndarray, layer_idx: np.ndarray, bands: Sequence[Any], point_size: float
) -> None:
    """The points coloured by band (those in no band in pale grey, as "other layers"), with a legend."""
    covered = np.zeros(xy.shape[0], dtype=bool)
    for i, band in enumerate(bands):
        label, members, color = _band(band, i)
        mask = np.isin(layer_idx, members)
        covered |= mask
        if mask.any():
            ax.scatter(xy[mask, 0], xy[mask, 1], color=color, s=point_size, label=label, zorder=2)
    if not covered.all():
        ax.scatter(
            xy[~covered, 0],
            xy[~covered, 1],
            color="#dddddd",
            s=point_size,
            label="other layers",
            zorder=2,
        )
    ax.legend(frameon=False, loc="best", markerscale=1.2)


def _label_groups(
    ax: Axes, xy: np.ndarray, layer_idx: np.ndarray, group_ids: np.ndarray, names: Mapping[Any, str]
) -> None:
    """Each group's name (or ``names[group]``) beside its deepest point."""
    for group in dict.fromkeys(group_ids.tolist()):
        mask = group_ids == group
        deepest = np.argmax(layer_idx[mask])
        x, y = xy[mask][deepest]
        ax.annotate(
            str(names.get(group, group)), (x, y), xytext=(3, 3), textcoords="offset points", fontsize=8
        )
        ax.texts[-1].set_parse_math(False)


@styled
def embedding_figure(
    coords: Any,
    layers: Any,
    groups: Any | None = None,
    *,
    color_by: Literal["band", "layer"] = "band",
    bands: Sequence[Any] | None = None,
    connect: bool = True,
    label_groups: bool | Mapping[Any, str] = False,
    title: str | None = None,
    point_size: float = 14.0,
    ax: Axes | None = None,
) -> Figure:
    """Scatter of 2-D feature coordinates coloured by layer, each group's layers joined in order.

    For paper Fig. 6 (one image, many tokens) the groups are the generated tokens; for Fig. 7 (one question, many
    images) they are the images, and ``label_groups=True`` names them at their deepest point.

    Args:
        coords: ``[n_points, 2]`` coordinates.
        layers: ``[n_points]`` layer index of each point (0 = embeddings, L = last layer).
        groups: ``[n_points]`` group of each point (token step, image id...); ``None``: one group.
        color_by: ``"band"`` — the paper's layer groups (see :func:`paper_layer_bands`); ``"layer"`` — a continuous
            colour scale with a colour bar.
        bands: Custom bands (``color_by="band"``): :class:`LayerBand` objects, or any objects with ``name`` and
            ``layers`` (e.g. ``evolens.geometry.StageGroup``; coloured in order).
        connect: Join each group's points in layer order (its trajectory).
        label_groups: Write each group's name beside its deepest point (``True``), or a mapping group -> label.
        title: Figure title.
        point_size: Marker area.
        ax: Draw into these axes instead of a new figure.
    """
    xy, layer_idx, group_ids = _points(coords, layers, groups)
    fig, ax = target_axes(ax, (5.2, 4.4))
    n_layers = int(layer_idx.max())
    if connect:
        for group in dict.fromkeys(group_ids.tolist()):
            mask = group_ids == group
            order = np.argsort(layer_idx[mask], kind="stable")
            ax.plot(*xy[mask][order].T, color="#b0b0b0", linewidth=0.6, zorder=1)
    if color_by == "layer":
        points = ax.scatter(
            xy[:, 0],
            xy[:, 1],
            c=layer_idx,
            cmap="viridis",
            s=point_size,
            vmin=0,
            vmax=max(n_layers, 1),
            zorder=2,
        )
        fig.colorbar(points, ax=ax, label="layer")
    elif color_by == "band":
        chosen = list(bands) if bands is not None else paper_layer_bands(max(n_layers, 2))
        _scatter_bands(ax, xy, layer_idx, chosen, point_size)
    else:
        raise SettingsError(f"color_by must be 'band' or 'layer', got {color_by!r}")
    if label_groups:
        _label_groups(ax, xy, layer_idx, group_ids, label_groups if isinstance(label_groups, Mapping) else {})
    ax.set_xticks([])
    ax.set_yticks([])
    ax.spines[:].set_visible(True)
    if title is not None:
        ax.set_title(title, parse_math=False)
    return fig


@styled
def embedding_grid(panels: Sequence[Mapping[str, Any]], *, ncols: int = 2) -> Figure:
    """Several :func:`embedding_figure` panels; each mapping holds that function's arguments
    (``coords``, ``layers``, optional ``groups``, ``title``...)."""
    fig, axes = panel_grid(len(panels), ncols=ncols, panel_size=(4.6, 4.0))
    for ax, panel in zip(axes, panels, strict=True):
        embedding_figure(**panel, ax=ax)
    return fig
