"""What a report reads from a run directory besides the traces: the item records, per-token labels, the evaluation,
the layer statistics and the analyses' dataset summary (all optional: an unfinished run has only traces).

Also the files a later stage leaves beside a trace directory: ``analysis.json`` (:class:`~evolens.TraceAnalysis`),
``skip.json`` (:class:`~evolens.SkipReport`) and ``geometry.json`` (:class:`~evolens.geometry.FeatureMap`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evolens.errors import EvolensError

if TYPE_CHECKING:
    import pandas as pd

    from evolens.analysis import AnalysisSummary
    from evolens.data.evaluation import Evaluation
    from evolens.hallucination.detect_results import DetectResult
    from evolens.hallucination.stats import LayerStatistics

logger = logging.getLogger(__name__)

ANALYSIS_FILE = "analysis.json"
SKIP_FILE = "skip.json"
GEOMETRY_FILE = "geometry.json"


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is an evolens run directory (a ``run.json`` of kind ``evolens.run``)."""
    from evolens.store.run import RUN_KIND, RUN_MANIFEST

    manifest = path / RUN_MANIFEST
    if not manifest.is_file():
        return False
    try:
        return json.loads(manifest.read_text(encoding="utf-8")).get("kind") == RUN_KIND
    except (OSError, ValueError):
        return False


def run_root_of(trace_dir: Path) -> Path | None:
    """The run directory whose item ``trace_dir`` is (``<run>/items/<id>``), or ``None``."""
    from evolens.store.run import ITEMS

    root = trace_dir.parent.parent
    return root if trace_dir.parent.name == ITEMS and is_run_dir(root) else None


@dataclass
class RunContext:
    """A run directory as the report sees it.

    Attributes:
        root: The run directory.
        name: Its display name (the directory name).
        config: The run configuration (``run.json → config``).
        records: ``item_id -> {item_id, index, image, prompt, annotations}`` in run order.
        status: ``item_id -> "done" | "failed" | "pending"``.
        failures: ``item_id -> failure record`` of failed items.
        summary: ``results/summary.json`` (``None`` before the merge).
        tokens: ``results/tokens.parquet``.
        evaluation: ``results/evaluation.json``.
        statistics: ``results/statistics.json``.
        analysis_summary: ``results/analysis_summary.json``.
        detect: ``results/detect.json`` (``evolens detect``).
        problems: What could not be read (shown in the report instead of failing it).
    """

    root: Path
    name: str
    config: dict[str, Any]
    records: dict[str, dict[str, Any]]
    status: dict[str, str]
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    tokens: pd.DataFrame | None = None
    evaluation: Evaluation | None = None
    statistics: LayerStatistics | None = None
    analysis_summary: AnalysisSummary | None = None
    detect: DetectResult | None = None
    problems: list[str] = field(default_factory=list)
    _labels: dict[str, dict[str, list[Any]]] | None = field(default=None, repr=False)

    @property
    def n_layers(self) -> int | None:
        return self.config.get("model", {}).get("n_layers")

    def item_dirs(self) -> list[Path]:
        """The trace directories of the finished items, in run order."""
        from evolens.store.run import RunDirectory

        run = RunDirectory(self.root)
        return [run.item_dir(k) for k, v in self.status.items() if v == "done" and run.is_done(k)]

    def labels(self, item_id: str) -> dict[str, list[Any]] | None:
        """``{"label": [...], "object": [...]}`` of an item's tokens (``tokens.parquet``), or ``None``."""
        if self.tokens is None:
            return None
        if self._labels is None:
            import pandas as pd

            self._labels = {}
            for key, frame in self.tokens.sort_values(["item", "step"]).groupby("item", sort=False):
                self._labels[str(key)] = {
                    "label": [None if pd.isna(v) else str(v) for v in frame["label"]],
                    "object": [None if pd.isna(v) else str(v) for v in frame["object"]],
                }
        return self._labels.get(item_id)


