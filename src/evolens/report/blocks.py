"""The report's smallest HTML pieces, shared by every section: a table cell, a gallery of figures, small tables.
Every value goes through :func:`evolens.report.escape.text`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from evolens.report.escape import text
from evolens.report.media import figure_uri


def cell(value: Any) -> str:
    """A table cell's content: floats with 4 significant digits, everything else as escaped text."""
    if isinstance(value, float):
        return "—" if math.isnan(value) else text(f"{value:.4g}")
    if value is None:
        return "—"
    return text(value)


def gallery(entries: Sequence[tuple[str, Any]]) -> str:
    """Figures side by side with their captions (a Figure becomes SVG, files and bytes keep their format)."""
    figures = []
    for title, figure in entries:
        caption = f"<figcaption>{text(title)}</figcaption>" if title else ""
        figures.append(
            f'<figure><img alt="{text(title or "figure")}" src="{figure_uri(figure)}">{caption}</figure>'
        )
    return f'<div class="gallery">{"".join(figures)}</div>'


def tables(entries: Sequence[Mapping[str, Any]]) -> str:
    """Checked ``{"title", "columns", "rows"}`` tables."""
    parts = []
    for entry in entries:
        if entry["title"]:
            parts.append(f"<h4>{text(entry['title'])}</h4>")
        head = "".join(f"<th>{text(c)}</th>" for c in entry["columns"])
        body = "".join(
            "<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in entry["rows"]
        )
        parts.append(f'<table class="extra"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')
    return "".join(parts)
