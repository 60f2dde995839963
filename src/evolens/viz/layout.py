"""Grids of panels shared by the multi-panel figures."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from evolens.errors import SettingsError
from evolens.viz.style import new_figure


def panel_grid(
    n_panels: int, *, ncols: int, panel_size: tuple[float, float], sharey: bool = False
) -> tuple[Figure, list[Axes]]:
    """A figure with ``n_panels`` axes in rows of ``ncols`` (unused cells removed)."""
    if n_panels < 1:
        raise SettingsError("nothing to draw: give at least one panel")
    if ncols < 1:
        raise SettingsError(f"ncols must be >= 1, got {ncols}")
    ncols = min(ncols, n_panels)
    nrows = math.ceil(n_panels / ncols)
    fig = new_figure(panel_size[0] * ncols, panel_size[1] * nrows)
    grid = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey)
    axes: list[Axes] = list(np.asarray(grid).ravel())
    for extra in axes[n_panels:]:
        extra.remove()
    return fig, axes[:n_panels]


def target_axes(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    """The axes to draw on: ``ax`` when given (its figure is returned), else a new figure of ``size`` inches."""
    if ax is not None:
        fig = ax.get_figure()
        assert isinstance(fig, Figure)
        return fig, ax
    fig = new_figure(*size)
    return fig, fig.add_subplot()
