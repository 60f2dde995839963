"""Run directories: one dataset traced by one model with one configuration, written item by item, resumable.

Layout (schema 1)::

    run.json                  kind, schema, the run configuration and its SHA-256, software versions, the
                              dataset's description; written last when the run is created (its presence means the
                              directory is a run)
    dataset/items.jsonl       every item of the run, in order: {item_id, image, prompt, annotations}
    dataset/resources.json    what evaluation needs besides the items (AMBER's word lists, CHAIR's synonyms)
    items/<name>/             one trace directory per finished item (``Trace.load`` reads it), written atomically
                              (temporary directory + rename), plus item.json {item_id, index, image, prompt,
                              annotations}; analysis.json (``TraceAnalysis``) is added when the results are merged
                              with the default detector
    failures/<name>.json      one record per failed item: {item_id, index, stage, error, message, traceback}
    results/                  written when every item is finished or failed (atomically, as one directory):
        items.parquet         one row per item: status, text, evaluation summary, layer summary, error
        tokens.parquet        one row per generated token: label, benchmark object, critical/mutation layers
        metrics.parquet       every item's long table (step × layer) with the token's label columns
        evaluation.json       benchmark scores, per-item judgements, the text method that ran
        statistics.json       critical/mutation layer statistics (when a layer detector ran)
        analysis_summary.json the analyses' dataset summary (``AnalysisSummary``; default detector)
        figures/              dataset figures, PNG and SVG (``evolens.finalize_run``)
        summary.json          counts, the scores and where everything is

``<name>`` is the item id with every character outside ``[A-Za-z0-9_.-]`` percent-encoded (and a leading ``.``
too), so any id maps to one safe, distinct file name. An item is finished exactly when its directory exists; a
killed run leaves at most temporary entries (names starting with ``.``), removed when the run resumes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import traceback
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from evolens._version import software_versions
from evolens.data.items import DataItem, json_lines
from evolens.envelope import config_differences, read_manifest
from evolens.errors import EvolensError, StoreError
from evolens.files import atomic_directory, atomic_write_text
from evolens.trace.fileformat import MANIFEST as TRACE_MANIFEST
from evolens.trace.fileformat import save_trace

logger = logging.getLogger(__name__)

RUN_KIND = "evolens.run"
RUN_SCHEMA_VERSION = 1
RUN_MANIFEST = "run.json"
DATASET = "dataset"
ITEMS = "items"
FAILURES = "failures"
RESULTS = "results"
ITEM_RECORD = "item.json"

_MAX_NAME = 120


def dumps(value: Any) -> str:
    """Canonical JSON (sorted keys, UTF-8) so equal content gives equal bytes."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, indent=1)


def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a run configuration."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def items_jsonl(items: Sequence[DataItem]) -> str:
    """The content of ``dataset/items.jsonl`` for ``items`` (canonical JSON, one item per line)."""
    return "".join(json.dumps(item.to_dict(), sort_keys=True, ensure_ascii=False) + "\n" for item in items)


def dataset_fingerprint(items: Sequence[DataItem]) -> str:
    """SHA-256 of :func:`items_jsonl` — what the run compares to know it is resuming the same items."""
    return hashlib.sha256(items_jsonl(items).encode("utf-8")).hexdigest()


def item_dir_name(item_id: str) -> str:
    """A file name for an item id: percent-encoded, never hidden, at most ~120 characters (long ids get a hash)."""
    name = quote(item_id, safe="-_.")
    if name.startswith("."):
        name = "%2E" + name[1:]
    if len(name) > _MAX_NAME:
        digest = hashlib.sha256(item_id.encode()).hexdigest()[:16]
        name = f"{name[: _MAX_NAME - 17]}~{digest}"
    return name


