"""Figures from the result dataclasses of the analysis, experiments, geometry and data stages.

Adapters that turn stored results into the paper's figures — they read results (fresh or loaded from JSON) and
never a model:

==================================================  ================================================================
result                                              figure
==================================================  ================================================================
:class:`~evolens.experiments.SkipReport`            :func:`skip_report_figure` (Fig. 5, via :func:`skip_table_figure`)
:class:`~evolens.experiments.TokenComparison`       :func:`token_comparison_figure` (Fig. 3, via
                                                    :func:`hallucination_figure`)
:class:`~evolens.geometry.FeatureMap`               :func:`feature_map_figure` (Fig. 6 / 7, via :func:`embedding_figure`)
:class:`~evolens.analysis.ProfileComparison`        :func:`profile_comparison_figure` (§6)
:class:`~evolens.analysis.AnalysisSummary`          :func:`analysis_summary_figure` (histograms of detected layers)
:class:`~evolens.data.LayerStatistics`              :func:`layer_statistics_figure` (hallucinated vs grounded)
==================================================  ================================================================
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from evolens.errors import SettingsError
from evolens.viz.embedding import embedding_figure
from evolens.viz.layout import panel_grid
from evolens.viz.skip import skip_table_figure
from evolens.viz.style import cmap_hex, plain_text, styled
from evolens.viz.summary import layer_histogram_figure
from evolens.viz.tokens import CORRECT_COLOR, TokenContrast, hallucination_figure, hallucination_grid

if TYPE_CHECKING:
    from evolens.analysis.aggregate import AnalysisSummary
    from evolens.analysis.profiles import ProfileComparison
    from evolens.experiments.hallucination import TokenComparison
    from evolens.experiments.skip import SkipReport, SkipResult, VariantOutput
    from evolens.geometry.maps import FeatureMap
    from evolens.hallucination.stats import LayerStatistics

CHANGED_COLOR = "#1f77b4"
NOTHING_TO_SKIP = "(nothing to skip: the original is reused)"


# ---------------------------------------------------------------------------------------------- Fig. 5
@dataclass(frozen=True)
class SkipTable:
    """The Fig. 5 table of a :class:`~evolens.experiments.SkipReport`, ready for :func:`skip_table_figure`.

    Attributes:
        columns: Column headings: ``"original"`` and each variant (with its skipped layers when every row skips
            the same ones).
        rows: ``rows[item][column]``: the output's token strings.
        flags: Same nesting, one entry per token: ``"hallucinated"``, ``"corrected"``, ``"changed"`` or ``None``.
        images: The image source of each row (a path as recorded by the experiment), or ``None``.
        item_ids: The item of each row.
    """

    columns: list[str]
    rows: list[list[list[str]]]
    flags: list[list[list[str | None]]]
    images: list[str | None]
    item_ids: list[str]


def layer_ranges(layers: Sequence[int]) -> str:
    """``[18, 19, 20, 27]`` -> ``"18–20, 27"``."""
    parts: list[str] = []
    values = sorted(layers)
    start = prev = None
    for value in [*values, None]:
        if value is not None and prev is not None and value == prev + 1:
            prev = value
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}–{prev}")
        start = prev = value
    return ", ".join(parts)


SkipFlag = Literal["hallucinated", "corrected"]


def skip_token_flags(result: SkipResult, variant: VariantOutput) -> list[SkipFlag | None]:
    """The paper's Fig. 5 colours of one output's tokens.

    ``"hallucinated"`` (red) on the tokens that spell an annotated hallucination word; ``"corrected"`` (green) on
    those that spell an annotated ground-truth word where the output *replaced a hallucination of the original*:
    inside a change of the token diff whose original side covers a hallucinated mention. A ground-truth word a
    variant merely adds, or repeats, is not a correction. No annotations: no flags.
    """
    from evolens.analysis.compare import mention_spans
    from evolens.experiments.skip import ORIGINAL
    from evolens.hallucination.token_labels import mention_steps

    flags: list[SkipFlag | None] = [None] * len(variant.tokens)
    annotations = result.annotations
    if annotations is None or not variant.ran:
        return flags

    def steps(tokens: Sequence[str], words: Iterable[str]) -> set[int]:
        text = "".join(tokens)
        return {
            step
            for start, end, _ in mention_spans(text, words)
            for step in mention_steps(tokens, text, start, end)
        }

    original = result.variant(ORIGINAL)
    was_hallucinated = steps(original.tokens, annotations.hallucination)
    replaced = {
        step
        for op in variant.diff
        if op.tag != "equal" and was_hallucinated.intersection(range(op.a_start, op.a_end))
        for step in range(op.b_start, op.b_end)
    }
    for step in steps(variant.tokens, annotations.ground_truth) & replaced:
        flags[step] = "corrected"
    for step in steps(variant.tokens, annotations.hallucination):
        flags[step] = "hallucinated"
    return flags


def _variant_flags(
    variant: VariantOutput, result: SkipResult, *, mark_changes: bool
) -> tuple[list[str], list[str | None]]:
    """Token strings and flags of one cell: the paper's Fig. 5 colours (:func:`skip_token_flags`), other
    departures from the original optionally in blue."""
    if not variant.ran:  # one token per word, so the note wraps like a text
        words = NOTHING_TO_SKIP.split(" ")
        return [words[0], *(" " + w for w in words[1:])], [None] * len(words)
    tokens = list(variant.tokens)
    flags: list[str | None] = list(skip_token_flags(result, variant))
    if mark_changes:
        changed = {j for op in variant.diff if op.tag != "equal" for j in range(op.b_start, op.b_end)}
        for step in changed:
            if step < len(flags) and flags[step] is None:
                flags[step] = "changed"
    return tokens, flags


def skip_table(
    report: SkipReport,
    *,
    items: Sequence[str] | None = None,
    max_tokens: int | None = None,
    mark_changes: bool = False,
) -> SkipTable:
    """The Fig. 5 table of ``report``: one row per item, the original then each variant.

    Args:
        report: A layer-skip report (``run_skip`` or ``SkipReport.load``).
        items: Item ids to show, in this order (default all).
        max_tokens: Cut each output after this many tokens (an ellipsis marks the cut); ``None``: whole outputs.
        mark_changes: Also flag, in blue, every token where a variant departs from the original (useful without
            annotations).

    Tokens are flagged ``"hallucinated"`` where they spell an annotated hallucination word (any column) and
    ``"corrected"`` where a variant spells an annotated ground-truth word in place of a hallucination of the
    original (:func:`skip_token_flags`).
    """
    by_id = {r.item_id: r for r in report.results}
    chosen = list(items) if items is not None else list(by_id)
    unknown = [i for i in chosen if i not in by_id]
    if unknown:
        raise SettingsError(f"no item(s) {unknown} in the skip report; have {list(by_id)[:10]}")
    if not chosen:
        raise SettingsError("the skip report has no items to show")
    if max_tokens is not None and max_tokens < 1:
        raise SettingsError(f"max_tokens must be >= 1 (or None), got {max_tokens}")
    results = [by_id[i] for i in chosen]
    names: list[str] = []
    for result in results:
        names.extend(v.name for v in result.variants if v.name not in names)
    columns = []
    for name in names:
        skipped = {r.variant(name).skipped for r in results if name in {v.name for v in r.variants}}
        ran = [s for s in skipped if s]
        ranges = layer_ranges(ran[0]) if len(skipped) == 1 and ran else ""
        columns.append(f"{name} ({ranges})" if ranges and ranges not in name.replace("-", "–") else name)
    rows: list[list[list[str]]] = []
    flags: list[list[list[str | None]]] = []
    for result in results:
        present = {v.name: v for v in result.variants}
        row: list[list[str]] = []
        row_flags: list[list[str | None]] = []
        for name in names:
            if name not in present:
                row.append(["(not", " run)"])
                row_flags.append([None, None])
                continue
            tokens, token_flags = _variant_flags(present[name], result, mark_changes=mark_changes)
            if max_tokens is not None and len(tokens) > max_tokens:
                tokens, token_flags = [*tokens[:max_tokens], " …"], [*token_flags[:max_tokens], None]
            row.append(tokens)
            row_flags.append(token_flags)
        rows.append(row)
        flags.append(row_flags)
    return SkipTable(columns, rows, flags, [r.image for r in results], [r.item_id for r in results])


def _thumbnail(source: str | None, image_root: Path | None, size: int = 256) -> Any | None:
    """The image at ``source`` (or under ``image_root``) as a small RGB array, or ``None`` when it cannot be read."""
    if source is None:
        return None
    from PIL import Image, UnidentifiedImageError

    candidates = [Path(source)]
    if image_root is not None:
        candidates += [image_root / source, image_root / Path(source).name]
    for path in candidates:
        if path.is_file():
            try:
                with Image.open(path) as image:
                    picture = image.convert("RGB")
                    picture.thumbnail((size, size))
                    return np.asarray(picture)
            except (OSError, UnidentifiedImageError):
                return None
    return None


def skip_report_figure(
    report: SkipReport,
    *,
    items: Sequence[str] | None = None,
    max_tokens: int | None = None,
    mark_changes: bool = False,
    images: bool = True,
    image_root: str | Path | None = None,
    **kwargs: Any,
) -> Figure:
    """Paper Fig. 5 from a :class:`~evolens.experiments.SkipReport`: the original output next to each layer-skipping
    variant, hallucination words in red and the corrections in green (from the items' annotations).

    Args:
        report: The report.
        items, max_tokens, mark_changes: See :func:`skip_table`.
        images: Show each item's image in a first column when its file can be read.
        image_root: Where to look for images whose recorded path is relative or moved.
        **kwargs: Passed to :func:`skip_table_figure` (``column_width``, ``fontsize``, ``title``...).
    """
    table = skip_table(report, items=items, max_tokens=max_tokens, mark_changes=mark_changes)
    pictures = None
    if images:
        root = Path(image_root) if image_root is not None else None
        loaded = [_thumbnail(source, root) for source in table.images]
        pictures = loaded if any(p is not None for p in loaded) else None
    colors = {"changed": CHANGED_COLOR, **kwargs.pop("flag_colors", {})}
    return skip_table_figure(
        table.columns, table.rows, flags=table.flags, images=pictures, flag_colors=colors, **kwargs
    )


# ---------------------------------------------------------------------------------------------- Fig. 3
def _layer_or_none(layer: int) -> int | None:
    return None if layer < 0 else int(layer)


def token_comparison_contrast(comparison: TokenComparison, *, title: str | None = None) -> TokenContrast:
    """The :class:`TokenContrast` of a :class:`~evolens.experiments.TokenComparison`: the generated token as the
    hallucinated one (red), the alternative as the correct one (green), and its crossing, first mutation and
    critical layers marked (those found)."""
    mutation = comparison.mutation_layers[0] if comparison.mutation_layers else -1
    return TokenContrast(
        hallucinated_probs=np.asarray(comparison.generated_probs, dtype=np.float64),
        correct_probs=np.asarray(comparison.alternative_probs, dtype=np.float64),
        hallucinated_token=comparison.generated_token,
        correct_token=comparison.alternative_token,
        crossing_layer=_layer_or_none(comparison.crossing_layer),
        mutation_layer=_layer_or_none(mutation),
        critical_layer=_layer_or_none(comparison.critical_layer),
        title=title if title is not None else f"{comparison.item_id}, step {comparison.step}",
    )


def token_comparison_figure(
    comparisons: TokenComparison | Sequence[TokenComparison], *, ncols: int = 2
) -> Figure:
    """Paper Fig. 3 from one :class:`~evolens.experiments.TokenComparison` (one panel) or several (a grid)."""
    if isinstance(comparisons, Sequence):
        items = list(comparisons)
        if not items:
            raise SettingsError("no token comparisons to draw")
        if len(items) > 1:
            return hallucination_grid([token_comparison_contrast(c) for c in items], ncols=ncols)
        comparisons = items[0]
    return hallucination_figure(token_comparison_contrast(comparisons))


# ---------------------------------------------------------------------------------------------- Fig. 6 / 7
@dataclass(frozen=True)
class _Band:
    """A stage group as :func:`embedding_figure` draws it (its label, layer range included, in the legend)."""

    name: str
    layers: tuple[int, ...]


def feature_map_figure(
    fmap: FeatureMap,
    *,
    color_by: Literal["band", "layer"] = "band",
    label_units: bool | None = None,
    connect: bool = True,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Paper Fig. 6 (one image's tokens) or Fig. 7 (one token across images) from a
    :class:`~evolens.geometry.FeatureMap`: its 2-D coordinates coloured by its stage groups, each unit's layers
    joined in order.

    Args:
        fmap: The map.
        color_by: ``"band"`` (the map's stage groups) or ``"layer"`` (a continuous scale).
        label_units: Name each unit at its deepest point (default: for maps across images).
        connect: Join each unit's points in layer order.
        title: Figure title (default: the kind of map, the reducer and its trustworthiness).
        ax: Draw into these axes instead of a new figure.
    """
    label = fmap.kind == "multi_image" if label_units is None else label_units
    names = dict(enumerate(fmap.unit_labels)) if label else False
    if title is None:
        what = "tokens of one image" if fmap.kind == "single_image" else "one token across images"
        trust = fmap.projection.trustworthiness
        title = f"{what}: {fmap.projection.backend}, trustworthiness {trust:.2f}"
    return embedding_figure(
        fmap.coords,
        fmap.point_layer,
        fmap.point_unit,
        color_by=color_by,
        bands=[_Band(g.label, g.layers) for g in fmap.groups],
        connect=connect,
        label_groups=names,
        title=title,
        ax=ax,
    )


# ---------------------------------------------------------------------------------------------- §6 profiles
@styled
def profile_comparison_figure(comparison: ProfileComparison, *, title: str | None = None) -> Figure:
    """LVLM vs text-only (paper §6) from a :class:`~evolens.analysis.ProfileComparison`: each condition's mean
    adjacent-layer JSD per decoder layer (its best split marked), and the hierarchy ratio of each.

    Profiles of models of different depth are drawn against relative depth (decoder layer / L).
    """
    profiles = list(comparison.profiles)
    if not profiles:
        raise SettingsError("the comparison holds no profiles")
    depths = {p.n_layers for p in profiles}
    relative = len(depths) > 1
    fig, (ax, bars) = panel_grid(2, ncols=2, panel_size=(4.8, 3.4))
    colors = cmap_hex("tab10", len(profiles))
    units = "bits" if comparison.params.jsd_reduction == "bits" else "nats / |V|"
    for color, profile in zip(colors, profiles, strict=True):
        scale = profile.n_layers if relative else 1
        x = np.arange(1, profile.n_layers + 1) / scale
        mean = np.asarray(profile.mean_jsd, dtype=np.float64)
        ax.plot(x, mean, color=color, linewidth=2, label=f"{profile.label} ({profile.n_tokens} tokens)")
        split = profile.hierarchy.split_layer
        if split >= 0:
            ax.axvline((split + 0.5) / scale, color=color, linestyle="--", linewidth=1)
    ax.set_xlabel("relative depth (decoder layer / L)" if relative else "decoder layer")
    if not relative:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"mean JSD between its input and output ({units})")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.25, linewidth=0.6)
    ax.set_title("JSD profiles (dashed: best split)")
    leg = ax.legend(frameon=False)
    for text in leg.get_texts():
        text.set_parse_math(False)
    ratios = [p.hierarchy.ratio for p in profiles]
    shown = [r if math.isfinite(r) else 0.0 for r in ratios]
    drawn = bars.bar(range(len(profiles)), shown, color=colors)
    bars.bar_label(drawn, labels=[f"{r:.2f}" if math.isfinite(r) else "n/a" for r in ratios], padding=2)
    bars.set_xticks(range(len(profiles)), [plain_text(p.label) for p in profiles])
    bars.axhline(1.0, color="#7f7f7f", linewidth=1, linestyle=":")
    bars.set_ylabel("hierarchy ratio (mean JSD before / after split)")
    bars.set_title("how hierarchical (1 = flat)")
    bars.margins(y=0.15)
    if title is not None:
        fig.suptitle(plain_text(title))
    return fig


