"""The layer-skipping comparison table (paper Fig. 5): the original output next to each variant's, tokens marked
hallucinated (red) or corrected (green); and the variants judged against the truth (:func:`skip_judged_figure`):
items each corrected and broke, per task."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties

from evolens.errors import SettingsError
from evolens.viz.style import new_figure, styled

if TYPE_CHECKING:
    from evolens.hallucination.skip_judged import SkipJudged

FLAG_COLORS: dict[str, str] = {"hallucinated": "#d62728", "corrected": "#2ca02c"}
#: Bars of the judged figure: items corrected and broken, and the prior-driven ones among them (darker).
JUDGED_COLORS: dict[str, str] = {
    "corrected": "#98df8a",
    "prior corrected": "#2ca02c",
    "broken": "#ff9896",
    "prior broken": "#d62728",
}
TEXT_COLOR = "#1a1a1a"


def _check_rows(
    columns: Sequence[str],
    rows: Sequence[Sequence[Sequence[str]]],
    flags: Sequence[Sequence[Sequence[str | None]]] | None,
    colors: Mapping[str, str],
) -> None:
    if not columns:
        raise SettingsError("give at least one column (e.g. ['original', 'skip.1'])")
    if not rows:
        raise SettingsError("give at least one row of texts")
    for r, row in enumerate(rows):
        if len(row) != len(columns):
            raise SettingsError(f"row {r} has {len(row)} texts but there are {len(columns)} columns")
        for c, tokens in enumerate(row):
            if isinstance(tokens, str):
                raise SettingsError(f"row {r}, column {c}: give a list of token strings, not one string")
            if flags is None:
                continue
            if len(flags) != len(rows) or len(flags[r]) != len(columns) or len(flags[r][c]) != len(tokens):
                raise SettingsError(
                    f"flags must mirror the rows: row {r}, column {c} does not match its tokens"
                )
            unknown = {f for f in flags[r][c] if f and f not in colors}
            if unknown:
                raise SettingsError(f"unknown flag(s) {sorted(unknown)}; known: {sorted(colors)}")


class _Measure:
    """Text widths in inches with the figure's own renderer."""

    def __init__(self, fig: Figure, fontsize: float) -> None:
        self.renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
        self.props = {
            False: FontProperties(size=fontsize),
            True: FontProperties(size=fontsize, weight="bold"),
        }
        self.dpi = fig.dpi
        self.space = self.width("a a") - self.width("aa")

    def width(self, text: str, bold: bool = False) -> float:
        w, _, _ = self.renderer.get_text_width_height_descent(text, self.props[bold], ismath=False)
        return float(w) / self.dpi


def _wrap(
    tokens: Sequence[str], flags: Sequence[str | None], width: float, measure: _Measure
) -> list[list[Any]]:
    """Greedy word wrap: lines of (x inches, text, flag); a token's leading whitespace becomes a gap."""
    lines: list[list[Any]] = [[]]
    x = 0.0
    for token, flag in zip(tokens, flags, strict=True):
        parts = token.split("\n")
        for i, part in enumerate(parts):
            if i > 0:
                lines.append([])
                x = 0.0
            stripped = part.lstrip()
            gap = measure.space * (len(part) - len(stripped)) if lines[-1] else 0.0
            if not stripped:
                x += gap
                continue
            w = measure.width(stripped, bold=bool(flag))
            if lines[-1] and x + gap + w > width:
                lines.append([])
                x, gap = 0.0, 0.0
            lines[-1].append((x + gap, stripped, flag))
            x += gap + w
    return lines


def _wrap_row(
    row: Sequence[Sequence[str]],
    flags: Sequence[Sequence[str | None]] | None,
    width: float,
    measure: _Measure,
) -> list[list[list[Any]]]:
    """Each cell of a row wrapped to ``width`` inches (:func:`_wrap`)."""
    return [
        _wrap(tokens, flags[c] if flags is not None else [None] * len(tokens), width, measure)
        for c, tokens in enumerate(row)
    ]


def _draw_lines(
    ax: Any,
    lines: list[list[Any]],
    x0: float,
    y0: float,
    line_height: float,
    fontsize: float,
    colors: Mapping[str, str],
) -> None:
    """One cell's wrapped lines, from its top left corner ``(x0, y0)`` (inches); flagged words bold, in colour."""
    for i, line in enumerate(lines):
        y = y0 + i * line_height
        for x, text, flag in line:
            color = colors[flag] if flag else TEXT_COLOR
            ax.text(
                x0 + x,
                y,
                text,
                va="top",
                fontsize=fontsize,
                color=color,
                weight="bold" if flag else "normal",
                parse_math=False,
            )


