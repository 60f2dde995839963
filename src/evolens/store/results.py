"""The merged results of a run directory: evaluate, label tokens, analyse and count layers, write ``results/``; read
them back.

:func:`finalize_run` needs every item finished or failed. It reads the stored traces (never the model), so it can be
re-run at will — with the exact text tools on another machine, other detector parameters, or a layer detector that
did not exist when the run was traced (``evolens eval``).

The default layer detector is ``"auto"``: :func:`evolens.analysis.analyze_trace` with the run's detector parameters
(``run.json → config.analysis.params``). Its layer baseline follows one rule per item: an answer with at least
``params.baseline_min_tokens`` tokens (the final EOS left out) is held against its own trace's baseline (the
default of ``analyze_trace``); a shorter answer — too short for a baseline of its own, e.g. a POPE yes/no — is held
against the run's baseline, :func:`evolens.analysis.jsd_baseline` over every finished item. Each item's analysis is
written beside its trace (``items/<id>/analysis.json``, atomically), and ``results/`` receives the dataset summary
(``analysis_summary.json``) next to the statistics.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from safetensors import SafetensorError, safe_open

from evolens.analysis.aggregate import AnalysisSummary, summarize
from evolens.analysis.params import DetectorParams
from evolens.analysis.trace_analysis import DEFAULT_NAME as ANALYSIS_FILE
from evolens.analysis.trace_analysis import TraceAnalysis, analyze_trace, jsd_baseline
from evolens.data.evaluation import Evaluation, Response, evaluate
from evolens.data.text import MethodName
from evolens.errors import SettingsError, StoreError
from evolens.files import atomic_directory
from evolens.hallucination.stats import LayerDetector, LayerStatistics, TokenLayers, Unit, layer_statistics
from evolens.hallucination.token_labels import TokenLabels, label_tokens
from evolens.store.run import RunDirectory, dumps
from evolens.store.trace_io import METRICS, TENSORS, load_trace, read_manifest

if TYPE_CHECKING:
    import pandas as pd

    from evolens.trace import Trace

logger = logging.getLogger(__name__)

ITEMS_TABLE = "items.parquet"
TOKENS_TABLE = "tokens.parquet"
METRICS_TABLE = "metrics.parquet"
EVALUATION = "evaluation.json"
STATISTICS = "statistics.json"
ANALYSIS_SUMMARY = "analysis_summary.json"
SUMMARY = "summary.json"
FIGURES = "figures"

AUTO: Literal["auto"] = "auto"
#: The layer detector of a run: ``"auto"`` (the analysis with the run's detector parameters), any function
#: ``Trace -> TokenLayers``, or ``None`` (no layer columns, no statistics).
DetectorChoice = LayerDetector | Literal["auto"] | None
#: Draws dataset figures from the stored results in a results directory into ``<dir>/figures``; returns the files.
FigureWriter = Callable[[Path], Sequence[Path]]
BASELINE_RULE = (
    "answers with at least params.baseline_min_tokens tokens (EOS left out) use their own trace's layer baseline; "
    "shorter answers use the run's baseline (jsd_baseline over every finished item)"
)

_TOKEN_SCHEMA = pa.schema(
    [
        ("item", pa.string()),
        ("index", pa.int32()),
        ("step", pa.int32()),
        ("token_id", pa.int32()),
        ("token", pa.string()),
        ("label", pa.string()),
        ("object", pa.string()),
        ("mention", pa.int32()),
        ("first", pa.bool_()),
        ("is_eos", pa.bool_()),
        ("critical_layer", pa.int16()),
        ("mutation_layers", pa.list_(pa.int16())),
        ("mutation_score", pa.float32()),
        ("critical_layer_prob", pa.int16()),
        ("critical_layer_jsd", pa.int16()),
    ]
)


def _generated_ids(directory: Path) -> list[int]:
    try:
        with safe_open(str(directory / TENSORS), framework="pt") as fh:
            return [int(i) for i in fh.get_tensor("generated_ids").tolist()]
    except (OSError, SafetensorError) as err:
        raise StoreError(f"cannot read {directory / TENSORS} (corrupt or truncated?): {err}") from None


def _item_rows(
    record: dict[str, Any],
    manifest: dict[str, Any],
    token_ids: list[int],
    labels: TokenLabels,
    layers: TokenLayers | None,
) -> dict[str, list[Any]]:
    n = len(manifest["tokens"])
    return {
        "item": [record["item_id"]] * n,
        "index": [record["index"]] * n,
        "step": list(range(n)),
        "token_id": token_ids,
        "token": list(manifest["tokens"]),
        "label": labels.labels,
        "object": labels.objects,
        "mention": labels.mention,
        "first": labels.first,
        "is_eos": [manifest["stop_reason"] == "eos" and s == n - 1 for s in range(n)],
        "critical_layer": layers.critical if layers else [None] * n,
        "mutation_layers": layers.mutations if layers else [None] * n,
        "mutation_score": layers.scores if layers and layers.scores is not None else [None] * n,
        "critical_layer_prob": layers.critical_prob
        if layers and layers.critical_prob is not None
        else [None] * n,
        "critical_layer_jsd": layers.critical_jsd
        if layers and layers.critical_jsd is not None
        else [None] * n,
    }


def detector_params_of(run: RunDirectory | str | Path) -> DetectorParams:
    """The detector parameters a run was created with (``run.json → config.analysis.params``; the defaults for a
    run created before they were recorded)."""
    run = run if isinstance(run, RunDirectory) else RunDirectory(run)
    stored = (run.read_manifest()["config"].get("analysis") or {}).get("params")
    return DetectorParams.from_dict(stored) if stored is not None else DetectorParams()


def coerce_params(params: DetectorParams | Mapping[str, Any] | None) -> DetectorParams | None:
    """``params`` as :class:`DetectorParams` (a mapping is checked key by key; ``None`` stays ``None``)."""
    if params is None or isinstance(params, DetectorParams):
        return params
    if not isinstance(params, Mapping):
        raise SettingsError(
            f"detector_params must be DetectorParams or a mapping, got {type(params).__name__}"
        )
    return DetectorParams.from_dict(params)


def answer_length(manifest: Mapping[str, Any]) -> int:
    """Generated tokens of a stored trace without its final EOS token (what a trace's own layer baseline counts)."""
    n = int(manifest["n_steps"])
    return n - 1 if manifest["stop_reason"] == "eos" and n else n


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


def finalize_run(
    run_dir: str | Path,
    *,
    method: MethodName = "auto",
    layer_detector: DetectorChoice = AUTO,
    detector_params: DetectorParams | Mapping[str, Any] | None = None,
    unit: Unit = "first_token",
    n_bootstrap: int = 1000,
    merge_metrics: bool = True,
    figure_writer: FigureWriter | None = None,
) -> dict[str, Any]:
    """Evaluate every finished item, label its tokens, analyse and count layers, write ``results/`` (atomically).

    This is the store-level merge; :func:`evolens.finalize_run` calls it and adds the dataset figures.

    Args:
        run_dir: The run directory.
        method: Text tools for the benchmark evaluation (``"auto"``, ``"exact"``, ``"fallback"``).
        layer_detector: ``"auto"`` (default): :func:`evolens.analysis.analyze_trace` on every item, written to
            ``items/<id>/analysis.json``, with the layer baseline rule of the module docstring; or any function
            ``Trace -> TokenLayers`` (existing ``analysis.json`` files are left as they are); or ``None``: the layer
            columns stay empty and no statistics are written.
        detector_params: Parameters of the ``"auto"`` detector (default: the run's, from ``run.json``).
        unit: Unit of the hallucinated-vs-grounded statistics (``"first_token"`` or ``"all_tokens"``).
        n_bootstrap: Bootstrap replicates of the statistics' and the analysis summary's intervals.
        merge_metrics: Also write the merged long table (``metrics.parquet``; one row per item × step × layer).
        figure_writer: Called with the (temporary) results directory once its tables and statistics are written, to
            draw figures into ``figures/`` of it (see :func:`evolens.report.figures.write_summary_figures`).

    Returns:
        The summary written to ``results/summary.json``.

    Raises:
        StoreError: Some items are neither finished nor failed.
        SettingsError: ``layer_detector`` or ``detector_params`` is not usable.
    """
    auto = isinstance(layer_detector, str)
    if auto and layer_detector != AUTO:
        raise SettingsError(f"layer_detector must be 'auto', a function or None, got {layer_detector!r}")
    if layer_detector is not None and not auto and not callable(layer_detector):
        raise SettingsError(
            f"layer_detector must be 'auto', a function or None, got {type(layer_detector).__name__}"
        )
    run = RunDirectory(run_dir)
    run.read_manifest()
    status = run.status()
    pending = [k for k, v in status.items() if v == "pending"]
    if pending:
        raise StoreError(
            f"{len(pending)} item(s) of {run.root} are not finished (e.g. {pending[:3]}); run the same command again "
            "to finish them before merging"
        )
    params = (coerce_params(detector_params) or detector_params_of(run)) if auto else None
    records = {r["item_id"]: r for r in (dict(rec, index=i) for i, rec in enumerate(run.items()))}
    manifests: dict[str, dict[str, Any]] = {}
    for record, directory in run.iter_done():
        manifests[record["item_id"]] = read_manifest(directory)
    n_layers = int(next(iter(manifests.values()))["n_layers"]) if manifests else None
    baseline = None
    if params is not None and manifests:
        assert n_layers is not None
        params.check_depth(n_layers)
        baseline = _run_baseline(run, manifests, params)
    evaluation = evaluate(
        (Response(k, m["text"], records[k]["annotations"]) for k, m in manifests.items()),
        run.resources(),
        method=method,
    )
    judged = {it.item_id: it for it in evaluation.items}

    analyses: list[TraceAnalysis] = []
    n_with_run_baseline = 0
    with atomic_directory(run.results_dir, overwrite=True) as tmp:
        token_batches: list[pa.RecordBatch] = []
        item_rows: list[dict[str, Any]] = []
        metrics_writer: pq.ParquetWriter | None = None
        try:
            for item_id, record in records.items():
                row = {
                    "item": item_id,
                    "index": record["index"],
                    "status": status[item_id],
                    "image": record.get("image"),
                    "prompt": record.get("prompt"),
                    "task": record.get("annotations", {}).get("task"),
                }
                if status[item_id] == "failed":
                    failure = run.failure(item_id)
                    item_rows.append({**row, "error": failure["error"], "error_message": failure["message"]})
                    continue
                directory = run.item_dir(item_id)
                manifest = manifests[item_id]
                judgement = judged.get(item_id)
                labels = (
                    label_tokens(manifest["tokens"], manifest["text"], judgement.mentions)
                    if judgement is not None
                    else TokenLabels.empty(len(manifest["tokens"]))
                )
                layers = None
                if params is not None:
                    short = answer_length(manifest) < params.baseline_min_tokens
                    analysis = analyze_trace(
                        load_trace(directory), params, baseline_jsd=baseline if short else None
                    )
                    n_with_run_baseline += short and baseline is not None
                    analysis.save(directory / ANALYSIS_FILE)
                    analyses.append(analysis)
                    layers = TokenLayers.from_analysis(analysis)
                elif layer_detector is not None:
                    assert callable(layer_detector)
                    layers = layer_detector(load_trace(directory))
                if layers is not None and layers.n_steps != len(manifest["tokens"]):
                    raise StoreError(
                        f"the layer detector returned {layers.n_steps} steps for item {item_id!r}, which has "
                        f"{len(manifest['tokens'])}"
                    )
                columns = _item_rows(record, manifest, _generated_ids(directory), labels, layers)
                token_batches.append(pa.RecordBatch.from_pydict(columns, schema=_TOKEN_SCHEMA))
                item_rows.append({**row, **_item_summary(manifest, judgement, labels, layers)})
                if merge_metrics:
                    table = _labelled_metrics(pq.read_table(directory / METRICS), labels)
                    if metrics_writer is None:
                        metrics_writer = pq.ParquetWriter(
                            tmp / METRICS_TABLE, table.schema, compression="zstd"
                        )
                    metrics_writer.write_table(table)
        finally:
            if metrics_writer is not None:
                metrics_writer.close()
        tokens = pa.Table.from_batches(token_batches, schema=_TOKEN_SCHEMA)
        pq.write_table(tokens, tmp / TOKENS_TABLE, compression="zstd")
        pq.write_table(_items_table(item_rows), tmp / ITEMS_TABLE, compression="zstd")
        (tmp / EVALUATION).write_text(dumps(evaluation.to_dict()), encoding="utf-8")
        statistics = None
        if layer_detector is not None and tokens.num_rows:
            assert n_layers is not None
            statistics = layer_statistics(tokens.to_pandas(), n_layers, unit=unit, n_bootstrap=n_bootstrap)
            (tmp / STATISTICS).write_text(dumps(statistics.to_dict()), encoding="utf-8")
        analysis_info = None
        if params is not None and analyses:
            analysis_summary = summarize(analyses, n_boot=n_bootstrap, seed=0)
            analysis_summary.save(tmp / ANALYSIS_SUMMARY)
            analysis_info = {
                "params": params.to_dict(),
                "baseline_rule": BASELINE_RULE,
                "n_items_with_run_baseline": n_with_run_baseline,
                "run_baseline_jsd": baseline.tolist() if baseline is not None else None,
                "summary_lines": _summary_lines(analysis_summary),
            }
        figures: list[str] = []
        if figure_writer is not None and tokens.num_rows:
            figures = sorted(str(p.relative_to(tmp)) for p in figure_writer(tmp))
        counts = {s: sum(v == s for v in status.values()) for s in ("done", "failed")}
        summary = {
            "n_items": len(records),
            **counts,
            "n_tokens": tokens.num_rows,
            "evaluation": evaluation.scores(),
            "evaluation_lines": evaluation.summary_lines(),
            "statistics": statistics.summary_lines() if statistics is not None else None,
            "layer_detector": _detector_name(layer_detector),
            "analysis": analysis_info,
            "figures": figures,
            "files": [*sorted(p.name for p in tmp.iterdir()), SUMMARY],
        }
        (tmp / SUMMARY).write_text(dumps(summary), encoding="utf-8")
    return summary


def _detector_name(detector: DetectorChoice) -> str | None:
    if detector is None or isinstance(detector, str):
        return detector
    module = getattr(detector, "__module__", None) or ""
    name = getattr(detector, "__qualname__", None) or type(detector).__name__
    return f"{module}:{name}" if module else name


def _item_summary(
    manifest: dict[str, Any], judgement: Any, labels: TokenLabels, layers: TokenLayers | None
) -> dict[str, Any]:
    mentions = judgement.mentions if judgement is not None else ()
    critical = [c for c in layers.critical if c is not None] if layers else []
    return {
        "text": manifest["text"],
        "n_steps": manifest["n_steps"],
        "stop_reason": manifest["stop_reason"],
        "hallucinated": judgement.hallucinated if judgement is not None else None,
        "answer": judgement.answer if judgement is not None else None,
        "truth": judgement.truth if judgement is not None else None,
        "n_mentions": len(mentions),
        "n_hallucinated_mentions": sum(m.label == "hallucinated" for m in mentions),
        "n_grounded_mentions": sum(m.label == "grounded" for m in mentions),
        "median_critical_layer": float(np.median(critical)) if critical else None,
        "share_with_mutation": (sum(bool(m) for m in layers.mutations) / layers.n_steps)
        if layers and layers.n_steps
        else None,
    }


_ITEM_SCHEMA = pa.schema(
    [
        ("item", pa.string()),
        ("index", pa.int32()),
        ("status", pa.string()),
        ("image", pa.string()),
        ("prompt", pa.string()),
        ("task", pa.string()),
        ("text", pa.string()),
        ("n_steps", pa.int32()),
        ("stop_reason", pa.string()),
        ("hallucinated", pa.bool_()),
        ("answer", pa.string()),
        ("truth", pa.string()),
        ("n_mentions", pa.int32()),
        ("n_hallucinated_mentions", pa.int32()),
        ("n_grounded_mentions", pa.int32()),
        ("median_critical_layer", pa.float32()),
        ("share_with_mutation", pa.float32()),
        ("error", pa.string()),
        ("error_message", pa.string()),
    ]
)


def _items_table(rows: list[dict[str, Any]]) -> pa.Table:
    columns = {name: [row.get(name) for row in rows] for name in _ITEM_SCHEMA.names}
    return pa.table(columns, schema=_ITEM_SCHEMA)


def _labelled_metrics(table: pa.Table, labels: TokenLabels) -> pa.Table:
    steps = table.column("step").to_numpy()
    return (
        table.append_column("label", pa.array([labels.labels[s] for s in steps], type=pa.string()))
        .append_column("object", pa.array([labels.objects[s] for s in steps], type=pa.string()))
        .append_column("first", pa.array([labels.first[s] for s in steps], type=pa.bool_()))
    )


class RunResults:
    """Read a finished run directory: tables, evaluation, statistics and each item's trace (no model needed).

    Args:
        run_dir: The run directory (``results/`` is written by :func:`finalize_run`).
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run = RunDirectory(run_dir)
        self.manifest = self.run.read_manifest()
        if not (self.run.results_dir / SUMMARY).is_file():
            raise StoreError(
                f"{self.run.root} has no merged results yet; finish the run (run the same command again) or call "
                "evolens eval on it"
            )

    @property
    def root(self) -> Path:
        return self.run.root

    def _read_json(self, name: str) -> Any:
        return json.loads((self.run.results_dir / name).read_text(encoding="utf-8"))

    def summary(self) -> dict[str, Any]:
        return dict(self._read_json(SUMMARY))

    def items(self) -> pd.DataFrame:
        """One row per item (see :data:`_ITEM_SCHEMA`)."""
        return pq.read_table(self.run.results_dir / ITEMS_TABLE).to_pandas()

    def tokens(self) -> pd.DataFrame:
        """One row per generated token, with its label and layers."""
        return pq.read_table(self.run.results_dir / TOKENS_TABLE).to_pandas()

    def metrics(self, columns: list[str] | None = None) -> pd.DataFrame:
        """The merged long table (item × step × layer), optionally only some columns."""
        path = self.run.results_dir / METRICS_TABLE
        if not path.is_file():
            raise StoreError(f"{self.run.root} was merged without the long table (merge_metrics=False)")
        return pq.read_table(path, columns=columns).to_pandas()

    def evaluation(self) -> Evaluation:
        return Evaluation.from_dict(self._read_json(EVALUATION))

    def statistics(self) -> LayerStatistics | None:
        path = self.run.results_dir / STATISTICS
        return LayerStatistics.from_dict(self._read_json(STATISTICS)) if path.is_file() else None

    def analysis_summary(self) -> AnalysisSummary | None:
        """The dataset summary of the ``"auto"`` analyses (medians with intervals, agreement), if they ran."""
        path = self.run.results_dir / ANALYSIS_SUMMARY
        return AnalysisSummary.load(path) if path.is_file() else None

    def analysis(self, item_id: str) -> TraceAnalysis | None:
        """The stored analysis of a finished item (``items/<id>/analysis.json``), or ``None`` when it has none."""
        path = self.run.item_dir(item_id) / ANALYSIS_FILE
        return TraceAnalysis.load(path) if path.is_file() else None

    def figures(self) -> list[Path]:
        """The dataset figures in ``results/figures`` (PNG and SVG), sorted."""
        folder = self.run.results_dir / FIGURES
        return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []

    def trace(self, item_id: str) -> Trace:
        """The stored trace of a finished item."""
        directory = self.run.item_dir(item_id)
        if not directory.is_dir():
            raise StoreError(f"item {item_id!r} has no trace in {self.run.root} (failed, or not in the run)")
        return load_trace(directory)

    def item_ids(self) -> Iterator[str]:
        for record in self.run.items():
            yield str(record["item_id"])
