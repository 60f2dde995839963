"""The merged results of a run directory, ``results/``: the file names, the tables' schemas, an atomic writer and
:class:`RunResults`, which reads them back.

What goes in them — evaluation, per-token labels, the analyses and the statistics — is computed by the run pipeline,
:func:`evolens.runs.finalize_run`; this module only writes and reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from safetensors import SafetensorError, safe_open

from evolens.analysis.aggregate import AnalysisSummary
from evolens.analysis.params import DetectorParams
from evolens.analysis.trace_analysis import DEFAULT_NAME as ANALYSIS_FILE
from evolens.analysis.trace_analysis import TraceAnalysis
from evolens.data.evaluation import Evaluation
from evolens.errors import StoreError
from evolens.files import atomic_directory
from evolens.hallucination.stats import LayerStatistics, TokenLayers
from evolens.hallucination.token_labels import TokenLabels
from evolens.store.run import RunDirectory, dumps
from evolens.trace.core import load_trace
from evolens.trace.fileformat import METRICS, TENSORS

if TYPE_CHECKING:
    import pandas as pd

    from evolens.trace import Trace

ITEMS_TABLE = "items.parquet"
TOKENS_TABLE = "tokens.parquet"
METRICS_TABLE = "metrics.parquet"
EVALUATION = "evaluation.json"
STATISTICS = "statistics.json"
ANALYSIS_SUMMARY = "analysis_summary.json"
SUMMARY = "summary.json"
FIGURES = "figures"

TOKEN_SCHEMA = pa.schema(
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


def generated_ids(directory: Path) -> list[int]:
    try:
        with safe_open(str(directory / TENSORS), framework="pt") as fh:
            return [int(i) for i in fh.get_tensor("generated_ids").tolist()]
    except (OSError, SafetensorError) as err:
        raise StoreError(f"cannot read {directory / TENSORS} (corrupt or truncated?): {err}") from None


def token_columns(
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


def answer_length(manifest: Mapping[str, Any]) -> int:
    """Generated tokens of a stored trace without its final EOS token (what a trace's own layer baseline counts)."""
    n = int(manifest["n_steps"])
    return n - 1 if manifest["stop_reason"] == "eos" and n else n


def item_summary(
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


ITEM_SCHEMA = pa.schema(
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


def items_table(rows: list[dict[str, Any]]) -> pa.Table:
    columns = {name: [row.get(name) for row in rows] for name in ITEM_SCHEMA.names}
    return pa.table(columns, schema=ITEM_SCHEMA)


def labelled_metrics(table: pa.Table, labels: TokenLabels) -> pa.Table:
    steps = table.column("step").to_numpy()
    return (
        table.append_column("label", pa.array([labels.labels[s] for s in steps], type=pa.string()))
        .append_column("object", pa.array([labels.objects[s] for s in steps], type=pa.string()))
        .append_column("first", pa.array([labels.first[s] for s in steps], type=pa.bool_()))
    )


class ResultsWriter:
    """Writes ``results/`` atomically: the directory appears whole when the ``with`` block ends without error, and
    is left as it was when it raises.

    Items are added in order (:meth:`add_item`, :meth:`add_failed`); the tables are written at the end. The merged
    long table is streamed item by item (it can be larger than memory).
    """

    def __init__(self, run: RunDirectory, *, merge_metrics: bool) -> None:
        self._run = run
        self._merge_metrics = merge_metrics
        self._stack = ExitStack()
        self._token_batches: list[pa.RecordBatch] = []
        self._item_rows: list[dict[str, Any]] = []
        self._metrics: pq.ParquetWriter | None = None
        self.directory = Path()

    def __enter__(self) -> ResultsWriter:
        self.directory = self._stack.enter_context(atomic_directory(self._run.results_dir, overwrite=True))
        self._stack.callback(self._close_metrics)  # before the directory is renamed into place (or dropped)
        return self

    def _close_metrics(self) -> None:
        if self._metrics is not None:
            self._metrics.close()

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        return self._stack.__exit__(kind, err, tb)

    def add_failed(self, row: Mapping[str, Any], failure: Mapping[str, Any]) -> None:
        """An item that failed: its row in ``items.parquet`` with the error."""
        self._item_rows.append({**row, "error": failure["error"], "error_message": failure["message"]})

    def add_item(
        self, row: Mapping[str, Any], tokens: Mapping[str, list[Any]], item_dir: Path, labels: TokenLabels
    ) -> None:
        """A finished item: its row, its tokens' rows (:func:`token_columns`) and, with ``merge_metrics``, its
        long table with the labels (read from ``item_dir``)."""
        self._token_batches.append(pa.RecordBatch.from_pydict(dict(tokens), schema=TOKEN_SCHEMA))
        self._item_rows.append(dict(row))
        if self._merge_metrics:
            table = labelled_metrics(pq.read_table(item_dir / METRICS), labels)
            if self._metrics is None:
                self._metrics = pq.ParquetWriter(
                    self.directory / METRICS_TABLE, table.schema, compression="zstd"
                )
            self._metrics.write_table(table)

    def write_tables(self) -> pa.Table:
        """``tokens.parquet`` and ``items.parquet``; returns the tokens table."""
        tokens = pa.Table.from_batches(self._token_batches, schema=TOKEN_SCHEMA)
        pq.write_table(tokens, self.directory / TOKENS_TABLE, compression="zstd")
        pq.write_table(items_table(self._item_rows), self.directory / ITEMS_TABLE, compression="zstd")
        return tokens

    def write_json(self, name: str, data: Any) -> None:
        (self.directory / name).write_text(dumps(data), encoding="utf-8")

    def files(self) -> list[str]:
        """The files written so far, and the summary that comes last."""
        return [*sorted(p.name for p in self.directory.iterdir()), SUMMARY]


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
        """One row per item (see :data:`ITEM_SCHEMA`)."""
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