def load_run(path: str | Path) -> RunContext:
    """Read what a report shows of a run directory; unreadable result files become ``problems``, not errors."""
    import pyarrow.parquet as pq

    from evolens.analysis import AnalysisSummary
    from evolens.data.evaluation import Evaluation
    from evolens.hallucination.detect_results import DETECT_JSON, DetectResult
    from evolens.hallucination.stats import LayerStatistics
    from evolens.store import results as res
    from evolens.store.run import RunDirectory

    run = RunDirectory(path)
    manifest = run.read_manifest()
    records = {str(r["item_id"]): dict(r, index=i) for i, r in enumerate(run.items())}
    status = run.status()
    context = RunContext(
        root=run.root,
        name=run.root.resolve().name or str(run.root),
        config=dict(manifest.get("config", {})),
        records=records,
        status=status,
    )
    for item_id, state in status.items():
        if state == "failed":
            try:
                context.failures[item_id] = run.failure(item_id)
            except EvolensError as err:
                context.problems.append(str(err))
    folder = run.results_dir
    if not (folder / res.SUMMARY).is_file():
        return context
    readers: list[tuple[str, Any]] = [
        (res.SUMMARY, lambda p: json.loads(p.read_text(encoding="utf-8"))),
        (res.TOKENS_TABLE, lambda p: pq.read_table(p).to_pandas()),
        (res.EVALUATION, lambda p: Evaluation.from_dict(json.loads(p.read_text(encoding="utf-8")))),
        (res.STATISTICS, lambda p: LayerStatistics.from_dict(json.loads(p.read_text(encoding="utf-8")))),
        (res.ANALYSIS_SUMMARY, AnalysisSummary.load),
        (DETECT_JSON, DetectResult.load),
    ]
    attributes = ("summary", "tokens", "evaluation", "statistics", "analysis_summary", "detect")
    for (name, reader), attribute in zip(readers, attributes, strict=True):
        target = folder / name
        if not target.is_file():
            continue
        try:
            setattr(context, attribute, reader(target))
        except (OSError, ValueError, KeyError, TypeError, EvolensError) as err:
            context.problems.append(f"cannot read {target}: {err}")
            logger.warning("cannot read %s: %s", target, err)
    return context


@dataclass(frozen=True)
class ItemFiles:
    """Results a later stage saved beside a trace directory (each ``None`` when absent or unreadable)."""

    analysis: Any = None
    skip: Any = None
    geometry: Any = None
    patches: Any = None
    problems: tuple[str, ...] = ()


def read_item_files(directory: Path, item_id: str) -> ItemFiles:
    """``analysis.json``, ``skip.json`` (this item's result), ``geometry.json`` and ``patches.json`` beside a trace,
    when present."""
    from evolens.analysis import TraceAnalysis
    from evolens.experiments import SkipReport
    from evolens.geometry import FeatureMap
    from evolens.metrics.patches import PATCHES_FILE, PatchLens

    found: dict[str, Any] = {}
    problems: list[str] = []
    for key, name, reader in (
        ("analysis", ANALYSIS_FILE, TraceAnalysis.load),
        ("skip", SKIP_FILE, SkipReport.load),
        ("geometry", GEOMETRY_FILE, FeatureMap.load),
        ("patches", PATCHES_FILE, PatchLens.load),
    ):
        path = directory / name
        if not path.is_file():
            continue
        try:
            value: Any = reader(path)
        except (OSError, ValueError, KeyError, TypeError, EvolensError) as err:
            problems.append(f"{name} could not be read: {err}")
            logger.warning("cannot read %s: %s", path, err)
            continue
        if key == "skip":
            results = [r for r in value.results if r.item_id == item_id] or (
                value.results if len(value.results) == 1 else []
            )
            if not results:
                problems.append(f"{name} holds no result for item {item_id!r}")
                continue
            value = results[0]
        found[key] = value
    return ItemFiles(**found, problems=tuple(problems))
