"""The run summary at the top of the page: dataset statistics gathered item by item, the summary figures, each
run's section, and the table (with its filters) that links every item."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from evolens._version import __version__
from evolens.errors import SettingsError
from evolens.report import extras as ex
from evolens.report.blocks import cell, gallery, tables
from evolens.report.escape import short_source, text
from evolens.report.items import HALLUCINATED_FLAG
from evolens.report.payload import TOP1_DESCRIPTION, TOP1_SERIES
from evolens.report.runs import RunContext
from evolens.report.sections import run_section
from evolens.trace import Trace


@dataclass
class RunStats:
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

    def add(self, trace: Trace, flags: dict[str, list[bool]], top1: Sequence[int | None]) -> None:
        """Count one item in: its trace, its token flags and its tokens' first stable top-1 layers."""
        self.n_items += 1
        self.n_tokens.append(trace.n_steps)
        self.models[short_source(trace.model.source)] += 1
        self.lenses[trace.lens_mode] += 1
        self.layers[trace.n_layers] += 1
        self.stops[trace.stop_reason] += 1
        self.with_image += trace.image is not None
        self.top1.extend(float(v) for v in top1 if v is not None)
        for name, vs in flags.items():
            self.flagged[name] += sum(vs)
        self.jsd_parts.append((trace.jsd("bits"), flags))

    def close(self, item_rows: Sequence[ItemRow], flag_names: list[str]) -> None:
        """Once every item is read: the items table (a column per flag) and the JSD split by the primary flag
        (hallucinated when some token has it, else the first flag)."""
        self.rows = [row.html(flag_names) for row in item_rows]
        self.filters = item_filters(item_rows, flag_names)
        primary: str | None = flag_names[0] if flag_names else None
        if HALLUCINATED_FLAG in flag_names:
            primary = HALLUCINATED_FLAG
        self.group_jsd(primary)

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


def summary_section(
    title: str,
    stats: RunStats,
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
class ItemRow:
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


def item_filters(rows: Sequence[ItemRow], flag_names: Sequence[str]) -> str:
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