# ---------------------------------------------------------------------------------------------- summaries
def _expand(counts: Sequence[int]) -> np.ndarray:
    """Histogram counts over layers 0..L -> one value per token."""
    return np.repeat(np.arange(len(counts)), np.asarray(counts, dtype=np.int64))


ANALYSIS_PANELS: dict[str, str] = {
    "critical_layer_prob": "critical layer (probability)",
    "critical_layer_jsd": "critical layer (JSD)",
    "mutation_layer": "first mutation layer",
    "mutation_layers": "every mutation layer",
}


def _ci(value: float, low: float, high: float) -> str:
    if not math.isfinite(value):
        return "none found"
    if math.isfinite(low) and math.isfinite(high):
        return f"median {value:g} [{low:g}, {high:g}]"
    return f"median {value:g}"


@styled
def analysis_summary_figure(
    summary: AnalysisSummary,
    *,
    quantities: Sequence[str] = ("critical_layer_prob", "critical_layer_jsd", "mutation_layer"),
    ncols: int = 3,
    title: str | None = None,
) -> Figure:
    """Histograms of the detected layers of an :class:`~evolens.analysis.AnalysisSummary` (one panel per quantity),
    each titled with its median and bootstrap interval."""
    unknown = [q for q in quantities if q not in summary.distributions]
    if unknown or not quantities:
        raise SettingsError(f"unknown quantities {unknown}; have {sorted(summary.distributions)}")
    fig, axes = panel_grid(len(quantities), ncols=ncols, panel_size=(4.4, 3.2))
    for ax, name in zip(axes, quantities, strict=True):
        dist = summary.distributions[name]
        est = dist.median
        label = ANALYSIS_PANELS.get(name, name)
        layer_histogram_figure(
            _expand(dist.counts),
            n_layers=summary.n_layers,
            xlabel=label,
            ax=ax,
            title=f"{label}\n{_ci(est.value, est.ci_low, est.ci_high)}",
        )
    if title is None:
        title = f"{summary.n_items} items, {summary.n_tokens} tokens"
    fig.suptitle(plain_text(title))
    return fig


