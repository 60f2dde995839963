"""Write figures to disk atomically, in one or several formats."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from evolens.errors import SettingsError
from evolens.files import atomic_write_bytes
from evolens.viz.style import figure_style

FORMATS = ("png", "svg", "pdf")
DEFAULT_FORMATS = ("png", "svg")


def figure_bytes(fig: Figure, fmt: str = "png", *, dpi: int = 150) -> bytes:
    """The figure rendered in ``fmt`` (``"png"``, ``"svg"`` or ``"pdf"``)."""
    if fmt not in FORMATS:
        raise SettingsError(f"unknown figure format {fmt!r}; use one of {', '.join(FORMATS)}")
    buffer = io.BytesIO()
    with figure_style():
        # no timestamps: the same figure gives the same bytes
        meta: dict[str, str | None] = {"Creator": "evolens"}
        if fmt == "png":
            meta = {"Software": "evolens"}
        elif fmt == "svg":
            meta["Date"] = None
        else:
            meta["CreationDate"] = None
        fig.savefig(buffer, format=fmt, dpi=dpi, metadata=meta)
    return buffer.getvalue()


def save_figure(
    fig: Figure,
    path: str | Path,
    formats: Sequence[str] | None = None,
    *,
    dpi: int = 150,
) -> list[Path]:
    """Write ``fig`` atomically (temporary file + rename) and return the paths written.

    Args:
        fig: The figure.
        path: Target file. With a suffix (``fig.png``) and no ``formats``, that format is written; without a suffix
            (``figs/jsd``) or with ``formats``, one file per format is written beside it (``figs/jsd.png``,
            ``figs/jsd.svg``).
        formats: Any of ``"png"``, ``"svg"``, ``"pdf"`` (default: the suffix's, else png and svg).
        dpi: Resolution of raster output.

    Raises:
        SettingsError: An unknown format or suffix.
    """
    target = Path(path)
    suffix = target.suffix.lower().lstrip(".")
    if formats is None:
        if suffix in FORMATS:
            formats = (suffix,)
        elif suffix:
            raise SettingsError(f"cannot write a figure as {target.name!r}: use a .png, .svg or .pdf suffix")
        else:
            formats = DEFAULT_FORMATS
    wanted = [f.lower().lstrip(".") for f in formats]
    bad = [f for f in wanted if f not in FORMATS]
    if bad or not wanted:
        raise SettingsError(f"unknown figure format(s) {bad or wanted!r}; use png, svg or pdf")
    stem = target.with_suffix("") if suffix in FORMATS else target
    written = []
    for fmt in dict.fromkeys(wanted):
        out = stem.with_name(f"{stem.name}.{fmt}")
        atomic_write_bytes(out, figure_bytes(fig, fmt, dpi=dpi))
        written.append(out)
    return written
