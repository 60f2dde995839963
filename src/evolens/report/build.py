"""Build the self-contained HTML report of a run: one file, no network, opened by double-click.

Layout: a run summary (dataset statistics, summary figures, a table linking every item; for a run directory also
its evaluation scores, layer statistics of hallucinated vs grounded tokens, the analyses' summary and its dataset
figures), then one section per item (image, prompt, generated text with tokens coloured by critical layer or stage
and marked where a mutation layer was found or the evaluation labelled them; a click on a token shows its critical
layers, mutations and stage bar, its candidates' probability curves, its JSD column and a logit-lens grid; the
adjacent-layer JSD heatmap; the evaluation; layer-skipping, geometry, figure and table sections).

A run directory is read whole: the items in run order, ``results/`` (labels, evaluation, statistics) and the files
beside each trace (``analysis.json``, ``skip.json``, ``geometry.json``; see :mod:`evolens.report.runs`).

Untrusted strings (model outputs, prompts, dataset fields, file names) go through :mod:`evolens.report.escape`:
HTML-escaped in the markup, and script-safe JSON in the data block, which the page's script only ever writes with
``textContent``. A Content-Security-Policy allows no network access and only the report's own script (by hash).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import logging
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from evolens._version import __version__
from evolens.errors import SettingsError, StoreError
from evolens.files import atomic_write_text
from evolens.report import extras as ex
from evolens.report import items as it
from evolens.report.escape import json_for_script, short_source, text
from evolens.report.media import image_uri, trace_image
from evolens.report.payload import (
    JSD_SCALE,
    PROB_SCALE,
    TOP1_DESCRIPTION,
    TOP1_SERIES,
    first_stable_top1_layer,
    trace_payload,
)
from evolens.report.runs import RunContext, is_run_dir, load_run, read_item_files, run_root_of
from evolens.report.sections import analysis_block, cell, evaluation_block, gallery, run_section, tables
from evolens.trace import Trace
from evolens.viz.style import cmap_hex

logger = logging.getLogger(__name__)

TraceSource = Trace | str | Path
HEATMAP_TOKENS = 40  # the paper's heatmap shows the first 40 tokens
COMPRESS_ABOVE = 4_000_000  # characters of JSON above which the data block is gzip-compressed (compress=None)


def _asset(name: str) -> str:
    return (resources.files("evolens.report") / "assets" / name).read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------- inputs
def is_trace_dir(path: Path) -> bool:
    """Whether ``path`` holds a saved trace (a ``manifest.json`` of kind ``evolens.trace``).

    Raises:
        StoreError: ``path`` holds a ``manifest.json`` that cannot be read as JSON (named, rather than passed over
            as if there were no trace).
    """
    from evolens.store.trace_io import KIND, MANIFEST

    manifest = path / MANIFEST
    if not manifest.is_file():
        return False
    try:
        import json

        content = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise StoreError(f"cannot read {manifest}: {err}") from None
    return isinstance(content, dict) and content.get("kind") == KIND


def collect_trace_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Trace directories named by ``paths``: each path is a trace directory, or a directory searched (recursively,
    in sorted order, hidden entries skipped) for trace directories — e.g. a run directory.

    Raises:
        StoreError: A path does not exist, or no trace directory is found under it.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise StoreError(f"{path} does not exist")
        if not path.is_dir():
            raise StoreError(f"{path} is not a directory: give trace directories or run directories")
        if is_trace_dir(path):
            found.append(path)
            continue
        inside = sorted(
            p.parent
            for p in path.rglob("manifest.json")
            if not any(part.startswith(".") for part in p.relative_to(path).parts) and is_trace_dir(p.parent)
        )
        if not inside:
            raise StoreError(f"no evolens trace found under {path} (a trace directory holds manifest.json)")
        found.extend(inside)
    return list(dict.fromkeys(found))


@dataclass(frozen=True)
class _Source:
    """One item to report: a trace (or its directory) and the run it belongs to, if any."""

    trace: Trace | Path
    run: RunContext | None = None


def _iter_traces(sources: Sequence[_Source]) -> Iterator[tuple[_Source, Trace]]:
    for source in sources:
        yield source, source.trace if isinstance(source.trace, Trace) else Trace.load(source.trace)


def _expand(path: Path, runs: dict[Path, RunContext]) -> list[_Source]:
    """The items under ``path``: a run directory's finished items in run order (with the run), or the trace
    directories found under it (attached to their run when they are a run's items)."""

    def run_of(root: Path) -> RunContext:
        key = root.resolve()
        if key not in runs:
            runs[key] = load_run(root)
        return runs[key]

    if path.is_dir() and is_run_dir(path):
        context = run_of(path)
        return [_Source(d, context) for d in context.item_dirs()]
    sources = []
    for directory in collect_trace_dirs([path]):
        root = run_root_of(directory)
        sources.append(_Source(directory, run_of(root) if root is not None else None))
    return sources


def _resolve_sources(traces: Iterable[TraceSource] | str | Path) -> tuple[list[_Source], list[RunContext]]:
    runs: dict[Path, RunContext] = {}
    entries: Iterable[TraceSource] = [traces] if isinstance(traces, str | Path) else traces
    sources: list[_Source] = []
    for entry in entries:
        if isinstance(entry, Trace):
            sources.append(_Source(entry))
        elif isinstance(entry, str | Path):
            path = Path(entry)
            if not path.exists():
                raise StoreError(f"{path} does not exist")
            sources.extend(_expand(path, runs))
        else:
            raise SettingsError(f"expected Trace objects or directories, got {type(entry).__name__}")
    if not sources and not runs:
        raise SettingsError("no traces given: nothing to report")
    seen: dict[Path, None] = {}
    unique = []
    for source in sources:  # a directory named twice (or inside a run also given) is reported once
        if isinstance(source.trace, Path):
            key = source.trace.resolve()
            if key in seen:
                continue
            seen[key] = None
        unique.append(source)
    return unique, list(runs.values())


# ------------------------------------------------------------------------------------ item sections
@dataclass
class _Series:
    key: str
    label: str
    description: str
    kind: str = "layer"  # layer | number | category
    categories: list[str] = field(default_factory=list)
    min: float = float("inf")
    max: float = float("-inf")
    integral_in_range: bool = True

    def observe(self, values: Sequence[Any], n_layers: int) -> None:
        if self.kind == "stages":
            return  # drawn from each item's analysis
        for v in values:
            if v is None:
                continue
            if isinstance(v, str):
                self.kind = "category"
                if v not in self.categories:
                    self.categories.append(v)
                continue
            self.min, self.max = min(self.min, v), max(self.max, v)
            if not (float(v).is_integer() and 0 <= v <= n_layers):
                self.integral_in_range = False

    def to_json(self) -> dict[str, Any]:
        kind = (
            self.kind
            if self.kind in ("category", "stages")
            else "layer"
            if self.integral_in_range
            else "number"
        )
        finite = self.min <= self.max
        return {
            "key": self.key,
            "label": self.label,
            "description": self.description,
            "kind": kind,
            "categories": self.categories,
            "min": self.min if finite else 0.0,
            "max": self.max if finite else 1.0,
        }


#: Flags with a fixed mark (the others take the remaining marks in turn).
FIXED_FLAG_CLASSES = {
    it.HALLUCINATED_FLAG: "flag-0",
    it.GROUNDED_FLAG: "flag-grd",
    it.MUTATION_FLAG: "flag-mut",
}
_FLAG_STYLES = {
    "flag-0": "wavy red underline",
    "flag-1": "orange underline",
    "flag-2": "blue double underline",
    "flag-3": "purple dotted overline",
    "flag-grd": "green dotted underline",
    "flag-mut": "purple ▾ above",
}


def flag_classes(flag_names: Sequence[str]) -> dict[str, str]:
    """The CSS class that marks each flag."""
    others = [n for n in flag_names if n not in FIXED_FLAG_CLASSES]
    return {n: FIXED_FLAG_CLASSES.get(n) or f"flag-{1 + others.index(n) % 3}" for n in flag_names}


def _token_spans(tokens: Sequence[str], flags: Mapping[str, Sequence[bool]], flag_names: list[str]) -> str:
    marks = flag_classes(flag_names)
    spans = []
    for step, token in enumerate(tokens):
        classes = ["tok"] + [marks[n] for n, vals in flags.items() if vals[step]]
        spans.append(
            f'<span class="{" ".join(classes)}" data-step="{step}" tabindex="0" role="button">{text(token)}</span>'
        )
    return "".join(spans)


def _skip_section(
    tokens: Sequence[str],
    original_flags: Sequence[bool] | None,
    variants: Sequence[Mapping[str, Any]],
    *,
    original: Mapping[str, Any] | None = None,
    figure: Any = None,
    table: Mapping[str, Any] | None = None,
) -> str:
    def render(toks: Sequence[str], flags: Sequence[str | None]) -> str:
        return "".join(
            f'<span class="skip-{flag}">{text(t)}</span>' if flag else text(t)
            for t, flag in zip(toks, flags, strict=True)
        )

    if original is not None:
        tokens, first = original["tokens"], original["flags"]
    else:
        first = (
            [("hallucinated" if f else None) for f in original_flags]
            if original_flags
            else [None] * len(tokens)
        )
    rows = [f'<tr><th>original</th><td></td><td class="skip-text">{render(tokens, first)}</td></tr>']
    for v in variants:
        rows.append(
            f"<tr><th>{text(v['name'])}</th><td>{text(v['note'])}</td>"
            f'<td class="skip-text">{render(v["tokens"], v["flags"])}</td></tr>'
        )
    legend = (
        '<p class="note"><span class="skip-hallucinated">hallucinated</span> · '
        '<span class="skip-corrected">corrected</span></p>'
    )
    extra = (tables([table]) if table is not None else "") + (
        gallery([("the paper's Fig. 5 view of these outputs", figure)]) if figure is not None else ""
    )
    return (
        '<section class="skip-results"><h3>Layer skipping</h3>'
        f'<table class="skip"><thead><tr><th>variant</th><th>layers</th><th>output</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>{legend}{extra}</section>"
    )


def _image_block(trace: Trace, item_extras: Mapping[str, Any], image_root: Path | None) -> str:
    uri, note = None, ""
    if "image" in item_extras:
        uri = image_uri(item_extras["image"])
    elif trace.image is not None:
        uri, note = trace_image(trace.image.source, trace.image.sha256, image_root)
    if trace.image is None and uri is None:
        return '<div class="no-image">text-only input (no image)</div>'
    info = trace.image
    caption = text(short_source(info.source) if info else "image")
    if info:
        caption += f" · {info.width}×{info.height}"
    if note:
        caption += f" · {text(note)}"
    if uri is None:
        return f'<div class="no-image">{caption}</div>'
    return f'<figure class="item-image"><img alt="input image" src="{uri}"><figcaption>{caption}</figcaption></figure>'


@dataclass
class _ItemData:
    """An item's extras, checked and turned into what the page shows."""

    values: dict[str, list[Any]]
    flags: dict[str, list[bool]]
    payload: dict[str, Any]
    notes: list[str]
    evaluation: dict[str, Any] | None = None
    annotations: dict[str, Any] | None = None
    analysis_lines: list[str] = field(default_factory=list)
    skip: dict[str, Any] | None = None
    geometry: list[tuple[str, Any]] = field(default_factory=list)
    geometry_tables: list[dict[str, Any]] = field(default_factory=list)
    verdict: bool | None = None


def _auto_extras(source: _Source, trace: Trace) -> tuple[dict[str, Any], list[str]]:
    """What the stored files say about an item: beside its trace directory and in its run's results."""
    found: dict[str, Any] = {}
    notes: list[str] = []
    if isinstance(source.trace, Path):
        files = read_item_files(source.trace, trace.item_id)
        notes.extend(files.problems)
        for key in ("analysis", "skip", "geometry"):
            if getattr(files, key) is not None:
                found[key] = getattr(files, key)
    run = source.run
    if run is not None:
        labels = run.labels(trace.item_id)
        if labels is not None and len(labels["label"]) == trace.n_steps:
            found["labels"] = labels
        judgement = run.evaluation.item(trace.item_id) if run.evaluation is not None else None
        if judgement is not None:
            found["evaluation"] = judgement
        record = run.records.get(trace.item_id) or {}
        annotations = {
            k: v for k, v in (record.get("annotations") or {}).items() if v not in (None, "", [], {})
        }
        if annotations:
            found["annotations"] = annotations
    return found, notes


def _item_data(
    trace: Trace, auto: Mapping[str, Any], given: Mapping[str, Any], run: RunContext | None
) -> _ItemData:
    """Check an item's extras (the given ones win over those read from files) and derive series and flags."""
    where = f"extras[{trace.item_id!r}]"
    merged = {**auto, **given}
    data = _ItemData(values={}, flags={}, payload={}, notes=[])
    analysis = None
    if "analysis" in merged:
        try:
            analysis = it.coerce_analysis(merged["analysis"], trace, f"{where}.analysis")
        except SettingsError as err:
            if "analysis" in given:
                raise
            data.notes.append(f"analysis.json was not used: {err}")
    if analysis is not None:
        data.values.update(it.analysis_series(analysis))
        data.values[it.STAGE_SERIES] = [None] * trace.n_steps
        data.flags[it.MUTATION_FLAG] = [bool(ms) for ms in analysis.mutations]
        data.payload["analysis"] = it.analysis_payload(analysis)
        data.payload["extra_vocab"] = sorted(it.analysis_vocab_ids(analysis))
        run_baseline = ((run.summary or {}).get("analysis") or {}).get("run_baseline_jsd") if run else None
        data.analysis_lines = it.analysis_facts(analysis, run_baseline)
    if "labels" in merged:
        labels = it.coerce_labels(merged["labels"], trace.n_steps, f"{where}.labels")
        data.flags.update(it.label_flags(labels))
        data.payload["labels"] = labels
    if "evaluation" in merged:
        data.evaluation = ex.evaluation(merged["evaluation"], f"{where}.evaluation")
        data.verdict = data.evaluation["hallucinated"]
    if "annotations" in merged:
        data.annotations = ex.annotation_map(merged["annotations"], f"{where}.annotations")
    data.values.update(
        ex.token_series(given.get("token_values", {}), trace.n_steps, f"{where}.token_values", flags=False)
    )
    data.flags.update(
        ex.token_series(given.get("token_flags", {}), trace.n_steps, f"{where}.token_flags", flags=True)
    )
    skip = merged.get("skip")
    if skip is not None:
        from evolens.experiments.skip import SkipResult

        if isinstance(skip, SkipResult):
            converted = it.skip_extras(skip)
            original = skip.variants[0]
            data.skip = {
                "variants": ex.skip_variants(converted["skip"], f"{where}.skip"),
                "original": {"tokens": list(original.tokens), "flags": it.skip_flags(skip)[0]},
                "figure": converted["skip_figure"],
                "table": ex.tables([converted["skip_table"]], f"{where}.skip")[0],
            }
        else:
            data.skip = {"variants": ex.skip_variants(skip, f"{where}.skip")}
    geometry = merged.get("geometry")
    if geometry is not None:
        from evolens.geometry import FeatureMap

        if isinstance(geometry, FeatureMap):
            data.geometry = [("feature map of the stored geometry.json", it.geometry_figure(geometry))]
            data.geometry_tables = [it.geometry_table(geometry)]
        else:
            data.geometry = ex.figure_entries(geometry, f"{where}.geometry")
    return data


def _item_section(
    index: int,
    trace: Trace,
    item_extras: Mapping[str, Any],
    flags: Mapping[str, Sequence[bool]],
    flag_names: list[str],
    image_root: Path | None,
    data: _ItemData,
    attributes: str = "",
) -> str:
    meta = [
        ("prompt", trace.prompt),
        ("model", f"{short_source(trace.model.source)} ({trace.model.family}, {trace.n_layers} layers)"),
        ("lens", trace.lens_mode),
        ("tokens", f"{trace.n_steps} (stopped by {trace.stop_reason})"),
    ]
    meta_html = "".join(f"<dt>{text(k)}</dt><dd>{text(v)}</dd>" for k, v in meta)
    notes = data.notes + ex.notes(item_extras.get("notes", []), f"extras[{trace.item_id!r}].notes")
    notes_html = "".join(f'<p class="note">{text(n)}</p>' for n in notes)
    parts = [
        f'<section class="item" id="item-{index}" data-item="{index}"{attributes}>',
        f'<header><h2>#{index + 1} · {text(trace.item_id)}</h2><a href="#summary">back to the summary</a></header>',
        notes_html,
        f'<div class="item-head">{_image_block(trace, item_extras, image_root)}<dl class="meta">{meta_html}</dl></div>',
        "<h3>Generated text</h3>",
        '<p class="hint">Each token is coloured by the series chosen at the top (critical layer or stages when the '
        "item was analysed); click a token (or focus it and press Enter) for its critical layers, mutations and stage "
        "bar, its candidates, its JSD column and the logit-lens grid.</p>",
        f'<div class="text" data-item="{index}">{_token_spans(trace.tokens, flags, flag_names)}</div>',
        analysis_block(data.analysis_lines),
        '<div class="detail" hidden></div>',
        evaluation_block(data.evaluation, data.annotations),
        "<h3>Adjacent-layer JSD</h3>",
        '<p class="hint">Rows: generated tokens; columns: decoder layers (divergence between a layer\'s input and '
        "output). Click a row to inspect that token.</p>",
        '<div class="hm-controls"><select class="hm-view" aria-label="heatmap view">'
        '<option value="raw">JSD in bits</option>'
        '<option value="maxabs">JSD in bits, scaled per layer (MaxAbs)</option>'
        '<option value="paper">paper reduction, scaled per layer (the paper\'s Fig. 4)</option>'
        f'</select> <label><input type="checkbox" class="hm-all"> all tokens (default: first {HEATMAP_TOKENS})'
        "</label></div>",
        f'<div class="heatmap-wrap"><div class="heatmap" data-item="{index}"></div></div>',
    ]
    where = f"extras[{trace.item_id!r}]"
    if data.skip is not None:
        parts.append(
            _skip_section(
                trace.tokens,
                flags.get("hallucinated"),
                data.skip["variants"],
                original=data.skip.get("original"),
                figure=data.skip.get("figure"),
                table=data.skip.get("table"),
            )
        )
    if data.geometry:
        parts.append(
            f'<section class="geometry"><h3>Feature geometry</h3>{gallery(data.geometry)}'
            f"{tables(data.geometry_tables)}</section>"
        )
    if "figures" in item_extras:
        figures = ex.figure_entries(item_extras["figures"], f"{where}.figures")
        parts.append(f'<section class="figures"><h3>Figures</h3>{gallery(figures)}</section>')
    if "tables" in item_extras:
        entries = ex.tables(item_extras["tables"], f"{where}.tables")
        parts.append(f'<section class="tables"><h3>Tables</h3>{tables(entries)}</section>')
    parts.append("</section>")
    return "".join(parts)


# ------------------------------------------------------------------------------------------ summary
@dataclass
class _RunStats:
    n_items: int = 0
    n_tokens: list[int] = field(default_factory=list)
    models: Counter[str] = field(default_factory=Counter)
    lenses: Counter[str] = field(default_factory=Counter)
    layers: Counter[int] = field(default_factory=Counter)
    stops: Counter[str] = field(default_factory=Counter)
    with_image: int = 0
    flagged: Counter[str] = field(default_factory=Counter)
    top1: list[float] = field(default_factory=list)
    jsd_parts: list[tuple[torch.Tensor, dict[str, list[bool]]]] = field(default_factory=list)
    jsd: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    primary: str | None = None
    rows: list[str] = field(default_factory=list)
    filters: str = ""

    def group_jsd(self, primary: str | None) -> None:
        """Split every item's ``[L, T]`` JSD into the tokens flagged ``primary`` and the others (or keep all)."""
        self.primary = primary
        for jsd, flags in self.jsd_parts:
            if primary is None:
                self.jsd.setdefault("all tokens", []).append(jsd)
                continue
            mask = torch.tensor(flags.get(primary, [False] * jsd.shape[1]), dtype=torch.bool)
            self.jsd.setdefault(primary, []).append(jsd[:, mask])
            self.jsd.setdefault("other tokens", []).append(jsd[:, ~mask])
        self.jsd_parts = []

    def table(self, flag_names: Sequence[str], extra: Mapping[str, Any]) -> list[tuple[str, Any]]:
        """Rows of the statistics table (raw values; the caller escapes them)."""
        tokens = sum(self.n_tokens)
        per_item = (
            f"mean {statistics.fmean(self.n_tokens):.1f}, min {min(self.n_tokens)}, max {max(self.n_tokens)}"
            if self.n_tokens
            else "—"
        )
        rows = [
            ("items", str(self.n_items)),
            ("generated tokens", str(tokens)),
            ("tokens per item", per_item),
            ("items with an image", f"{self.with_image} ({self.n_items - self.with_image} text-only)"),
            ("models", ", ".join(f"{m} ({n})" for m, n in self.models.items())),
            ("decoder layers", ", ".join(str(n) for n in sorted(self.layers))),
            ("lens", ", ".join(f"{m} ({n})" for m, n in self.lenses.items())),
            ("stopped by", ", ".join(f"{m} ({n})" for m, n in self.stops.items())),
        ]
        for name in flag_names:
            share = self.flagged[name] / tokens if tokens else 0.0
            rows.append((f"tokens flagged {name}", f"{self.flagged[name]} ({share:.1%})"))
        if self.top1:
            rows.append((f"{TOP1_SERIES}, median", f"{statistics.median(self.top1):g}"))
        rows.extend((str(k), v) for k, v in extra.items())
        return rows

    def figures(self, flag_names: Sequence[str]) -> list[tuple[str, Any]]:
        from evolens.viz import jsd_profile_figure, layer_histogram_figure

        if len(self.layers) != 1:
            return []  # several depths: per-layer summaries would mix different layers
        n_layers = next(iter(self.layers))
        figures: list[tuple[str, Any]] = []
        if self.top1:
            fig = layer_histogram_figure(
                self.top1,
                n_layers=n_layers,
                xlabel=TOP1_SERIES,
                title=f"{TOP1_SERIES} over all generated tokens",
            )
            figures.append((f"{TOP1_SERIES}: {TOP1_DESCRIPTION}", fig))
        groups = {name: torch.cat(parts, dim=1) for name, parts in self.jsd.items() if parts}
        groups = {name: values for name, values in groups.items() if values.shape[1]}
        if groups:
            fig = jsd_profile_figure(groups, title="adjacent-layer JSD per decoder layer (mean and IQR)")
            label = "Mean JSD per decoder layer" + (f", {self.primary} tokens apart" if self.primary else "")
            figures.append((label, fig))
        return figures


def _summary_section(
    title: str,
    stats: _RunStats,
    flag_names: list[str],
    summary: Mapping[str, Any],
    summary_figures: bool,
    runs: Sequence[RunContext],
) -> str:
    extra_stats = summary.get("statistics", {})
    if not isinstance(extra_stats, Mapping):
        raise SettingsError("summary['statistics'] must map a name to a value")
    rows = "".join(
        f"<tr><th>{text(k)}</th><td>{cell(v)}</td></tr>" for k, v in stats.table(flag_names, extra_stats)
    )
    figures = stats.figures(flag_names) if summary_figures else []
    figures += ex.figure_entries(summary.get("figures", []), "summary.figures")
    geometry = ex.figure_entries(summary.get("geometry", []), "summary.geometry")
    table_entries = ex.tables(summary.get("tables", []), "summary.tables")
    notes = ex.notes(summary.get("notes", []), "summary.notes")
    flag_heads = "".join(f"<th>{text(n)}</th>" for n in flag_names)
    verdict_head = "<th>judgement</th>" if runs else ""
    parts = [
        '<section id="summary">',
        f"<h1>{text(title)}</h1>",
        f'<p class="sub">evolens {text(__version__)} report · {stats.n_items} items · self-contained, works offline</p>',
        "".join(f'<p class="note">{text(n)}</p>' for n in notes),
        "".join(run_section(run, _run_figures(run) if summary_figures else []) for run in runs),
        '<h2>Dataset statistics</h2><table class="stats"><tbody>',
        rows,
        "</tbody></table>",
        gallery(figures) if figures else "",
        f"<h2>Feature geometry</h2>{gallery(geometry)}" if geometry else "",
        f"<h2>Tables</h2>{tables(table_entries)}" if table_entries else "",
        "<h2>Items</h2>",
        stats.filters,
        '<table class="items"><thead><tr><th>#</th><th>item</th><th>prompt</th><th>tokens</th>',
        verdict_head,
        flag_heads,
        "<th>text</th></tr></thead><tbody>",
        "".join(stats.rows),
        "</tbody></table></section>",
    ]
    return "".join(parts)


def _run_figures(run: RunContext) -> list[tuple[str, Any]]:
    """The run's dataset figures, drawn from its stored token table and statistics."""
    from evolens.report.figures import summary_figures

    if run.tokens is None or run.statistics is None:
        return []
    return [
        (f.caption, f.figure) for f in summary_figures(run.tokens, run.statistics.n_layers, run.statistics)
    ]


@dataclass(frozen=True)
class _ItemRow:
    """What the items table shows of an item (kept instead of the trace, which is not held in memory)."""

    index: int
    item_id: str
    prompt: str
    text: str
    n_steps: int
    verdict: str | None
    flag_counts: dict[str, int]
    task: str | None = None

    def attributes(self) -> str:
        """What the item list's filters read (``report.js``): judgement, task, the flags with a marked token."""
        flags = "|".join(name for name, count in self.flag_counts.items() if count)
        return (
            f' data-verdict="{text(self.verdict or "")}" data-task="{text(self.task or "")}"'
            f' data-flags="{text(flags)}"'
        )

    def html(self, flag_names: Sequence[str]) -> str:
        prompt = self.prompt if len(self.prompt) <= 90 else self.prompt[:89] + "…"
        snippet = self.text if len(self.text) <= 160 else self.text[:159] + "…"
        counts = "".join(f"<td>{self.flag_counts.get(n, '—')}</td>" for n in flag_names)
        judgement = "" if self.verdict is None else f"<td>{text(self.verdict)}</td>"
        i = self.index
        return (
            f'<tr data-row="{i}"{self.attributes()}><td><a href="#item-{i}">{i + 1}</a></td>'
            f'<td><a href="#item-{i}">{text(self.item_id)}</a></td>'
            f'<td>{text(prompt)}</td><td>{self.n_steps}</td>{judgement}{counts}<td class="text">{text(snippet)}</td>'
            "</tr>"
        )


def _item_filters(rows: Sequence[_ItemRow], flag_names: Sequence[str]) -> str:
    """The item list's filters: judgement, marked tokens, task (each offered when the items differ in it)."""

    def select(key: str, label: str, values: Sequence[str], shown: Callable[[str], str]) -> str:
        if not values:
            return ""
        options = "".join(f'<option value="{text(v)}">{text(shown(v))}</option>' for v in values)
        return f'<label>{text(label)} <select data-filter="{key}"><option value="">any</option>{options}</select></label>'

    verdicts = sorted({r.verdict for r in rows if r.verdict and r.verdict != "—"})
    tasks = sorted({r.task for r in rows if r.task})
    flags = [n for n in flag_names if any(r.flag_counts.get(n) for r in rows)]
    parts = [
        select("verdict", "judgement", verdicts, str),
        select("flags", "with a token marked", flags, str),
        select("task", "task", tasks if len(tasks) > 1 else [], str),
    ]
    if not any(parts):
        return ""
    return (
        '<div class="filters" id="item-filters">Show items: '
        + "".join(parts)
        + f' <span class="note" id="filter-count">{len(rows)} of {len(rows)} items</span></div>'
    )


# -------------------------------------------------------------------------------------------- build
def build_report(
    traces: Iterable[TraceSource] | str | Path,
    *,
    extras: Mapping[str, Mapping[str, Any]] | None = None,
    summary: Mapping[str, Any] | None = None,
    title: str | None = None,
    topk: int = 5,
    from_layer: int | None = None,
    max_items: int | None = None,
    image_root: str | Path | None = None,
    summary_figures: bool = True,
    compress: bool | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> str:
    """The HTML of a self-contained report on ``traces``.

    Args:
        traces: :class:`~evolens.Trace` objects and/or directories: a trace directory, a run directory (its items
            in run order, with its evaluation, statistics and analyses) or a directory searched for trace
            directories; loaded one at a time. Beside each trace directory, ``analysis.json``, ``skip.json`` and
            ``geometry.json`` are read when present.
        extras: Per-item additions keyed by ``item_id`` (see :mod:`evolens.report.extras`): ``token_values``,
            ``token_flags``, ``analysis``, ``labels``, ``evaluation``, ``annotations``, ``image``, ``skip``,
            ``geometry``, ``figures``, ``tables``, ``notes``; they win over what is read from files.
        summary: Run-level additions: ``statistics``, ``figures``, ``geometry``, ``tables``, ``notes``.
        title: Page title (default: "evolens report").
        topk: Tokens per layer in the logit-lens grid (at most what the traces kept).
        from_layer: First layer whose top-1 tokens count as candidates (default: each trace's default, the last
            40% of its layers).
        max_items: Report only the first ``max_items`` traces.
        image_root: Where to look for image files whose recorded path is relative or has moved.
        summary_figures: Draw the run-level summary figures (top-1 layer histogram, JSD profile, and a run's
            critical/mutation layer histograms and hallucinated vs grounded comparison).
        compress: Embed the data gzip-compressed (base64; the browser decompresses it) — about 4x smaller. ``None``
            compresses when the JSON exceeds 4 MB (a few dozen items).
        progress: Called as ``progress(done, total)`` after each item.

    Raises:
        SettingsError: Bad options or extras (unknown keys, lengths that do not match an item's tokens).
        StoreError: A directory holds no trace, or a trace cannot be read.
    """
    if topk < 1:
        raise SettingsError(f"topk must be >= 1, got {topk}")
    if max_items is not None and max_items < 1:
        raise SettingsError(f"max_items must be >= 1, got {max_items}")
    sources, runs = _resolve_sources(traces)
    if max_items is not None:
        sources = sources[:max_items]
    extras = dict(extras or {})
    summary = dict(summary or {})
    ex.check_keys(summary, ex.SUMMARY_KEYS, "summary")
    for item_id, item_extras in extras.items():
        if not isinstance(item_extras, Mapping):
            raise SettingsError(f"extras[{item_id!r}] must be a mapping, got {type(item_extras).__name__}")
        ex.check_keys(item_extras, ex.ITEM_KEYS, f"extras[{item_id!r}]")
    root = Path(image_root) if image_root is not None else None

    series: dict[str, _Series] = {}
    flag_names: list[str] = []
    stats = _RunStats()
    payloads: list[dict[str, Any]] = []
    sections: list[str] = []
    seen_ids: Counter[str] = Counter()
    item_rows: list[_ItemRow] = []
    for index, (source, trace) in enumerate(_iter_traces(sources)):
        seen_ids[trace.item_id] += 1
        item_extras = extras.get(trace.item_id, {})
        if item_extras and seen_ids[trace.item_id] > 1:
            raise SettingsError(
                f"item id {trace.item_id!r} appears more than once, so its extras are ambiguous; give the items "
                "distinct item_ids"
            )
        auto, problems = _auto_extras(source, trace)
        data = _item_data(trace, auto, item_extras, source.run)
        data.notes[:0] = problems
        top1 = first_stable_top1_layer(trace.token_ranks())
        values = {**data.values, TOP1_SERIES: top1}
        for key, entries in values.items():
            if key not in series:
                series[key] = _new_series(key)
            series[key].observe(entries, trace.n_layers)
        for name in data.flags:
            if name not in flag_names:
                flag_names.append(name)

        payload = trace_payload(trace, topk=topk, from_layer=from_layer)
        for token_id in data.payload.pop("extra_vocab", []):
            payload["vocab"].setdefault(str(token_id), trace.vocab.get(token_id, f"<{token_id}>"))
        payload.update(
            {
                "id": trace.item_id,
                "values": values,
                "flags": {k: [int(v) for v in vs] for k, vs in data.flags.items()},
                "analysis": data.payload.get("analysis"),
                "labels": data.payload.get("labels"),
            }
        )
        payloads.append(payload)
        verdict = None
        if runs:
            verdict = "—" if data.verdict is None else ("hallucinated" if data.verdict else "correct")
        task = (data.evaluation or {}).get("task") or (data.annotations or {}).get("task")
        row = _ItemRow(index, trace.item_id, trace.prompt, trace.text, trace.n_steps, verdict,
                       {k: sum(v) for k, v in data.flags.items()}, None if task is None else str(task))  # fmt: skip
        # A flag's mark depends only on the flags seen before it, so the section can be written now.
        sections.append(
            _item_section(index, trace, item_extras, data.flags, flag_names, root, data, row.attributes())
        )

        stats.n_items += 1
        stats.n_tokens.append(trace.n_steps)
        stats.models[short_source(trace.model.source)] += 1
        stats.lenses[trace.lens_mode] += 1
        stats.layers[trace.n_layers] += 1
        stats.stops[trace.stop_reason] += 1
        stats.with_image += trace.image is not None
        stats.top1.extend(float(v) for v in top1 if v is not None)
        for name, vs in data.flags.items():
            stats.flagged[name] += sum(vs)
        stats.jsd_parts.append((trace.jsd("bits"), data.flags))
        item_rows.append(row)
        if progress is not None:
            progress(index + 1, len(sources))

    # The items table has a column per flag, known once every item is read.
    stats.rows = [row.html(flag_names) for row in item_rows]
    stats.filters = _item_filters(item_rows, flag_names)
    primary: str | None = flag_names[0] if flag_names else None
    if it.HALLUCINATED_FLAG in flag_names:
        primary = it.HALLUCINATED_FLAG
    stats.group_jsd(primary)
    ordered = [s for s in series.values() if s.key != TOP1_SERIES] + [series[TOP1_SERIES]] if series else []
    default_key = next((s.key for s in ordered if s.key != TOP1_SERIES), TOP1_SERIES)
    marks = flag_classes(flag_names)
    data_block = {
        "version": 1,
        "prob_scale": PROB_SCALE,
        "jsd_scale": JSD_SCALE,
        "heatmap_tokens": HEATMAP_TOKENS,
        "series": [s.to_json() for s in ordered],
        "default_series": default_key,
        "flags": flag_names,
        "flag_classes": marks,
        "toggle": [it.CRITICAL_SERIES, it.STAGE_SERIES],
        "stage_names": STAGE_LABELS,
        "palettes": {
            "values": cmap_hex("viridis", 11),
            "jsd": cmap_hex("Purples", 9),
            "candidates": cmap_hex("tab20", 20),
            "categories": cmap_hex("tab10", 10),
            "stages": STAGE_COLOURS,
        },
        "items": payloads,
    }
    page_title = title or "evolens report"
    summary_html = _summary_section(page_title, stats, flag_names, summary, summary_figures, runs)
    return _page(page_title, summary_html, "".join(sections), data_block, flag_names, compress)


#: Display names and pale colours of the stages (rapid evolution, stabilisation, mutation, undetermined).
STAGE_LABELS = {"0": "rapid evolution", "1": "stabilization", "2": "mutation", "-1": "undetermined"}
STAGE_COLOURS = {"0": "#fdbf6f", "1": "#b2df8a", "2": "#fb9a99", "-1": "#e5e5e5"}


def _new_series(key: str) -> _Series:
    if key == TOP1_SERIES:
        return _Series(TOP1_SERIES, TOP1_SERIES, TOP1_DESCRIPTION)
    if key == it.STAGE_SERIES:
        return _Series(key, "stages across layers", it.SERIES_DESCRIPTIONS[key], kind="stages")
    description = it.SERIES_DESCRIPTIONS.get(key, f"{key} (given with the report's extra data)")
    return _Series(key, key, description)


def _data_block(data: Mapping[str, Any], compress: bool | None) -> str:
    encoded = json_for_script(data)
    if compress is False or (compress is None and len(encoded) <= COMPRESS_ABOVE):
        return f'<script type="application/json" id="evolens-data">{encoded}</script>'
    packed = base64.b64encode(gzip.compress(encoded.encode("utf-8"), compresslevel=6, mtime=0)).decode(
        "ascii"
    )
    return f'<script type="application/octet-stream" id="evolens-data" data-encoding="gzip+base64">{packed}</script>'


def _page(
    title: str,
    summary_html: str,
    items_html: str,
    data: Mapping[str, Any],
    flag_names: list[str],
    compress: bool | None,
) -> str:
    script = _asset("report.js")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    csp = (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )
    marks = flag_classes(flag_names)
    flag_legend = " ".join(
        f'<span class="legend-flag"><span class="{marks[name]}">{text(name)}</span> <span class="note">('
        f"{_FLAG_STYLES[marks[name]]}{': ' + it.FLAG_DESCRIPTIONS[name] if name in it.FLAG_DESCRIPTIONS else ''})"
        "</span></span>"
        for name in flag_names
    )
    controls = (
        '<div class="controls"><span><label for="series">Colour tokens by</label> <select id="series"></select></span>'
        '<span class="toggle" id="colour-toggle" role="group" aria-label="colour by" hidden></span>'
        '<span class="scale" id="scale"></span>'
        + (f"<span><strong>Marked:</strong> {flag_legend}</span>" if flag_names else "")
        + "</div>"
    )
    return "".join(
        [
            "<!DOCTYPE html>\n",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{text(csp)}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta name="generator" content="evolens">',
            '<link rel="icon" href="data:,">',
            f"<title>{text(title)}</title>",
            f"<style>{_asset('report.css')}</style></head><body>",
            "<noscript><p>This report draws its charts with JavaScript; the texts and tables below are readable "
            "without it.</p></noscript>",
            controls,
            summary_html,
            items_html,
            _data_block(data, compress),
            f"<script>{script}</script>",
            "</body></html>\n",
        ]
    )


def write_report(path: str | Path, traces: Iterable[TraceSource] | str | Path, **options: Any) -> Path:
    """Build the report (see :func:`build_report` for the options) and write it to ``path`` atomically."""
    target = Path(path)
    if target.suffix.lower() not in (".html", ".htm"):
        raise SettingsError(f"the report is an HTML file: give a path ending in .html, got {target.name!r}")
    html = build_report(traces, **options)
    atomic_write_text(target, html)
    logger.info("report written to %s (%.1f MB)", target, len(html) / 1e6)
    return target
