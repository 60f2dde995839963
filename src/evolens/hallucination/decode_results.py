"""The result of ``evolens decode`` (:func:`evolens.runs.decode.decode`) as plain data: per decoding strategy, the
benchmark's scores, the judged answers' quality, the paired comparison with the baseline strategy (greedy), the
measured cost per generated token and the tokens that changed; stored as ``DIR/decode.json`` in
:data:`DECODE_FILE`'s envelope (:meth:`DecodeResult.save` / :meth:`DecodeResult.load`).

It lives here, below the figures (:mod:`evolens.viz.decode`) and the report (:mod:`evolens.report.decode`) that
draw it, as :mod:`evolens.hallucination.detect_results` does for ``evolens detect``; the pipeline that fills it is
:mod:`evolens.runs.decode`. The two tables every output shows (command line, report) are built here, once:
:func:`mitigation_table` and :func:`scores_table`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evolens.envelope import Envelope, JsonRecord
from evolens.errors import StoreError
from evolens.hallucination.outcomes import PairedComparison, Quality

#: The file ``evolens decode`` writes into its directory.
DECODE_JSON = "decode.json"
DECODE_FILE = Envelope(what="decoding comparison", schema=1, kinds=("evolens.decode",))

#: What the measured time per token includes (recorded with every cost).
COST_INCLUDES = (
    "wall clock of tracing the strategy's items (generation with the residual-stream capture, the lens and every "
    "metric of each step, writing each item) divided by the tokens generated (EOS included), after one untimed "
    "warm-up trace; model loading and the merge are left out, and so are the items of a call that was interrupted"
)


@dataclass(frozen=True)
class Cost(JsonRecord):
    """The measured cost of one strategy (see :data:`COST_INCLUDES` for what the seconds hold).

    Attributes:
        seconds: Wall-clock seconds of the completed tracing calls.
        n_items: Items those calls traced.
        n_tokens: Tokens those items generated (EOS included).
        s_per_token: ``seconds / n_tokens`` (``None`` without a measured token).
        multiple: ``s_per_token`` over the baseline's (``None`` when either is unknown). The strategies' runs are
            timed one after the other, so this multiple drifts with the machine's load.
        sample_s_per_token: Time per token in the interleaved cost sample (every strategy on the same batch, in
            turn, the median of a few rounds; ``None`` without a sample).
        sample_multiple: ``sample_s_per_token`` over the baseline's — the steadier multiple.
    """

    seconds: float
    n_items: int
    n_tokens: int
    s_per_token: float | None
    multiple: float | None
    sample_s_per_token: float | None = None
    sample_multiple: float | None = None


@dataclass(frozen=True)
class TokenChanges(JsonRecord):
    """How a strategy's generated tokens differ from the baseline's, over the items both finished.

    Attributes:
        n_pairs: Items finished under both strategies.
        n_changed: Items whose generated token ids differ.
        changed_share: ``n_changed / n_pairs`` (``None`` without pairs).
        mean_similarity: Mean token-level similarity (:func:`evolens.analysis.compare.similarity`, 1 = identical).
        mean_tokens_base, mean_tokens: Mean generated tokens per item of the baseline and of the strategy.
    """

    n_pairs: int
    n_changed: int
    changed_share: float | None
    mean_similarity: float | None
    mean_tokens_base: float | None
    mean_tokens: float | None


@dataclass(frozen=True)
class ChangeExample(JsonRecord):
    """One item whose tokens changed: both texts, their similarity and the diff's non-equal operations.

    Attributes:
        item_id, prompt: The item.
        base_text, text: The baseline's and the strategy's generated texts.
        similarity: Token-level similarity in [0, 1].
        ops: The :class:`~evolens.analysis.compare.DiffOp` dicts that are not ``"equal"`` (the changed tokens).
        base_correct, correct: The judgements of the two answers (``None``: the item is not judged).
    """

    item_id: str
    prompt: str
    base_text: str
    text: str
    similarity: float
    ops: list[dict[str, Any]]
    base_correct: bool | None
    correct: bool | None


@dataclass(frozen=True)
class StrategyResult:
    """One strategy's row of the mitigation table.

    Attributes:
        name: The strategy's name (its run is ``DIR/runs/<name>``).
        config: The strategy's tracing configuration as its run records it (``run.json → config.trace``).
        n_items, n_done, n_failed: Items of the run, finished, failed.
        scores: The benchmark's scores (:meth:`evolens.data.evaluation.Evaluation.score_rows`, as dicts).
        evaluation_lines: The evaluation's summary lines.
        quality: The judged answers' quality (:class:`~evolens.hallucination.outcomes.Quality`).
        paired: The paired comparison with the baseline (``None`` for the baseline itself).
        cost: The measured cost per token.
        changes: The tokens that changed against the baseline (``None`` for the baseline itself).
        examples: A few items whose tokens changed.
    """

    name: str
    config: dict[str, Any]
    n_items: int
    n_done: int
    n_failed: int
    scores: list[dict[str, Any]]
    evaluation_lines: list[str]
    quality: Quality
    paired: PairedComparison | None
    cost: Cost
    changes: TokenChanges | None
    examples: list[ChangeExample] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # the nested records are plain dataclasses: their dicts are their to_dict()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StrategyResult:
        paired, changes = data.get("paired"), data.get("changes")
        return cls(
            name=str(data["name"]),
            config=dict(data["config"]),
            n_items=int(data["n_items"]),
            n_done=int(data["n_done"]),
            n_failed=int(data["n_failed"]),
            scores=[dict(s) for s in data["scores"]],
            evaluation_lines=[str(x) for x in data["evaluation_lines"]],
            quality=Quality.from_dict(data["quality"]),
            paired=PairedComparison.from_dict(paired) if paired is not None else None,
            cost=Cost.from_dict(data["cost"]),
            changes=TokenChanges.from_dict(changes) if changes is not None else None,
            examples=[ChangeExample.from_dict(e) for e in data.get("examples", [])],
        )


@dataclass(frozen=True)
class DecodeResult:
    """The mitigation table: every strategy run over the same items, compared with the baseline.

    Attributes:
        baseline: The baseline strategy's name (greedy), the first of ``strategies``.
        model: The model (``source``, ``family``, ``n_layers``, ``weights_hash``).
        dataset: The dataset (``name``, ``n_items``, ``fingerprint``).
        settings: What the comparison was computed with (``protocol``, ``n_bootstrap``, ``level``, ``seed``).
        strategies: One result per strategy, the baseline first.
        cost_includes: What the measured time per token includes (:data:`COST_INCLUDES`).
    """

    baseline: str
    model: dict[str, Any]
    dataset: dict[str, Any]
    settings: dict[str, Any]
    strategies: list[StrategyResult]
    cost_includes: str = COST_INCLUDES

    def strategy(self, name: str) -> StrategyResult:
        for s in self.strategies:
            if s.name == name:
                return s
        raise KeyError(f"no strategy {name!r} in this result: {[s.name for s in self.strategies]}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "model": self.model,
            "dataset": self.dataset,
            "settings": self.settings,
            "strategies": [s.to_dict() for s in self.strategies],
            "cost_includes": self.cost_includes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DecodeResult:
        return cls(
            baseline=str(data["baseline"]),
            model=dict(data["model"]),
            dataset=dict(data["dataset"]),
            settings=dict(data["settings"]),
            strategies=[StrategyResult.from_dict(s) for s in data["strategies"]],
            cost_includes=str(data.get("cost_includes", COST_INCLUDES)),
        )

    def save(self, path: str | Path) -> Path:
        """Write ``decode.json`` atomically (strict JSON)."""
        return DECODE_FILE.write(path, "evolens.decode", self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> DecodeResult:
        target = Path(path)
        if target.is_dir():
            target = target / DECODE_JSON
        try:
            return cls.from_dict(DECODE_FILE.read(target))
        except (KeyError, TypeError, ValueError) as err:
            raise StoreError(f"{target} is not a complete decoding comparison: {err}") from None


# ------------------------------------------------------------------------------------------------ tables
def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _ratio(numerator: int, denominator: int) -> str:
    return f"{numerator}/{denominator}" if denominator else "n/a"


def _delta(p: PairedComparison | None) -> str:
    if p is None:
        return "—"
    if p.difference is None:
        return "n/a"
    interval = (
        f" [{100 * p.low:+.1f}, {100 * p.high:+.1f}]" if p.low is not None and p.high is not None else ""
    )
    return f"{100 * p.difference:+.1f}{interval}"


def _p_value(p: PairedComparison | None) -> str:
    if p is None or p.mcnemar_p is None:
        return "—"
    return f"{p.mcnemar_p:.3g}"


def _cost(c: Cost) -> tuple[str, str, str]:
    per_token = "n/a" if c.s_per_token is None else f"{1000 * c.s_per_token:.2f}"
    multiple = "n/a" if c.multiple is None else f"{c.multiple:.2f}x"
    sampled = "n/a" if c.sample_multiple is None else f"{c.sample_multiple:.2f}x"
    return per_token, multiple, sampled


MITIGATION_COLUMNS = (
    "strategy",
    "accuracy",
    "typical",
    "atypical",
    "prior answers",
    "Δ acc., pts [CI]",
    "corrected",
    "broken",
    "prior corr.",
    "prior broken",
    "McNemar p",
    "ms/token",
    "× baseline",
    "× baseline, interleaved",
    "items changed",
    "similarity",
)


def mitigation_table(result: DecodeResult) -> tuple[tuple[str, ...], list[list[str]]]:
    """The mitigation table as text cells: per strategy its accuracy (all judged answers, typical, atypical), the
    prior-driven answers, the paired comparison with the baseline (accuracy difference in points with its
    bootstrap interval, corrected, broken, McNemar p), the cost per token (in the runs; the multiple of the baseline
    in the runs and in the interleaved sample) and the share of items that changed."""
    rows = []
    for s in result.strategies:
        q, p, c = s.quality, s.paired, s.changes
        per_token, multiple, sampled = _cost(s.cost)
        rows.append(
            [
                s.name,
                _pct(q.accuracy),
                _pct(q.accuracy_typical),
                _pct(q.accuracy_atypical),
                _ratio(q.prior_answers, q.n_prior),
                _delta(p),
                "—" if p is None else str(p.corrected),
                "—" if p is None else str(p.broken),
                "—" if p is None else str(p.prior_corrected),
                "—" if p is None else str(p.prior_broken),
                _p_value(p),
                per_token,
                multiple,
                sampled,
                "—" if c is None else f"{c.n_changed}/{c.n_pairs}",
                "—" if c is None or c.mean_similarity is None else f"{c.mean_similarity:.3f}",
            ]
        )
    return MITIGATION_COLUMNS, rows


def _score_text(row: Mapping[str, Any]) -> str:
    value = row.get("value")
    if value is None:
        return "n/a"
    return f"{100 * float(value):.1f}" if row.get("unit") == "%" else f"{float(value):g}"


def scores_table(result: DecodeResult) -> tuple[tuple[str, ...], list[list[str]]]:
    """The benchmark's scores as text cells: one row per score (``benchmark: name``, percentages times 100), one
    column per strategy; a score a strategy lacks shows ``—``."""
    keys: list[tuple[str, str]] = []
    by_strategy: list[dict[tuple[str, str], str]] = []
    for s in result.strategies:
        cells = {}
        for row in s.scores:
            key = (str(row["benchmark"]), str(row["name"]))
            if key not in keys:
                keys.append(key)
            cells[key] = _score_text(row)
        by_strategy.append(cells)
    columns = ("score", *(s.name for s in result.strategies))
    rows = [[f"{b}: {n}", *(cells.get((b, n), "—") for cells in by_strategy)] for b, n in keys]
    return columns, rows


__all__ = [
    "COST_INCLUDES",
    "DECODE_FILE",
    "DECODE_JSON",
    "MITIGATION_COLUMNS",
    "ChangeExample",
    "Cost",
    "DecodeResult",
    "StrategyResult",
    "TokenChanges",
    "mitigation_table",
    "scores_table",
]