@styled
def layer_statistics_figure(stats: LayerStatistics, *, title: str | None = None) -> Figure:
    """Dataset statistics (:class:`~evolens.data.LayerStatistics`): the critical-layer and first-mutation-layer
    distributions of hallucinated against grounded tokens, and the share of each with a mutation layer (with the
    AUROC of "a mutation layer was detected" as a hallucination detector)."""
    fig, axes = panel_grid(3, ncols=3, panel_size=(4.4, 3.2))
    groups = {"hallucinated": stats.hallucinated, "grounded": stats.grounded}
    for ax, attr, label in (
        (axes[0], "critical", "critical layer"),
        (axes[1], "first_mutation", "first mutation layer"),
    ):
        layer_histogram_figure(
            {name: _expand(getattr(g, attr).counts) for name, g in groups.items()},
            n_layers=stats.n_layers,
            xlabel=label,
            density=True,
            ax=ax,
            title=label,
        )
    _share_panel(axes[2], stats)
    if title is None:
        title = f"{stats.n_items} items, unit: {stats.unit.replace('_', ' ')}"
    fig.suptitle(plain_text(title))
    return fig


def _share_panel(ax: Axes, stats: LayerStatistics) -> None:
    from evolens.viz.tokens import HALLUCINATED_COLOR

    groups = [
        ("hallucinated", stats.hallucinated, HALLUCINATED_COLOR),
        ("grounded", stats.grounded, CORRECT_COLOR),
    ]
    shares = [g.share_with_mutation for _, g, _ in groups]
    drawn = ax.bar(
        [name for name, _, _ in groups],
        [s if s is not None else 0.0 for s in shares],
        color=[color for _, _, color in groups],
    )
    ax.bar_label(
        drawn,
        labels=[
            f"{s:.0%} of {g.n_tokens}" if s is not None else f"n/a ({g.n_tokens})"
            for s, (_, g, _) in zip(shares, groups, strict=True)
        ],
        padding=2,
    )
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("share with a mutation layer")
    auroc = stats.auroc.value
    ax.set_title("mutation layer detected" + (f"\nAUROC {auroc:.2f}" if auroc is not None else ""))
