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

The parts, in the order a build uses them: :mod:`~evolens.report.inputs` (what to report),
:mod:`~evolens.report.item_data` (an item's extras, checked), :mod:`~evolens.report.payload` (its data for the
page's script), :mod:`~evolens.report.item_section` (its section), :mod:`~evolens.report.summary` (the run summary)
and :mod:`~evolens.report.page` (the data block and the page around it).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evolens.errors import SettingsError
from evolens.files import atomic_write_text
from evolens.metrics.tokens import first_stable_top1_layer
from evolens.report import extras as ex
from evolens.report.inputs import Source, TraceSource, iter_traces, resolve_sources
from evolens.report.item_data import ItemData, auto_extras, item_data
from evolens.report.item_section import item_section
from evolens.report.options import ReportOptions, check_report_path
from evolens.report.page import Series, data_block, new_series, page
from evolens.report.payload import TOP1_SERIES, trace_payload
from evolens.report.summary import ItemRow, RunStats, summary_section
from evolens.trace import Trace

logger = logging.getLogger(__name__)


@dataclass
class _Items:
    """What the pass over the items gathers: their sections, payloads and table rows, the colouring series and
    flags seen so far, and the run statistics (the traces themselves are not held)."""

    extras: Mapping[str, Mapping[str, Any]]
    options: ReportOptions
    judged: bool  # a run is reported: the items table has a judgement column
    series: dict[str, Series] = field(default_factory=dict)
    flag_names: list[str] = field(default_factory=list)
    stats: RunStats = field(default_factory=RunStats)
    payloads: list[dict[str, Any]] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)
    rows: list[ItemRow] = field(default_factory=list)
    seen_ids: Counter[str] = field(default_factory=Counter)

    def add(self, index: int, source: Source, trace: Trace) -> None:
        """Read item ``index``: its extras, payload, section, table row and statistics."""
        item_extras = self._given_extras(trace)
        auto, problems = auto_extras(source, trace)
        data = item_data(trace, auto, item_extras, source.run)
        data.notes[:0] = problems
        top1 = first_stable_top1_layer(trace.token_ranks())
        values = {**data.values, TOP1_SERIES: top1}
        self._observe(values, data.flags, trace.n_layers)
        self.payloads.append(self._payload(trace, data, values))
        row = self._row(index, trace, data)
        # A flag's mark depends only on the flags seen before it, so the section can be written now.
        self.sections.append(
            item_section(
                index, trace, item_extras, data, self.flag_names, self.options.image_root, row.attributes()
            )
        )
        self.stats.add(trace, data.flags, top1)
        self.rows.append(row)

    def _given_extras(self, trace: Trace) -> Mapping[str, Any]:
        self.seen_ids[trace.item_id] += 1
        item_extras = self.extras.get(trace.item_id, {})
        if item_extras and self.seen_ids[trace.item_id] > 1:
            raise SettingsError(
                f"item id {trace.item_id!r} appears more than once, so its extras are ambiguous; give the items "
                "distinct item_ids"
            )
        return item_extras

    def _observe(
        self, values: Mapping[str, list[Any]], flags: Mapping[str, list[bool]], n_layers: int
    ) -> None:
        for key, entries in values.items():
            if key not in self.series:
                self.series[key] = new_series(key)
            self.series[key].observe(entries, n_layers)
        for name in flags:
            if name not in self.flag_names:
                self.flag_names.append(name)

    def _payload(self, trace: Trace, data: ItemData, values: dict[str, list[Any]]) -> dict[str, Any]:
        payload = trace_payload(trace, topk=self.options.topk, from_layer=self.options.from_layer)
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
        return payload

    def _row(self, index: int, trace: Trace, data: ItemData) -> ItemRow:
        verdict = None
        if self.judged:
            verdict = "—" if data.verdict is None else ("hallucinated" if data.verdict else "correct")
        task = (data.evaluation or {}).get("task") or (data.annotations or {}).get("task")
        flag_counts = {k: sum(v) for k, v in data.flags.items()}
        task_name = None if task is None else str(task)
        return ItemRow(
            index, trace.item_id, trace.prompt, trace.text, trace.n_steps, verdict, flag_counts, task_name
        )