class RunDirectory:
    """A run directory (see the module docstring for the layout).

    Args:
        root: The directory (created by :meth:`create`).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.manifest_path = self.root / RUN_MANIFEST
        self.items_dir = self.root / ITEMS
        self.failures_dir = self.root / FAILURES
        self.results_dir = self.root / RESULTS

    # ------------------------------------------------------------------ paths

    def item_dir(self, item_id: str) -> Path:
        return self.items_dir / item_dir_name(item_id)

    def failure_path(self, item_id: str) -> Path:
        return self.failures_dir / f"{item_dir_name(item_id)}.json"

    # --------------------------------------------------------------- manifest
    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def read_manifest(self) -> dict[str, Any]:
        """``run.json``, checked for kind and schema."""
        if not self.manifest_path.is_file():
            raise StoreError(f"{self.root} is not an evolens run directory: no {RUN_MANIFEST}")
        manifest = read_manifest(
            self.manifest_path, kind=RUN_KIND, schema_version=RUN_SCHEMA_VERSION, what="run"
        )
        return manifest

    def create(
        self,
        config: Mapping[str, Any],
        items: Sequence[DataItem],
        resources: Mapping[str, Any],
        *,
        source: Mapping[str, Any] | None = None,
    ) -> None:
        """Write the dataset files, then ``run.json`` (last: a directory with ``run.json`` is a complete run).

        Raises:
            StoreError: ``root`` exists and holds something other than an unfinished creation of a run.
        """
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"{self.root} exists and is a file")
        if self.exists():
            raise StoreError(f"{self.root} is already a run directory")
        if self.root.is_dir():
            foreign = [
                p.name for p in self.root.iterdir() if p.name not in (DATASET, ITEMS, FAILURES, RESULTS)
            ]
            if foreign:
                raise StoreError(
                    f"{self.root} is not empty and is not an evolens run (it holds {', '.join(sorted(foreign)[:3])}); "
                    "choose a new directory"
                )
        atomic_write_text(self.root / DATASET / "items.jsonl", items_jsonl(items))
        atomic_write_text(self.root / DATASET / "resources.json", dumps(dict(resources)))
        self.items_dir.mkdir(exist_ok=True)
        self.failures_dir.mkdir(exist_ok=True)
        manifest = {
            "kind": RUN_KIND,
            "schema_version": RUN_SCHEMA_VERSION,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "software": software_versions(),
            "config": dict(config),
            "config_sha256": config_hash(config),
            "dataset_source": dict(source or {}),
        }
        atomic_write_text(self.manifest_path, dumps(manifest))

    def check_config(self, config: Mapping[str, Any], *, only: Sequence[str] | None = None) -> None:
        """Refuse a configuration that differs from the one the run was created with.

        Args:
            config: The wanted configuration.
            only: Compare only these top-level sections (e.g. before the model is loaded).

        Raises:
            StoreError: Listing every setting that differs.
        """
        stored = self.read_manifest()["config"]
        keys = only if only is not None else sorted(set(stored) | set(config))
        differences = config_differences({k: stored.get(k) for k in keys}, {k: config.get(k) for k in keys})
        if differences:
            raise StoreError(
                f"{self.root} holds a run with a different configuration; resuming it would mix results. "
                f"Differences (stored -> requested): {'; '.join(differences[:8])}"
                f"{' ...' if len(differences) > 8 else ''}. Use another output directory"
            )
        software = self.read_manifest().get("software", {})
        now = software_versions()
        changed = {k: (software.get(k), v) for k, v in now.items() if software.get(k) != v}
        if changed:
            logger.warning(
                "resuming %s with other software versions than it was started with: %s", self.root, changed
            )

    # ------------------------------------------------------------------ items
    def items(self) -> list[dict[str, Any]]:
        """The run's item records (``dataset/items.jsonl``), in order."""
        path = self.root / DATASET / "items.jsonl"
        try:
            return [json.loads(line) for line in json_lines(path.read_text(encoding="utf-8"))]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise StoreError(f"cannot read {path}: {err}") from None

    def resources(self) -> dict[str, Any]:
        path = self.root / DATASET / "resources.json"
        try:
            return dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as err:
            raise StoreError(f"cannot read {path}: {err}") from None

    def dataset_fingerprint(self) -> str:
        """SHA-256 of ``dataset/items.jsonl``."""
        return hashlib.sha256((self.root / DATASET / "items.jsonl").read_bytes()).hexdigest()

    def is_done(self, item_id: str) -> bool:
        return (self.item_dir(item_id) / TRACE_MANIFEST).is_file()

    def is_failed(self, item_id: str) -> bool:
        return self.failure_path(item_id).is_file() and not self.is_done(item_id)

    def status(self) -> dict[str, str]:
        """``item_id -> "done" | "failed" | "pending"`` for every item of the run."""
        done = (
            {p.name for p in self.items_dir.iterdir() if not p.name.startswith(".")}
            if self.items_dir.is_dir()
            else set()
        )
        failed = (
            {p.name.removesuffix(".json") for p in self.failures_dir.iterdir() if not p.name.startswith(".")}
            if self.failures_dir.is_dir()
            else set()
        )
        out = {}
        for record in self.items():
            name = item_dir_name(record["item_id"])
            out[record["item_id"]] = "done" if name in done else "failed" if name in failed else "pending"
        return out

    def clean_temporaries(self) -> int:
        """Remove what killed writers left (entries starting with ``.``, also inside finished items, where a killed
        merge may leave a half-written ``analysis.json``); returns how many. Call it only while no other process
        writes into this run."""
        removed = 0
        item_dirs = (
            [p for p in self.items_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
            if self.items_dir.is_dir()
            else []
        )
        for folder in (self.items_dir, self.failures_dir, self.root / DATASET, self.root, *item_dirs):
            if not folder.is_dir():
                continue
            for entry in folder.iterdir():
                if entry.name.startswith(".") and (".tmp-" in entry.name or ".old-" in entry.name):
                    if entry.is_dir():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink(missing_ok=True)
                    removed += 1
        if removed:
            logger.info("removed %d temporary entries left by an interrupted run in %s", removed, self.root)
        return removed

    def write_item(self, item: DataItem, index: int, trace: Any, *, hidden_states: bool) -> Path:
        """Write a finished item: its trace and ``item.json``, in one atomic rename; drop an old failure record."""
        target = self.item_dir(item.item_id)
        record = {**item.to_dict(), "index": index}
        with atomic_directory(target, overwrite=True) as tmp:
            save_trace(trace, tmp, hidden_states=hidden_states, overwrite=True)
            (tmp / ITEM_RECORD).write_text(dumps(record), encoding="utf-8")
        self.failure_path(item.item_id).unlink(missing_ok=True)
        return target

    def write_failure(self, item: DataItem, index: int, stage: str, error: BaseException) -> Path:
        """Record a failed item with its error."""
        record = {
            "item_id": item.item_id,
            "index": index,
            "stage": stage,
            "error": type(error).__name__,
            "message": str(error),
            "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__))
            if not isinstance(error, EvolensError)
            else None,
        }
        return atomic_write_text(self.failure_path(item.item_id), dumps(record))

    def failure(self, item_id: str) -> dict[str, Any]:
        try:
            return dict(json.loads(self.failure_path(item_id).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as err:
            raise StoreError(f"cannot read the failure record of {item_id!r}: {err}") from None

    def iter_done(self) -> Iterator[tuple[dict[str, Any], Path]]:
        """``(item record, item directory)`` of finished items, in run order."""
        for record in self.items():
            directory = self.item_dir(record["item_id"])
            if (directory / TRACE_MANIFEST).is_file():
                yield record, directory