@styled
def skip_table_figure(
    columns: Sequence[str],
    rows: Sequence[Sequence[Sequence[str]]],
    *,
    flags: Sequence[Sequence[Sequence[str | None]]] | None = None,
    images: Sequence[Any | None] | None = None,
    column_width: float = 3.0,
    fontsize: float = 8.5,
    flag_colors: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Figure:
    """A table of generated texts, one row per example and one column per model variant (paper Fig. 5).

    Args:
        columns: Column headings, e.g. ``["original", "skip.1", "skip.2", "skip.3"]``.
        rows: ``rows[example][column]`` is the list of token strings of that output (they concatenate to the text;
            a leading space starts a new word).
        flags: Same nesting as ``rows``, one entry per token: ``"hallucinated"`` (red), ``"corrected"`` (green) or
            ``None``.
        images: One image per example (a PIL image, an array or ``None``), shown in a first column.
        column_width: Width of a text column, inches.
        fontsize: Text size, points.
        flag_colors: Colours of the flags (default red and green); extra flag names may be added.
        title: Figure title.
    """
    colors = {**FLAG_COLORS, **(flag_colors or {})}
    _check_rows(columns, rows, flags, colors)
    if images is not None and len(images) != len(rows):
        raise SettingsError(f"give one image (or None) per row: {len(images)} images for {len(rows)} rows")
    has_images = images is not None and any(im is not None for im in images)
    pad, image_width = 0.12, 1.6 if has_images else 0.0
    width = image_width + column_width * len(columns)
    fig = new_figure(width, 1.0)
    fig.set_layout_engine("none")
    measure = _Measure(fig, fontsize)
    line_height = fontsize * 1.45 / 72.0
    header = (fontsize + 1.5) * 2.2 / 72.0 + (0.3 if title else 0.0)
    row_images = list(images) if images is not None else [None] * len(rows)
    text_width = column_width - 2 * pad
    laid_out = [
        _wrap_row(row, None if flags is None else flags[r], text_width, measure) for r, row in enumerate(rows)
    ]
    heights = [
        max(
            max(len(cell) for cell in cells) * line_height + 2 * pad,
            image_width if image is not None else 0.0,
        )
        for cells, image in zip(laid_out, row_images, strict=True)
    ]
    height = header + sum(heights) + 0.05
    fig.set_size_inches(width, height)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_autoscale_on(False)
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    if title:
        ax.text(width / 2, 0.08, title, ha="center", va="top", fontsize=fontsize + 3, parse_math=False)
    top = header
    for c, name in enumerate(columns):
        x0 = image_width + c * column_width
        ax.text(
            x0 + pad, top - 0.1, name, va="bottom", fontsize=fontsize + 1.5, weight="bold", parse_math=False
        )
    ax.axhline(top, color="#444444", linewidth=1.0)
    for r, cells in enumerate(laid_out):
        if row_images[r] is not None:
            picture = np.asarray(row_images[r])
            size = image_width - 2 * pad
            ax.imshow(picture, extent=(pad, pad + size, top + pad + size, top + pad), aspect="auto")
        for c, lines in enumerate(cells):
            _draw_lines(
                ax, lines, image_width + c * column_width + pad, top + pad, line_height, fontsize, colors
            )
        top += heights[r]
        ax.axhline(top, color="#bbbbbb", linewidth=0.6)
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    return fig


def _difference_label(difference: float, low: float | None, high: float | None) -> str:
    """An accuracy difference in points, with its interval on a second line when there is one."""
    interval = f"\n[{100 * low:+.1f}, {100 * high:+.1f}]" if low is not None and high is not None else ""
    return f"{100 * difference:+.1f}{interval}"


@styled
def skip_judged_figure(judged: SkipJudged, *, title: str | None = None) -> Figure:
    """Items each skip variant corrected (up) and broke (down) against the original, one panel per task and one
    over all tasks; the prior-driven ones among them darker, and the accuracy difference in points with its
    interval above each variant.

    Args:
        judged: :func:`~evolens.hallucination.skip_judged.judge_skip`'s result.
        title: Figure title (default: says what is drawn).

    Raises:
        SettingsError: ``judged`` has no rows or no variant besides the original.
    """
    variants = [v for v in judged.variants if any(r.comparison for r in judged.rows if r.variant == v)]
    if not variants:
        raise SettingsError("nothing to draw: no skip variant was judged against the original")
    tasks = judged.tasks
    fig = new_figure(max(3.2, 0.9 + 0.75 * len(variants)) * len(tasks), 3.8)
    axes = fig.subplots(1, len(tasks), sharey=True, squeeze=False)[0]
    x = np.arange(len(variants))
    comparisons = {task: [judged.row(v, task).comparison for v in variants] for task in tasks}
    counts = {
        task: {
            key: np.array([getattr(c, key) if c is not None else 0 for c in row], dtype=float)
            for key in ("corrected", "prior_corrected", "broken", "prior_broken")
        }
        for task, row in comparisons.items()
    }
    high = max(1.0, *(c["corrected"].max() for c in counts.values()))
    low = -max(1.0, *(c["broken"].max() for c in counts.values()))
    for ax, task in zip(axes, tasks, strict=True):
        n = counts[task]
        ax.bar(x, n["corrected"], color=JUDGED_COLORS["corrected"], label="corrected")
        ax.bar(x, n["prior_corrected"], color=JUDGED_COLORS["prior corrected"], label="… prior-driven")
        ax.bar(x, -n["broken"], color=JUDGED_COLORS["broken"], label="broken")
        ax.bar(x, -n["prior_broken"], color=JUDGED_COLORS["prior broken"], label="… prior-driven")
        ax.axhline(0, color="#444444", linewidth=0.8)
        for i, c in enumerate(comparisons[task]):
            if c is not None and c.difference is not None:
                ax.text(
                    i, 0.98, _difference_label(c.difference, c.low, c.high), transform=ax.get_xaxis_transform(),
                    ha="center", va="top", fontsize=7, parse_math=False,
                )  # fmt: skip
        ax.set_title(
            f"{task} ({judged.row(judged.variants[0], task).quality.n_judged} items)", parse_math=False
        )
        ax.set_xticks(x, variants)
        ax.set_ylim(1.1 * low, high + 0.45 * (high - low))  # room for the labels above the bars
    axes[0].set_ylabel("items: corrected (up), broken (down)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=4, fontsize=8)
    fig.suptitle(title or "layer skipping judged against the truth (accuracy Δ vs original, points)")
    return fig
