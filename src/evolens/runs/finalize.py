"""Merge a run: evaluate every response, label its tokens, analyse every item, compute the dataset statistics and
draw the figures — from the stored traces only (never the model), so it can be re-run at will: with the exact text
tools on another machine, other detector parameters, or a layer detector that did not exist when the run was traced
(``evolens eval``).

The default layer detector is ``"auto"``: :func:`evolens.analysis.analyze_trace` with the run's detector parameters
(``run.json → config.analysis.params``). Its layer baseline follows one rule per item: an answer with at least
``params.baseline_min_tokens`` tokens (the final EOS left out) is held against its own trace's baseline (the
default of ``analyze_trace``); a shorter answer — too short for a baseline of its own, e.g. a POPE yes/no — is held
against the run's baseline, :func:`evolens.analysis.jsd_baseline` over every finished item. Each item's analysis is
written beside its trace (``items/<id>/analysis.json``, atomically), and ``results/`` receives the dataset summary
(``analysis_summary.json``) next to the statistics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Any

import numpy as np

from evolens.analysis.aggregate import AnalysisSummary, summarize
from evolens.analysis.params import DetectorParams
from evolens.analysis.trace_analysis import DEFAULT_NAME as ANALYSIS_FILE
from evolens.analysis.trace_analysis import TraceAnalysis, analyze_trace, jsd_baseline
from evolens.data.evaluation import Evaluation, Response, evaluate
from evolens.errors import StoreError
from evolens.hallucination.stats import TokenLayers, layer_statistics
from evolens.hallucination.token_labels import TokenLabels, label_tokens
from evolens.report.figures import write_summary_figures
from evolens.runs.options import AUTO, DetectorChoice, FinalizeOptions
from evolens.runs.yesno import YesNoMerge, write_yes_no_figure
from evolens.store.results import (
    ANALYSIS_SUMMARY,
    EVALUATION,
    STATISTICS,
    SUMMARY,
    ResultsWriter,
    answer_length,
    detector_params_of,
    generated_ids,
    item_summary,
    token_columns,
)
from evolens.store.run import RunDirectory
from evolens.trace.core import Trace, load_trace
from evolens.trace.fileformat import read_manifest

logger = logging.getLogger(__name__)

BASELINE_RULE = (
    "answers with at least params.baseline_min_tokens tokens (EOS left out) use their own trace's layer baseline; "
    "shorter answers use the run's baseline (jsd_baseline over every finished item)"
)


@dataclass
class _Merge:
    """What the merge knows of a run once its manifests are read."""

    run: RunDirectory
    status: dict[str, str]
    records: dict[str, dict[str, Any]]
    manifests: dict[str, dict[str, Any]]
    params: DetectorParams | None
    baseline: np.ndarray | None = None
    analyses: list[TraceAnalysis] = field(default_factory=list)
    n_with_run_baseline: int = 0
    yesno: YesNoMerge | None = None

    @property
    def n_layers(self) -> int | None:
        return int(next(iter(self.manifests.values()))["n_layers"]) if self.manifests else None


def finalize_run(run_dir: str | Path, options: FinalizeOptions | None = None) -> dict[str, Any]:
    """Merge a run whose items are all finished or failed into ``results/`` (atomically), reading only stored
    traces: evaluation, per-token labels, every item's analysis, the layer statistics, the analyses' dataset
    summary and, with ``options.figures``, the dataset figures (``results/figures``, PNG and SVG). Deterministic:
    merging again gives the same files.

    Args:
        run_dir: The run directory.
        options: How to merge (:class:`~evolens.runs.options.FinalizeOptions`; default: its defaults).

    Returns:
        The summary written to ``results/summary.json``.

    Raises:
        StoreError: Some items are neither finished nor failed.
        SettingsError: The options are not usable (e.g. detector parameters deeper than the model).
    """
    options = options or FinalizeOptions()
    merge = _open(RunDirectory(run_dir), options)
    evaluation = evaluate(
        (Response(k, m["text"], merge.records[k]["annotations"]) for k, m in merge.manifests.items()),
        merge.run.resources(),
        method=options.method,
        protocol=options.protocol,
        drop_unfinished=options.drop_unfinished,
    )
    with ResultsWriter(merge.run, merge_metrics=options.merge_metrics) as writer:
        judged = {it.item_id: it for it in evaluation.items}
        for item_id, record in merge.records.items():
            _merge_item(merge, options, writer, item_id, record, judged.get(item_id))
        tokens = writer.write_tables()
        writer.write_json(EVALUATION, evaluation.to_dict())
        statistics = None
        if options.layer_detector is not None and tokens.num_rows:
            assert merge.n_layers is not None
            statistics = layer_statistics(
                tokens.to_pandas(), merge.n_layers, unit=options.unit, n_bootstrap=options.n_bootstrap
            )
            writer.write_json(STATISTICS, statistics.to_dict())
        analysis_info = _write_analysis_summary(merge, options, writer)
        yesno = merge.yesno.write(writer, evaluation) if merge.yesno is not None else None
        figures: list[str] = []
        if options.figures and tokens.num_rows:
            drawn = [*write_summary_figures(writer.directory), *write_yes_no_figure(writer.directory)]
            figures = sorted(str(p.relative_to(writer.directory)) for p in drawn)
        summary = {
            "n_items": len(merge.records),
            **{s: sum(v == s for v in merge.status.values()) for s in ("done", "failed")},
            "n_tokens": tokens.num_rows,
            "evaluation": evaluation.scores(),
            "evaluation_protocol": evaluation.protocol,
            "evaluation_lines": evaluation.summary_lines() + (yesno["lines"] if yesno else []),
            "yesno": yesno,
            "statistics": statistics.summary_lines() if statistics is not None else None,
            "layer_detector": _detector_name(options.layer_detector),
            "analysis": analysis_info,
            "figures": figures,
            "files": writer.files(),
        }
        writer.write_json(SUMMARY, summary)
    return summary


def _open(run: RunDirectory, options: FinalizeOptions) -> _Merge:
    """Check that every item is settled; read the records, the manifests and the run's layer baseline."""
    run.read_manifest()
    status = run.status()
    pending = [k for k, v in status.items() if v == "pending"]
    if pending:
        raise StoreError(
            f"{len(pending)} item(s) of {run.root} are not finished (e.g. {pending[:3]}); run the same command again "
            "to finish them before merging"
        )
    params = (options.detector_params or detector_params_of(run)) if options.auto else None
    records = {r["item_id"]: r for r in (dict(rec, index=i) for i, rec in enumerate(run.items()))}
    manifests = {record["item_id"]: read_manifest(directory) for record, directory in run.iter_done()}
    merge = _Merge(
        run, status, records, manifests, params, yesno=YesNoMerge.of_run(run.read_manifest()["config"])
    )
    if params is not None and manifests:
        assert merge.n_layers is not None
        params.check_depth(merge.n_layers)
        merge.baseline = _run_baseline(run, manifests, params)
    return merge