def _checked_extras(
    extras: Mapping[str, Mapping[str, Any]] | None, summary: Mapping[str, Any] | None
) -> tuple[dict[str, Mapping[str, Any]], dict[str, Any]]:
    """``extras`` and ``summary`` as dicts, their keys checked (see :mod:`evolens.report.extras`)."""
    extras = dict(extras or {})
    summary = dict(summary or {})
    ex.check_keys(summary, ex.SUMMARY_KEYS, "summary")
    for item_id, item_extras in extras.items():
        if not isinstance(item_extras, Mapping):
            raise SettingsError(f"extras[{item_id!r}] must be a mapping, got {type(item_extras).__name__}")
        ex.check_keys(item_extras, ex.ITEM_KEYS, f"extras[{item_id!r}]")
    return extras, summary


def build_report(
    traces: Iterable[TraceSource] | str | Path,
    options: ReportOptions | None = None,
    *,
    extras: Mapping[str, Mapping[str, Any]] | None = None,
    summary: Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> str:
    """The HTML of a self-contained report on ``traces``.

    Args:
        traces: :class:`~evolens.Trace` objects and/or directories: a trace directory, a run directory (its items
            in run order, with its evaluation, statistics and analyses) or a directory searched for trace
            directories; loaded one at a time. Beside each trace directory, ``analysis.json``, ``skip.json`` and
            ``geometry.json`` are read when present.
        options: How the report is rendered: title, logit-lens grid, candidates, items, images, figures,
            compression (see :class:`ReportOptions`; ``None``: the defaults).
        extras: Per-item additions keyed by ``item_id`` (see :mod:`evolens.report.extras`): ``token_values``,
            ``token_flags``, ``analysis``, ``labels``, ``evaluation``, ``annotations``, ``image``, ``skip``,
            ``geometry``, ``figures``, ``tables``, ``notes``; they win over what is read from files.
        summary: Run-level additions: ``statistics``, ``figures``, ``geometry``, ``tables``, ``notes``.
        progress: Called as ``progress(done, total)`` after each item.

    Raises:
        SettingsError: Bad extras (unknown keys, lengths that do not match an item's tokens) or a ``from_layer``
            past a trace's layers.
        StoreError: A directory holds no trace, or a trace cannot be read.
    """
    options = options or ReportOptions()
    sources, runs = resolve_sources(traces)
    if options.max_items is not None:
        sources = sources[: options.max_items]
    extras, summary = _checked_extras(extras, summary)
    items = _Items(extras, options, judged=bool(runs))
    for index, (source, trace) in enumerate(iter_traces(sources)):
        items.add(index, source, trace)
        if progress is not None:
            progress(index + 1, len(sources))
    items.stats.close(items.rows, items.flag_names)  # the items table has a column per flag, known only now
    block = data_block(items.series, items.flag_names, items.payloads)
    page_title = options.title or "evolens report"
    summary_html = summary_section(
        page_title, items.stats, items.flag_names, summary, options.summary_figures, runs
    )
    return page(page_title, summary_html, "".join(items.sections), block, items.flag_names, options.compress)


def write_report(
    path: str | Path,
    traces: Iterable[TraceSource] | str | Path,
    options: ReportOptions | None = None,
    *,
    extras: Mapping[str, Mapping[str, Any]] | None = None,
    summary: Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Build the report (see :func:`build_report` for the arguments) and write it to ``path`` atomically.

    Raises:
        SettingsError: ``path`` does not end in ``.html`` (checked before anything is read), or what
            :func:`build_report` raises.
    """
    target = check_report_path(path)
    html = build_report(traces, options, extras=extras, summary=summary, progress=progress)
    atomic_write_text(target, html)
    logger.info("report written to %s (%.1f MB)", target, len(html) / 1e6)
    return target
