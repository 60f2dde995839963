"""Layer skipping judged on every task: each variant of a layer-skip experiment (paper §4.2, Fig. 5; a
:class:`~evolens.experiments.skip.SkipReport`) judged against a dataset's truth by the benchmark's own evaluators, and
compared item by item with the original generation.

The skip report's caption check (:func:`~evolens.analysis.compare.count_hallucinations`) sees only annotated words in
free text. Here every variant's texts go through :func:`~evolens.data.evaluation.evaluate_dataset` — AMBER captions
and yes/no questions, POPE, CHAIR, one-word VQA — then :func:`~evolens.hallucination.outcomes.item_outcomes`, so each
item is right or wrong by its task's rule; per task (and over all tasks) each variant gets its
:class:`~evolens.hallucination.outcomes.Quality` and a paired comparison with the original
(:func:`~evolens.hallucination.outcomes.compare_outcomes`: corrected / broken items, prior-driven ones among them,
the accuracy difference with a paired bootstrap interval, an exact McNemar p). Saved as ``skip_judged.json`` beside
``skip.json``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from evolens.analysis.io import JsonResult
from evolens.data.evaluation import Evaluation, evaluate_dataset
from evolens.data.items import DataItem, Dataset
from evolens.data.protocols import DEFAULT_PROTOCOL, Protocol, check_protocol
from evolens.data.text import MethodName
from evolens.envelope import JsonRecord
from evolens.errors import SettingsError
from evolens.experiments.skip import ORIGINAL, SkipReport
from evolens.hallucination.outcomes import (
    ItemOutcome,
    PairedComparison,
    Quality,
    compare_outcomes,
    item_outcomes,
)

KIND = "evolens.skip_judged"
DEFAULT_NAME = "skip_judged.json"
#: The task name of the rows over every judged item.
ALL_TASKS = "all"
METHODS = ("auto", "exact", "fallback")


@dataclass(frozen=True)
class JudgeOptions:
    """How the variants are judged and compared.

    Attributes:
        protocol: ``"official"`` or ``"evolens"`` scoring (:mod:`evolens.data.protocols`).
        method: Text tools: ``"auto"``, ``"exact"`` or ``"fallback"`` (:mod:`evolens.data.text`).
        drop_unfinished: CHAIR: drop a caption's unfinished last sentence first.
        n_bootstrap: Item draws of the paired bootstrap interval (0: no interval).
        level: The interval's coverage, in (0, 1).
        seed: The bootstrap's seed.

    Raises:
        SettingsError: An unknown protocol or method, ``level`` outside (0, 1) or a negative ``n_bootstrap``.
    """

    protocol: Protocol = DEFAULT_PROTOCOL
    method: MethodName = "auto"
    drop_unfinished: bool = False
    n_bootstrap: int = 2000
    level: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        check_protocol(self.protocol)
        if self.method not in METHODS:
            raise SettingsError(f"text method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not 0 < self.level < 1:
            raise SettingsError(f"the interval's level must be in (0, 1), got {self.level!r}")
        if self.n_bootstrap < 0:
            raise SettingsError(f"n_bootstrap must be >= 0, got {self.n_bootstrap!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class JudgedRow:
    """One variant on one task (or on all of them, task :data:`ALL_TASKS`).

    Attributes:
        variant: ``"original"``, a preset or a user's skip set.
        task: The evaluator's task (``"amber-discriminative"``, ``"vqa"`` ...) or ``"all"``.
        n_ran: Judged items of the task where the variant generated (a non-empty skip set); on the others it
            reused the original's text, so they cannot differ.
        quality: The variant's quality over the task's judged items.
        comparison: Against the original over the same items (``None`` for the original itself).
    """

    variant: str
    task: str
    n_ran: int
    quality: Quality
    comparison: PairedComparison | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "task": self.task,
            "n_ran": self.n_ran,
            "quality": self.quality.to_dict(),
            "comparison": self.comparison.to_dict() if self.comparison is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JudgedRow:
        comparison = data.get("comparison")
        return cls(
            variant=str(data["variant"]),
            task=str(data["task"]),
            n_ran=int(data["n_ran"]),
            quality=Quality.from_dict(data["quality"]),
            comparison=PairedComparison.from_dict(comparison) if comparison else None,
        )


@dataclass(frozen=True)
class ChangedItem(JsonRecord):
    """An item a variant judged differently from the original (one discordant pair of a comparison).

    Attributes:
        item_id, task, variant: The item, its task and the variant.
        prompt: The item's prompt.
        original, text: The original's and the variant's responses.
        correct_before, correct_after: Whether each was judged right.
        prior: The item's ``prior`` annotation (lower-cased; ``None``: none).
        prior_before, prior_after: Whether each was a wrong answer equal to the prior.
    """

    item_id: str
    task: str
    variant: str
    prompt: str
    original: str
    text: str
    correct_before: bool
    correct_after: bool
    prior: str | None
    prior_before: bool
    prior_after: bool


@dataclass(frozen=True)
class SkipJudged(JsonResult):
    """The variants of a layer-skip experiment judged against the truth; saved as ``skip_judged.json``.

    Attributes:
        rows: Per variant (the original first, in the report's order), one row per task in the order the tasks
            first come, then the row over all tasks.
        changed: Every item some variant judged differently from the original, by variant then item order.
        scores: Per variant, the benchmark's scores (:meth:`~evolens.data.evaluation.Evaluation.score_rows` as
            dicts: ``benchmark``, ``name``, ``value``, ``unit``).
        settings: The judge options, the model, the dataset and how many items were judged.
    """

    result_kind: ClassVar[str] = KIND
    default_name: ClassVar[str] = DEFAULT_NAME

    rows: list[JudgedRow]
    changed: list[ChangedItem]
    scores: dict[str, list[dict[str, Any]]]
    settings: dict[str, Any]

    @property
    def variants(self) -> list[str]:
        """The variants, original first."""
        return list(dict.fromkeys(r.variant for r in self.rows))

    @property
    def tasks(self) -> list[str]:
        """The judged tasks, then ``"all"``."""
        return list(dict.fromkeys(r.task for r in self.rows))

    def row(self, variant: str, task: str = ALL_TASKS) -> JudgedRow:
        for r in self.rows:
            if r.variant == variant and r.task == task:
                return r
        raise KeyError(
            f"no row for variant {variant!r} on task {task!r}; have {self.variants} x {self.tasks}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": [r.to_dict() for r in self.rows],
            "changed": [c.to_dict() for c in self.changed],
            "scores": {name: [dict(s) for s in rows] for name, rows in self.scores.items()},
            "settings": dict(self.settings),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SkipJudged:
        return cls(
            rows=[JudgedRow.from_dict(r) for r in data["rows"]],
            changed=[ChangedItem.from_dict(c) for c in data["changed"]],
            scores={str(k): [dict(s) for s in v] for k, v in data["scores"].items()},
            settings=dict(data["settings"]),
        )


def variant_names(report: SkipReport) -> list[str]:
    """The report's variants in order, the original first."""
    return list(dict.fromkeys(v.name for r in report.results for v in r.variants))


