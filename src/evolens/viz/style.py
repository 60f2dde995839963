"""Shared look of every evolens figure: Agg canvases, readable sizes, safe text for model strings.

Figures are built with :class:`matplotlib.figure.Figure` on an Agg canvas, never through ``pyplot``: nothing global
is touched (no backend switch, no figure registry that leaks memory in long runs) and they work without a display.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from evolens.analysis.stages import MUTATION, RAPID, STABLE, UNKNOWN
from evolens.errors import SettingsError

P = ParamSpec("P")
R = TypeVar("R")

STYLE: dict[Any, Any] = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "figure.titlesize": 12,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.fonttype": "none",  # text stays text in SVG: searchable, small
    "pdf.fonttype": 42,  # TrueType in PDF: editable
    "savefig.bbox": "tight",
}

#: Pale colour of each stage code (:mod:`evolens.analysis.stages`), in figures and the report.
STAGE_COLOURS: dict[int, str] = {RAPID: "#fdbf6f", STABLE: "#b2df8a", MUTATION: "#fb9a99", UNKNOWN: "#e5e5e5"}

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@contextmanager
def figure_style() -> Iterator[None]:
    """The evolens rc settings, for the duration of building (and saving) a figure."""
    with matplotlib.rc_context(STYLE):
        yield


def styled(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator: build the figure under :func:`figure_style`."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with figure_style():
            return func(*args, **kwargs)

    return wrapper


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` x ``height`` inches on its own Agg canvas (no pyplot)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def token_label(token: str) -> str:
    """A model token as a one-line label: outer spaces dropped, line breaks and control characters made visible.

    >>> token_label(" boy")
    'boy'
    >>> token_label("\\n")
    '\\\\n'
    >>> token_label("  ")
    "'  '"
    """
    text = token.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text).strip(" ")
    if not text:
        return repr(token)
    return text


def plain_text(text: str) -> str:
    """Escape matplotlib's mathtext markers so that a model string is drawn exactly as written.

    Use it where an artist cannot be given ``parse_math=False`` (legends, suptitles).

    >>> plain_text("$5 cost")
    '\\\\$5 cost'
    """
    return text.replace("$", r"\$")


def as_array(values: Any, name: str, *, ndim: int, dtype: Any = float) -> np.ndarray:
    """``values`` as a numpy array of ``ndim`` dimensions (accepts lists, numpy arrays and torch tensors)."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().float().numpy() if dtype is float else values.detach().cpu().numpy()
    try:
        array = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise SettingsError(f"{name} must be numeric, got {type(values).__name__}: {err}") from None
    if array.ndim != ndim:
        raise SettingsError(f"{name} must have {ndim} dimension(s), got shape {tuple(array.shape)}")
    return array


def cmap_hex(name: str, n: int) -> list[str]:
    """``n`` evenly spaced colours of a matplotlib colormap as ``#rrggbb`` strings (listed maps: their colours)."""
    from matplotlib.colors import ListedColormap, to_hex

    cmap = matplotlib.colormaps[name]
    if isinstance(cmap, ListedColormap) and cmap.N <= 20:
        return [to_hex(cmap(i % cmap.N)) for i in range(n)]
    return [to_hex(cmap(x)) for x in np.linspace(0.0, 1.0, n)]