def _merge_item(
    merge: _Merge,
    options: FinalizeOptions,
    writer: ResultsWriter,
    item_id: str,
    record: dict[str, Any],
    judgement: Any,
) -> None:
    """Label and analyse one item, and hand its rows to the writer."""
    row = {
        "item": item_id,
        "index": record["index"],
        "status": merge.status[item_id],
        "image": record.get("image"),
        "prompt": record.get("prompt"),
        "task": record.get("annotations", {}).get("task"),
    }
    if merge.status[item_id] == "failed":
        writer.add_failed(row, merge.run.failure(item_id))
        return
    directory = merge.run.item_dir(item_id)
    manifest = merge.manifests[item_id]
    labels = (
        label_tokens(manifest["tokens"], manifest["text"], judgement.mentions)
        if judgement is not None
        else TokenLabels.empty(len(manifest["tokens"]))
    )
    trace = cache(partial(load_trace, directory))  # read once, by whichever step needs it first
    layers = _item_layers(merge, options, directory, trace, manifest)
    if merge.yesno is not None:
        merge.yesno.add(item_id, record.get("annotations", {}), trace(), getattr(judgement, "answer", None))
    if layers is not None and layers.n_steps != len(manifest["tokens"]):
        raise StoreError(
            f"the layer detector returned {layers.n_steps} steps for item {item_id!r}, which has "
            f"{len(manifest['tokens'])}"
        )
    columns = token_columns(record, manifest, generated_ids(directory), labels, layers)
    writer.add_item({**row, **item_summary(manifest, judgement, labels, layers)}, columns, directory, labels)