def variant_texts(report: SkipReport, name: str) -> dict[str, str]:
    """``item_id -> text`` of variant ``name`` (items without the variant left out)."""
    return {r.item_id: v.text for r in report.results for v in r.variants if v.name == name}


def _ran(report: SkipReport, name: str) -> set[str]:
    return {r.item_id for r in report.results for v in r.variants if v.name == name and v.ran}


def _rows(
    name: str,
    outcomes: Mapping[str, ItemOutcome],
    original: Mapping[str, ItemOutcome],
    ran: set[str],
    tasks: Sequence[str],
    options: JudgeOptions,
) -> list[JudgedRow]:
    """Variant ``name``'s rows: one per task, then all tasks."""
    rows = []
    for task in [*tasks, ALL_TASKS]:
        mine = {k: o for k, o in outcomes.items() if task in (ALL_TASKS, o.task)}
        base = {k: o for k, o in original.items() if task in (ALL_TASKS, o.task)}
        comparison = (
            None
            if name == ORIGINAL
            else compare_outcomes(
                base, mine, n_bootstrap=options.n_bootstrap, level=options.level, seed=options.seed
            )
        )
        rows.append(JudgedRow(name, task, len(ran & mine.keys()), Quality.of(mine), comparison))
    return rows


def _changed(
    report: SkipReport, name: str, outcomes: Mapping[str, ItemOutcome], original: Mapping[str, ItemOutcome]
) -> list[ChangedItem]:
    """The items variant ``name`` judged differently from the original, in the report's order."""
    changed = []
    for result in report.results:
        key = result.item_id
        if key not in outcomes or key not in original or outcomes[key].correct == original[key].correct:
            continue
        before, after = original[key], outcomes[key]
        changed.append(
            ChangedItem(
                item_id=key,
                task=after.task,
                variant=name,
                prompt=result.prompt,
                original=result.variant(ORIGINAL).text,
                text=result.variant(name).text,
                correct_before=before.correct,
                correct_after=after.correct,
                prior=after.prior,
                prior_before=before.prior_driven,
                prior_after=after.prior_driven,
            )
        )
    return changed


