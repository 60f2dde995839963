"""An item's extras, from files and from the caller, checked and turned into what its section and the page's data
show: token series and flags, the analysis, labels, evaluation, annotations, layer skipping and geometry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evolens.errors import SettingsError
from evolens.report import extras as ex
from evolens.report import items as it
from evolens.report.inputs import Source
from evolens.report.runs import RunContext, read_item_files
from evolens.trace import Trace


@dataclass
class ItemData:
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
    patches: Any = None


def auto_extras(source: Source, trace: Trace) -> tuple[dict[str, Any], list[str]]:
    """What the stored files say about an item: beside its trace directory and in its run's results."""
    found: dict[str, Any] = {}
    notes: list[str] = []
    if isinstance(source.trace, Path):
        files = read_item_files(source.trace, trace.item_id)
        notes.extend(files.problems)
        for key in ("analysis", "skip", "geometry", "patches"):
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


def item_data(
    trace: Trace, auto: Mapping[str, Any], given: Mapping[str, Any], run: RunContext | None
) -> ItemData:
    """Check an item's extras (the given ones win over those read from files) and derive series and flags."""
    where = f"extras[{trace.item_id!r}]"
    merged = {**auto, **given}
    data = ItemData(values={}, flags={}, payload={}, notes=[])
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
    data.patches = merged.get("patches")
    return data