def _item_layers(
    merge: _Merge,
    options: FinalizeOptions,
    directory: Path,
    trace: Callable[[], Trace],
    manifest: Mapping[str, Any],
) -> TokenLayers | None:
    """The item's critical and mutation layers: its analysis (written beside its trace), or the given detector's."""
    if merge.params is not None:
        short = answer_length(manifest) < merge.params.baseline_min_tokens
        baseline = merge.baseline if short else None
        analysis = analyze_trace(trace(), merge.params, baseline_jsd=baseline)
        merge.n_with_run_baseline += short and merge.baseline is not None
        analysis.save(directory / ANALYSIS_FILE)
        merge.analyses.append(analysis)
        return TokenLayers.from_analysis(analysis)
    if options.layer_detector is not None:
        assert callable(options.layer_detector)
        return options.layer_detector(trace())
    return None


def _write_analysis_summary(
    merge: _Merge, options: FinalizeOptions, writer: ResultsWriter
) -> dict[str, Any] | None:
    """The analyses' dataset summary (``analysis_summary.json``) and what ``summary.json`` says of it."""
    if merge.params is None or not merge.analyses:
        return None
    analysis_summary = summarize(merge.analyses, n_boot=options.n_bootstrap, seed=0)
    analysis_summary.save(writer.directory / ANALYSIS_SUMMARY)
    return {
        "params": merge.params.to_dict(),
        "baseline_rule": BASELINE_RULE,
        "n_items_with_run_baseline": merge.n_with_run_baseline,
        "run_baseline_jsd": merge.baseline.tolist() if merge.baseline is not None else None,
        "summary_lines": _summary_lines(analysis_summary),
    }


def _run_baseline(
    run: RunDirectory, manifests: Mapping[str, Mapping[str, Any]], params: DetectorParams
) -> np.ndarray | None:
    """The run's layer baseline when some answer is too short for its own (see the module docstring), else None."""
    if params.spike_layer_ratio <= 0:
        return None  # the spikes ignore any baseline
    if all(answer_length(m) >= params.baseline_min_tokens for m in manifests.values()):
        return None
    traces = (load_trace(directory) for _, directory in run.iter_done())
    baseline = jsd_baseline(traces, params)
    if not np.all(np.isfinite(baseline)):
        logger.warning("the run's JSD baseline is undefined (no tokens); short answers get no layer baseline")
        return None
    return baseline


def _summary_lines(summary: AnalysisSummary) -> list[str]:
    def est(e: Any, fmt: str) -> str:
        if not np.isfinite(e.value):
            return "n/a"
        interval = f" [{e.ci_low:{fmt}}, {e.ci_high:{fmt}}]" if np.isfinite(e.ci_low) else ""
        return f"{e.value:{fmt}}{interval}"

    d = summary.distributions
    return [
        f"analysis of {summary.n_tokens} tokens from {summary.n_items} items: median critical layer "
        f"{est(d['critical_layer'].median, '.1f')} (probability-based {est(d['critical_layer_prob'].median, '.1f')}, "
        f"JSD-based {est(d['critical_layer_jsd'].median, '.1f')})",
        f"mutation rate {est(summary.mutation_rate, '.1%')} of the {summary.mutation_rate.n} tokens with a critical "
        f"layer; probability- and JSD-based critical layers agree for {est(summary.agreement_rate, '.1%')} of the "
        f"{summary.agreement_rate.n} tokens with both",
    ]


def _detector_name(detector: DetectorChoice) -> str | None:
    if detector is None or isinstance(detector, str):
        return detector
    module = getattr(detector, "__module__", None) or ""
    name = getattr(detector, "__qualname__", None) or type(detector).__name__
    return f"{module}:{name}" if module else name


__all__ = ["AUTO", "BASELINE_RULE", "Evaluation", "finalize_run"]
