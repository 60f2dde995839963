"""How a report is rendered: :class:`ReportOptions`, which the command line, the API and the run pipeline pass
whole to :func:`evolens.report.build_report` / :func:`evolens.report.write_report`; and the check of the path a
report is written to."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evolens.errors import SettingsError, check_positive_int


@dataclass(frozen=True)
class ReportOptions:
    """How a report is rendered (what it reports, and the extras and summary it adds, are the data).

    Attributes:
        title: Page title (default: "evolens report").
        topk: Tokens per layer in the logit-lens grid (at most what the traces kept).
        from_layer: First layer whose top-1 tokens count as candidates (default: each trace's default, the last
            40% of its layers).
        max_items: Report only the first ``max_items`` traces (``None``: all).
        image_root: Where to look for image files whose recorded path is relative or has moved (a string is
            taken as a path).
        summary_figures: Draw the run-level summary figures (top-1 layer histogram, JSD profile, and a run's
            critical/mutation layer histograms and hallucinated vs grounded comparison).
        compress: Embed the data gzip-compressed (base64; the browser decompresses it) — about 4x smaller. ``None``
            compresses when the JSON exceeds 4 MB (a few dozen items).

    Raises:
        SettingsError: ``topk`` or ``max_items`` is not a positive integer, or ``from_layer`` is negative.
    """

    title: str | None = None
    topk: int = 5
    from_layer: int | None = None
    max_items: int | None = None
    image_root: Path | None = None
    summary_figures: bool = True
    compress: bool | None = None

    def __post_init__(self) -> None:
        check_positive_int("topk", self.topk)
        if self.max_items is not None:
            check_positive_int("max_items", self.max_items)
        layer = self.from_layer
        if layer is not None and (isinstance(layer, bool) or not isinstance(layer, int) or layer < 0):
            raise SettingsError(f"from_layer must be a layer index >= 0 (or None), got {layer!r}")
        if self.image_root is not None and not isinstance(self.image_root, Path):
            object.__setattr__(self, "image_root", Path(self.image_root))


def check_report_path(path: str | Path) -> Path:
    """``path`` as a :class:`~pathlib.Path`, refused unless it names an HTML file (``.html`` or ``.htm``).

    Raises:
        SettingsError: Another suffix.
    """
    target = Path(path)
    if target.suffix.lower() not in (".html", ".htm"):
        raise SettingsError(f"the report is an HTML file: give a path ending in .html, got {target.name!r}")
    return target


__all__ = ["ReportOptions", "check_report_path"]