@contextmanager
def _each_warning_once() -> Iterator[None]:
    """The evaluators' warnings once each while the variants are judged (the same warning would come per variant)."""
    seen: set[str] = set()

    def first(record: logging.LogRecord) -> bool:
        message = record.getMessage()
        new = message not in seen
        seen.add(message)
        return new

    log = logging.getLogger(evaluate_dataset.__module__)
    log.addFilter(first)
    try:
        yield
    finally:
        log.removeFilter(first)


def judge_evaluation(
    report: SkipReport, name: str, dataset: Dataset | Iterable[DataItem], options: JudgeOptions
) -> Evaluation:
    """Variant ``name``'s texts judged on ``dataset`` under ``options``."""
    return evaluate_dataset(
        dataset,
        variant_texts(report, name),
        method=options.method,
        protocol=options.protocol,
        drop_unfinished=options.drop_unfinished,
    )


def judge_skip(
    report: SkipReport,
    dataset: Dataset | Sequence[DataItem],
    options: JudgeOptions | None = None,
    *,
    on_variant: Callable[[str], None] | None = None,
) -> SkipJudged:
    """Judge every variant of ``report`` against the truth of ``dataset`` (the items the report ran on; a
    :class:`~evolens.data.items.Dataset` also brings its evaluation resources, e.g. AMBER's word lists), and
    compare each with the original item by item.

    ``on_variant(name)`` is called after each variant is judged (a progress bar). Items whose task has no
    evaluator are not judged; when no item is, the result has no rows (``settings["n_judged"] == 0``).

    Raises:
        DatasetError: None of the report's items are in ``dataset``, or an item's task needs resources it lacks.
    """
    options = options or JudgeOptions()
    items = dataset if isinstance(dataset, Dataset) else list(dataset)
    annotations = {item.item_id: item.annotations for item in items}
    outcomes: dict[str, dict[str, ItemOutcome]] = {}
    scores: dict[str, list[dict[str, Any]]] = {}
    with _each_warning_once():
        for name in variant_names(report):
            evaluation = judge_evaluation(report, name, items, options)
            outcomes[name] = item_outcomes(evaluation, annotations)
            scores[name] = [asdict(s) for s in evaluation.score_rows()]
            if on_variant is not None:
                on_variant(name)
    original = outcomes.get(ORIGINAL, {})
    tasks = list(dict.fromkeys(o.task for o in original.values()))
    rows, changed = [], []
    for name, judged in outcomes.items():
        if original:
            rows += _rows(name, judged, original, _ran(report, name), tasks, options)
        if name != ORIGINAL:
            changed += _changed(report, name, judged, original)
    settings = {
        **options.to_dict(),
        "model": report.settings.get("model"),
        "dataset": report.settings.get("dataset"),
        "n_items": len(report.results),
        "n_judged": len(original),
    }
    return SkipJudged(rows, changed, scores, settings)


__all__ = [
    "ALL_TASKS",
    "ChangedItem",
    "JudgeOptions",
    "JudgedRow",
    "SkipJudged",
    "judge_evaluation",
    "judge_skip",
    "variant_names",
    "variant_texts",
]
