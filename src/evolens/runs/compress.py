"""Stage-based compression judged: ``evolens compress`` (issue 18) — the quality of each cell's generations, and the
curve of quality against speed, one line per removal rule (the plan and the timed generations:
:mod:`evolens.experiments.compress`; the directory and its resumable cells: :mod:`evolens.runs.compress_cells`).

Each cell is judged like a run: :func:`~evolens.data.evaluation.evaluate_dataset` (the benchmark's metrics),
:func:`~evolens.hallucination.outcomes.item_outcomes` and :class:`~evolens.hallucination.outcomes.Quality`
(accuracy, typical/atypical accuracy, prior-driven answers), a paired comparison with the full model's outcomes
(:func:`~evolens.hallucination.outcomes.compare_outcomes`: items corrected and broken, the accuracy difference with
its paired bootstrap interval), and agreement with the full model's tokens (per item
:func:`~evolens.analysis.compare.similarity` and :func:`~evolens.analysis.compare.common_prefix`, and the share of
items generated exactly as the full model generates them). The full model's reference is its generation in the
first ``k`` loop.

Speed is generated tokens (EOS included) per wall-clock second over every item, and ``speedup`` is that divided by
the full model's tokens per second measured in the same ``k`` loop. A point of the curve averages its cells (the
random draws; the full model's loops) and gives their sample standard deviation as the spread.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from evolens.analysis.compare import common_prefix, similarity
from evolens.analysis.io import JsonResult
from evolens.api import TraceOptions
from evolens.data.evaluation import evaluate_dataset
from evolens.data.protocols import Protocol
from evolens.data.text import MethodName
from evolens.envelope import JsonRecord
from evolens.errors import StoreError
from evolens.experiments.compress import FULL, RULES, Cell, Stage, TimedGeneration
from evolens.hallucination.outcomes import (
    ItemOutcome,
    PairedComparison,
    Quality,
    compare_outcomes,
    item_outcomes,
)
from evolens.runs.compress_cells import CompressJob, CompressOptions, prepare_compress, read_cell, run_cells

if TYPE_CHECKING:
    from evolens.api import LVLM
    from evolens.data.items import DataItem, Dataset


@dataclass(frozen=True)
class CellScore:
    """One cell judged.

    Attributes:
        cell: The rule, ``k``, draw and removed layers.
        seconds: Wall-clock seconds of its generation of every item.
        n_tokens: Tokens generated (EOS included).
        tokens_per_s: ``n_tokens / seconds``.
        speedup: ``tokens_per_s`` over the full model's in the same ``k`` loop.
        cpu_seconds: CPU seconds of the process over the same span (NaN: not measured).
        cpu_speedup: Tokens per CPU second over the full model's in the same ``k`` loop.
        quality: Accuracy, typical/atypical accuracy, prior-driven answers.
        versus_full: Paired comparison of the outcomes with the full model's.
        similarity: Mean over items of the token similarity to the full model's generation, in [0, 1].
        exact_match: Share of items whose tokens equal the full model's.
        common_prefix: Mean over items of the tokens shared with the full model's generation before they part.
        scores: The benchmark's scores, ``"benchmark: name" -> value`` (shares in [0, 1]; counts left out).
    """

    cell: Cell
    seconds: float
    n_tokens: int
    tokens_per_s: float
    speedup: float
    cpu_seconds: float
    cpu_speedup: float
    quality: Quality
    versus_full: PairedComparison
    similarity: float
    exact_match: float
    common_prefix: float
    scores: dict[str, float | None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.cell.name,
            "cell": self.cell.to_dict(),
            "seconds": self.seconds,
            "n_tokens": self.n_tokens,
            "tokens_per_s": self.tokens_per_s,
            "speedup": self.speedup,
            "cpu_seconds": self.cpu_seconds,
            "cpu_speedup": self.cpu_speedup,
            "quality": self.quality.to_dict(),
            "versus_full": self.versus_full.to_dict(),
            "similarity": self.similarity,
            "exact_match": self.exact_match,
            "common_prefix": self.common_prefix,
            "scores": dict(self.scores),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CellScore:
        return cls(
            cell=Cell.from_dict(data["cell"]),
            seconds=float(data["seconds"]),
            n_tokens=int(data["n_tokens"]),
            tokens_per_s=_float(data["tokens_per_s"]),
            speedup=_float(data["speedup"]),
            cpu_seconds=_float(data.get("cpu_seconds")),
            cpu_speedup=_float(data.get("cpu_speedup")),
            quality=Quality.from_dict(data["quality"]),
            versus_full=PairedComparison.from_dict(data["versus_full"]),
            similarity=float(data["similarity"]),
            exact_match=float(data["exact_match"]),
            common_prefix=float(data["common_prefix"]),
            scores={str(k): None if v is None else float(v) for k, v in data["scores"].items()},
        )


@dataclass(frozen=True)
class CurvePoint(JsonRecord):
    """One removal rule at one ``k``: the mean over its cells (``random``: its draws; ``full``: its loops, at
    ``k = 0``) and, where there are two or more, their sample standard deviation (``*_sd``; else ``None``).

    Attributes:
        rule: ``"full"``, ``"stage"``, ``"random"`` or ``"last"``.
        k: Layers removed.
        n_cells: Cells averaged.
        layers: The layers each cell removed (1-based).
        tokens_per_s, tokens_per_s_sd: Generated tokens per second.
        speedup, speedup_sd: Tokens per second over the full model's in the same loop.
        cpu_speedup, cpu_speedup_sd: The same with CPU seconds (``None``: not measured).
        accuracy, accuracy_sd, accuracy_min, accuracy_max: Share of judged items correct.
        accuracy_typical, accuracy_atypical: The same over typical / atypical items (``None``: none).
        prior_answers: Wrong answers equal to the prior (mean count); ``n_prior`` items have a prior.
        difference: Accuracy minus the full model's (mean); ``low``/``high``: its paired bootstrap interval for
            single cells (``None`` for averaged ones, whose spread is ``accuracy_sd``).
        corrected, broken: Items wrong in the full model and right here, and the reverse (means).
        similarity, similarity_sd: Mean token similarity to the full model's generations.
        exact_match: Share of items generated exactly as by the full model (mean).
        common_prefix: Mean tokens shared with the full model's generation before they part (mean).
        scores: The benchmark's scores (means).
    """

    rule: str
    k: int
    n_cells: int
    layers: list[list[int]]
    tokens_per_s: float | None
    tokens_per_s_sd: float | None
    speedup: float | None
    speedup_sd: float | None
    cpu_speedup: float | None
    cpu_speedup_sd: float | None
    accuracy: float | None
    accuracy_sd: float | None
    accuracy_min: float | None
    accuracy_max: float | None
    accuracy_typical: float | None
    accuracy_atypical: float | None
    prior_answers: float
    n_prior: int
    difference: float | None
    low: float | None
    high: float | None
    corrected: float
    broken: float
    similarity: float | None
    similarity_sd: float | None
    exact_match: float | None
    common_prefix: float | None
    scores: dict[str, float | None]


@dataclass(frozen=True)
class CompressResult(JsonResult):
    """A judged compress run (``compress.json``).

    Attributes:
        settings: What was asked (the directory's ``settings.json``), plus the judging's protocol and text tools.
        stage: The stabilisation stage whose layers were removed.
        method: ``"rebuild"`` or ``"hook"``.
        method_note: Why the method fell back to ``"hook"`` (``None``: it did not).
        n_items: Items generated in every cell.
        cells: Every cell judged, in running order.
        curve: One point per (rule, k): ``full`` at ``k = 0`` first, then ``stage``, ``random``, ``last``, each
            by ``k`` ascending.
    """

    result_kind: ClassVar[str] = "evolens.compress"
    default_name: ClassVar[str] = "compress.json"

    settings: dict[str, Any]
    stage: Stage
    method: str
    method_note: str | None
    n_items: int
    cells: list[CellScore]
    curve: list[CurvePoint]

    def point(self, rule: str, k: int) -> CurvePoint:
        """The curve's point of ``rule`` at ``k``."""
        for p in self.curve:
            if p.rule == rule and p.k == k:
                return p
        raise KeyError(f"no point {rule} k={k}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "stage": self.stage.to_dict(),
            "method": self.method,
            "method_note": self.method_note,
            "n_items": self.n_items,
            "cells": [c.to_dict() for c in self.cells],
            "curve": [p.to_dict() for p in self.curve],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompressResult:
        return cls(
            settings=dict(data["settings"]),
            stage=Stage.from_dict(data["stage"]),
            method=str(data["method"]),
            method_note=data.get("method_note"),
            n_items=int(data["n_items"]),
            cells=[CellScore.from_dict(c) for c in data["cells"]],
            curve=[CurvePoint.from_dict(p) for p in data["curve"]],
        )


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


# ---------------------------------------------------------------------------- judging
def _judge(
    dataset: Dataset,
    items: Sequence[DataItem],
    timed: TimedGeneration,
    protocol: Protocol,
    text_method: MethodName,
) -> tuple[dict[str, ItemOutcome], dict[str, float | None]]:
    """The outcomes of one cell's generations and the benchmark's shares (``"benchmark: name" -> value``)."""
    texts = {item.item_id: g.text for item, g in zip(items, timed.generations, strict=True)}
    evaluation = evaluate_dataset(dataset, texts, method=text_method, protocol=protocol)
    outcomes = item_outcomes(evaluation, {item.item_id: item.annotations for item in items})
    scores = {f"{r.benchmark}: {r.name}": r.value for r in evaluation.score_rows() if r.unit == "%"}
    return outcomes, scores


def _agreement(reference: TimedGeneration, timed: TimedGeneration) -> tuple[float, float, float]:
    """Mean similarity, share of exact matches and mean common prefix against the full model's generations."""
    pairs = list(zip(reference.generations, timed.generations, strict=True))
    if not pairs:
        return math.nan, math.nan, math.nan
    sims = [similarity(a.token_ids, b.token_ids) for a, b in pairs]
    exact = [a.token_ids == b.token_ids for a, b in pairs]
    prefixes = [common_prefix(a.token_ids, b.token_ids) for a, b in pairs]
    return float(np.mean(sims)), float(np.mean(exact)), float(np.mean(prefixes))


def judge_cells(
    dataset: Dataset,
    items: Sequence[DataItem],
    cells: Sequence[Cell],
    outputs: Mapping[str, TimedGeneration],
    *,
    protocol: Protocol,
    text_method: MethodName = "auto",
    n_bootstrap: int = 2000,
    on_cell: Callable[[Cell], None] | None = None,
) -> list[CellScore]:
    """Judge every cell (``outputs``: cell name -> its generations, the same items in the same order); the full
    model's cell of the first ``k`` loop is the reference of the agreement and of the paired comparisons."""
    fulls = [c for c in cells if c.rule == FULL]
    if not fulls:
        raise StoreError("no full-model cell to compare the variants with")
    reference = outputs[fulls[0].name]
    base, _ = _judge(dataset, items, reference, protocol, text_method)
    loop_speed = {c.k: outputs[c.name].tokens_per_s for c in fulls}
    loop_cpu = {c.k: outputs[c.name].tokens_per_cpu_s for c in fulls}
    scored = []
    for cell in cells:
        timed = outputs[cell.name]
        outcomes, scores = _judge(dataset, items, timed, protocol, text_method)
        sim, exact, prefix = _agreement(reference, timed)
        full_speed, full_cpu = loop_speed.get(cell.k, math.nan), loop_cpu.get(cell.k, math.nan)
        scored.append(
            CellScore(
                cell=cell,
                seconds=timed.seconds,
                n_tokens=timed.n_tokens,
                tokens_per_s=timed.tokens_per_s,
                speedup=timed.tokens_per_s / full_speed if full_speed > 0 else math.nan,
                cpu_seconds=timed.cpu_seconds,
                cpu_speedup=timed.tokens_per_cpu_s / full_cpu if full_cpu > 0 else math.nan,
                quality=Quality.of(outcomes),
                versus_full=compare_outcomes(base, outcomes, n_bootstrap=n_bootstrap, seed=0),
                similarity=sim,
                exact_match=exact,
                common_prefix=prefix,
                scores=scores,
            )
        )
        if on_cell is not None:
            on_cell(cell)
    return scored


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(kept)) if kept else None


def _sd(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.std(kept, ddof=1)) if len(kept) >= 2 else None


def curve_point(rule: str, k: int, scores: Sequence[CellScore]) -> CurvePoint:
    """The mean (and spread) of ``scores``, the cells of one rule at one ``k`` (see :class:`CurvePoint`)."""
    acc = [s.quality.accuracy for s in scores]
    known = [a for a in acc if a is not None]
    single = scores[0].versus_full if len(scores) == 1 else None
    keys = list(dict.fromkeys(key for s in scores for key in s.scores))
    return CurvePoint(
        rule=rule,
        k=k,
        n_cells=len(scores),
        layers=[list(s.cell.layers) for s in scores],
        tokens_per_s=_mean([s.tokens_per_s for s in scores]),
        tokens_per_s_sd=_sd([s.tokens_per_s for s in scores]),
        speedup=_mean([s.speedup for s in scores]),
        speedup_sd=_sd([s.speedup for s in scores]),
        cpu_speedup=_mean([s.cpu_speedup for s in scores]),
        cpu_speedup_sd=_sd([s.cpu_speedup for s in scores]),
        accuracy=_mean(acc),
        accuracy_sd=_sd(acc),
        accuracy_min=min(known) if known else None,
        accuracy_max=max(known) if known else None,
        accuracy_typical=_mean([s.quality.accuracy_typical for s in scores]),
        accuracy_atypical=_mean([s.quality.accuracy_atypical for s in scores]),
        prior_answers=float(np.mean([s.quality.prior_answers for s in scores])),
        n_prior=scores[0].quality.n_prior,
        difference=_mean([s.versus_full.difference for s in scores]),
        low=single.low if single is not None else None,
        high=single.high if single is not None else None,
        corrected=float(np.mean([s.versus_full.corrected for s in scores])),
        broken=float(np.mean([s.versus_full.broken for s in scores])),
        similarity=_mean([s.similarity for s in scores]),
        similarity_sd=_sd([s.similarity for s in scores]),
        exact_match=_mean([s.exact_match for s in scores]),
        common_prefix=_mean([s.common_prefix for s in scores]),
        scores={key: _mean([s.scores.get(key) for s in scores]) for key in keys},
    )


def build_curve(scores: Sequence[CellScore]) -> list[CurvePoint]:
    """One point per (rule, k): the full model at ``k = 0`` (over its loops), then each rule by ``k``."""
    points = [curve_point(FULL, 0, [s for s in scores if s.cell.rule == FULL])]
    for rule in RULES:
        for k in sorted({s.cell.k for s in scores if s.cell.rule == rule}):
            points.append(curve_point(rule, k, [s for s in scores if s.cell.rule == rule and s.cell.k == k]))
    return points


# ---------------------------------------------------------------------------- the run
def finish_compress(
    dataset: Dataset,
    job: CompressJob,
    options: CompressOptions | None = None,
    *,
    on_cell: Callable[[Cell], None] | None = None,
) -> CompressResult:
    """Judge every finished cell of ``job`` and write ``compress.json`` into its directory.

    Raises:
        StoreError: a cell is not finished, or its file is not the cell planned.
    """
    options = options or CompressOptions()
    missing = job.todo()
    if missing:
        raise StoreError(f"{len(missing)} cells of {job.directory} are not finished (e.g. {missing[0].name})")
    outputs = {cell.name: read_cell(job, cell) for cell in job.cells}
    scores = judge_cells(
        dataset,
        job.items,
        job.cells,
        outputs,
        protocol=options.protocol,
        text_method=options.text_method,
        n_bootstrap=options.n_bootstrap,
        on_cell=on_cell,
    )
    result = CompressResult(
        settings={**job.settings, "protocol": options.protocol, "text_method": options.text_method},
        stage=job.stage,
        method=job.method,
        method_note=job.method_note,
        n_items=len(job.items),
        cells=scores,
        curve=build_curve(scores),
    )
    result.save(Path(job.directory))
    return result


def run_compress(
    lvlm: LVLM,
    dataset: Dataset,
    directory: str | Path,
    *,
    options: CompressOptions | None = None,
    trace: TraceOptions | None = None,
    limit: int | None = None,
    on_cell: Callable[[Cell], None] | None = None,
) -> CompressResult:
    """Stage-based compression of ``lvlm`` over ``dataset`` into ``directory`` (resumed when it holds a run with
    the same settings): :func:`~evolens.runs.compress_cells.prepare_compress`, then
    :func:`~evolens.runs.compress_cells.run_cells` (``on_cell(cell)`` after each cell generated), then
    :func:`finish_compress`."""
    job = prepare_compress(lvlm, dataset, directory, options=options, trace=trace, limit=limit)
    run_cells(lvlm, job, trace=trace, on_cell=on_cell)
    return finish_compress(dataset, job, options)
