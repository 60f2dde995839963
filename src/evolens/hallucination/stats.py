"""Dataset statistics of critical and mutation layers, and the paper's claim measured: do hallucinated tokens have
mutation layers more often than grounded ones?

The layers come from a *detector*: any function ``Trace -> TokenLayers`` giving, for each generated step, its
critical layer and its mutation layers (``evolens.analysis`` provides them; this module only counts). Labels come
from the benchmark evaluation (:mod:`evolens.data.labels`).

Unit of analysis (``unit``): ``"first_token"`` (default) takes, for every judged word, the first of the tokens that
spell it — the step where the word is decided; ``"all_tokens"`` takes every token of the word. The "all tokens"
distributions always use every generated token.

Reported, for all tokens and for hallucinated and grounded ones: the distribution of critical layers, of the first
mutation layer and of every mutation layer, and the share of tokens with at least one mutation layer. Then the
difference of shares (hallucinated − grounded) with a 95% interval from a bootstrap over items (tokens of one
response are not independent), Fisher's exact test on the 2×2 table (which does treat tokens as independent), and the
AUROC of "a mutation layer was detected" as a detector of hallucinated tokens — for a yes/no score,
``AUROC = (1 + TPR − FPR) / 2`` — with its bootstrap interval; and the AUROC of the detector's continuous score
when it gives one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from evolens.errors import SettingsError
from evolens.hallucination.bootstrap import bootstrap_over_items, percentile_interval, weighted_auroc

if TYPE_CHECKING:
    import pandas as pd

    from evolens.analysis.trace_analysis import TraceAnalysis
    from evolens.trace import Trace

Unit = Literal["first_token", "all_tokens"]
_UNIT_TEXT = {
    "first_token": "each judged word's first token",
    "all_tokens": "every token of each judged word",
}


@dataclass(frozen=True)
class TokenLayers:
    """A detector's output for one trace: one entry per generated step.

    Attributes:
        critical: The step's critical layer (``None``: none detected).
        mutations: The step's mutation layers, ascending (empty: none detected).
        scores: Optional continuous strength of the step's mutation (higher = stronger), for an AUROC that does not
            depend on the detector's threshold.
        critical_prob, critical_jsd: Optional probability- and JSD-based critical layers (``None`` entries: not
            found), when the detector computes both (``evolens.analysis`` does).
    """

    critical: list[int | None]
    mutations: list[list[int]]
    scores: list[float] | None = None
    critical_prob: list[int | None] | None = None
    critical_jsd: list[int | None] | None = None

    def __post_init__(self) -> None:
        if len(self.mutations) != len(self.critical):
            raise SettingsError(
                f"TokenLayers: {len(self.critical)} critical layers but {len(self.mutations)} mutation lists"
            )
        for name in ("scores", "critical_prob", "critical_jsd"):
            values = getattr(self, name)
            if values is not None and len(values) != len(self.critical):
                raise SettingsError(f"TokenLayers: {len(self.critical)} steps but {len(values)} {name}")

    @property
    def n_steps(self) -> int:
        return len(self.critical)

    @classmethod
    def from_arrays(
        cls,
        critical: Sequence[int] | Any,
        mutations: Sequence[Sequence[int]],
        *,
        scores: Sequence[float] | Any | None = None,
        critical_prob: Sequence[int] | Any | None = None,
        critical_jsd: Sequence[int] | Any | None = None,
        not_found: int = -1,
    ) -> TokenLayers:
        """From a detector's arrays, where ``not_found`` (default -1) marks a token without a critical layer
        (:meth:`from_analysis` adapts an ``evolens.analysis.TraceAnalysis``)."""

        def layers(values: Any) -> list[int | None]:
            return [None if int(c) == not_found else int(c) for c in values]

        return cls(
            layers(critical),
            [sorted(int(x) for x in m) for m in mutations],
            [float(x) for x in scores] if scores is not None else None,
            layers(critical_prob) if critical_prob is not None else None,
            layers(critical_jsd) if critical_jsd is not None else None,
        )

    @classmethod
    def from_analysis(cls, analysis: TraceAnalysis) -> TokenLayers:
        """From an :class:`evolens.analysis.TraceAnalysis`: its stage critical layer (``critical_layer``), every
        mutation layer, both critical layers, and as score the strongest mutation's JSD ratio to the plateau
        (0 without a mutation; infinite when the plateau's median JSD is 0)."""
        return cls.from_arrays(
            analysis.critical_layer,
            analysis.mutation_layers,
            scores=[max((m.ratio for m in ms), default=0.0) for ms in analysis.mutations],
            critical_prob=analysis.critical_layer_prob,
            critical_jsd=analysis.critical_layer_jsd,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenLayers:
        def layers(key: str) -> list[int | None] | None:
            values = data.get(key)
            return None if values is None else [None if c is None else int(c) for c in values]

        return cls(
            [None if c is None else int(c) for c in data["critical"]],
            [[int(x) for x in m] for m in data["mutations"]],
            [float(s) for s in data["scores"]] if data.get("scores") is not None else None,
            layers("critical_prob"),
            layers("critical_jsd"),
        )


#: A detector of per-token critical and mutation layers.
LayerDetector = Callable[["Trace"], TokenLayers]


@dataclass(frozen=True)
class Distribution:
    """How a layer index is distributed over tokens.

    Attributes:
        counts: ``counts[l]`` tokens at layer ``l`` (``n_layers + 1`` entries, layer 0 = embeddings).
        n_none: Tokens without a value.
        mean, median: Of the tokens with a value (``None`` when there are none).
    """

    counts: list[int]
    n_none: int
    mean: float | None
    median: float | None

    @classmethod
    def of(cls, values: Sequence[int], n_none: int, n_layers: int) -> Distribution:
        array = np.asarray(values, dtype=np.int64)
        if array.size and (array.min() < 0 or array.max() > n_layers):
            raise SettingsError(f"layer indices must be in [0, {n_layers}], got {array.min()}..{array.max()}")
        counts = np.bincount(array, minlength=n_layers + 1).tolist() if array.size else [0] * (n_layers + 1)
        return cls(
            counts=[int(c) for c in counts],
            n_none=int(n_none),
            mean=float(array.mean()) if array.size else None,
            median=float(np.median(array)) if array.size else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Distribution:
        return cls(list(data["counts"]), int(data["n_none"]), data["mean"], data["median"])


@dataclass(frozen=True)
class GroupStats:
    """Critical and mutation layers of a group of tokens.

    Attributes:
        n_tokens: Tokens in the group.
        n_with_mutation: Tokens with at least one mutation layer.
        share_with_mutation: ``n_with_mutation / n_tokens``.
        critical: Distribution of the critical layer.
        first_mutation: Distribution of the first mutation layer (tokens without one are ``n_none``).
        all_mutations: Every mutation layer of every token (``n_none``: tokens without any).
    """

    n_tokens: int
    n_with_mutation: int
    share_with_mutation: float | None
    critical: Distribution
    first_mutation: Distribution
    all_mutations: Distribution

    @classmethod
    def of(
        cls, critical: Sequence[int | None], mutations: Sequence[Sequence[int]], n_layers: int
    ) -> GroupStats:
        crit = [c for c in critical if c is not None]
        firsts = [m[0] for m in mutations if len(m)]
        every = [x for m in mutations for x in m]
        n = len(critical)
        return cls(
            n_tokens=n,
            n_with_mutation=len(firsts),
            share_with_mutation=len(firsts) / n if n else None,
            critical=Distribution.of(crit, n - len(crit), n_layers),
            first_mutation=Distribution.of(firsts, n - len(firsts), n_layers),
            all_mutations=Distribution.of(every, n - len(firsts), n_layers),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_tokens": self.n_tokens,
            "n_with_mutation": self.n_with_mutation,
            "share_with_mutation": self.share_with_mutation,
            "critical": self.critical.to_dict(),
            "first_mutation": self.first_mutation.to_dict(),
            "all_mutations": self.all_mutations.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GroupStats:
        return cls(
            int(data["n_tokens"]),
            int(data["n_with_mutation"]),
            data["share_with_mutation"],
            Distribution.from_dict(data["critical"]),
            Distribution.from_dict(data["first_mutation"]),
            Distribution.from_dict(data["all_mutations"]),
        )


@dataclass(frozen=True)
class Estimate:
    """A number with a 95% bootstrap interval (over items).

    Attributes:
        value: The estimate on the data (``None`` when undefined, e.g. no hallucinated token).
        low, high: The 2.5% and 97.5% bootstrap percentiles (``None`` when undefined).
    """

    value: float | None
    low: float | None
    high: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Estimate:
        return cls(data["value"], data["low"], data["high"])


@dataclass(frozen=True)
class LayerStatistics:
    """Critical and mutation layers over a dataset, split by hallucination label.

    Attributes:
        n_items: Items with tokens.
        n_layers: Decoder layers L (layer indices run 0..L).
        unit: ``"first_token"`` or ``"all_tokens"`` (see the module docstring).
        all_tokens: Every generated token.
        hallucinated, grounded: Tokens of hallucinated and grounded words.
        share_difference: Share with a mutation layer, hallucinated minus grounded.
        odds_ratio, fisher_p: Fisher's exact test of the 2×2 table (hallucinated/grounded × mutation yes/no).
        tpr, fpr: "Mutation detected" among hallucinated / grounded tokens.
        auroc: AUROC of "mutation detected" as a hallucination detector, ``(1 + tpr − fpr) / 2``.
        score_auroc: AUROC of the detector's continuous score, when it gives one.
        n_bootstrap: Bootstrap replicates behind the intervals.
    """

    n_items: int
    n_layers: int
    unit: str
    all_tokens: GroupStats
    hallucinated: GroupStats
    grounded: GroupStats
    share_difference: Estimate
    odds_ratio: float | None
    fisher_p: float | None
    tpr: float | None
    fpr: float | None
    auroc: Estimate
    score_auroc: Estimate | None
    n_bootstrap: int

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = value.to_dict() if hasattr(value, "to_dict") else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerStatistics:
        return cls(
            n_items=int(data["n_items"]),
            n_layers=int(data["n_layers"]),
            unit=str(data["unit"]),
            all_tokens=GroupStats.from_dict(data["all_tokens"]),
            hallucinated=GroupStats.from_dict(data["hallucinated"]),
            grounded=GroupStats.from_dict(data["grounded"]),
            share_difference=Estimate.from_dict(data["share_difference"]),
            odds_ratio=data["odds_ratio"],
            fisher_p=data["fisher_p"],
            tpr=data["tpr"],
            fpr=data["fpr"],
            auroc=Estimate.from_dict(data["auroc"]),
            score_auroc=Estimate.from_dict(data["score_auroc"]) if data.get("score_auroc") else None,
            n_bootstrap=int(data["n_bootstrap"]),
        )

    def summary_lines(self) -> list[str]:
        def num(value: float | None, fmt: str = ".3f") -> str:
            return "n/a" if value is None else format(value, fmt)

        h, g = self.hallucinated, self.grounded
        return [
            f"{self.all_tokens.n_tokens} tokens from {self.n_items} items; median critical layer "
            f"{num(self.all_tokens.critical.median, '.1f')}, {num(self.all_tokens.share_with_mutation, '.1%')} of "
            "all tokens with a mutation layer",
            f"hallucinated: {h.n_tokens} tokens ({_UNIT_TEXT.get(self.unit, self.unit)}), "
            f"{num(h.share_with_mutation, '.1%')} with a mutation layer; grounded: {g.n_tokens} tokens, "
            f"{num(g.share_with_mutation, '.1%')}",
            f"AUROC of 'mutation detected' for hallucination: {num(self.auroc.value)} "
            f"[{num(self.auroc.low)}, {num(self.auroc.high)}]; Fisher p = {num(self.fisher_p, '.3g')}",
        ]


def layer_statistics(
    tokens: pd.DataFrame,
    n_layers: int,
    *,
    unit: Unit = "first_token",
    include_eos: bool = False,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> LayerStatistics:
    """Statistics of critical and mutation layers over a dataset's tokens.

    Args:
        tokens: One row per generated token with columns ``item``, ``label`` (``"hallucinated"``,
            ``"grounded"``, ``"exempt"`` or null), ``first`` (first token of its word), ``critical_layer``
            (nullable int), ``mutation_layers`` (list of ints) and optionally ``mutation_score`` (float) — the
            ``tokens.parquet`` of a run directory.
        n_layers: Decoder layers L.
        unit: ``"first_token"`` or ``"all_tokens"`` of each judged word.
        include_eos: Count a final end-of-sequence token among "all tokens" (column ``is_eos``; left out by
            default, as it is not part of the text).
        n_bootstrap: Replicates of the bootstrap over items (0: no intervals).
        seed: Seed of the bootstrap.
    """
    if unit not in ("first_token", "all_tokens"):
        raise SettingsError(f"unit must be 'first_token' or 'all_tokens', got {unit!r}")
    missing = {"item", "label", "first", "critical_layer", "mutation_layers"} - set(tokens.columns)
    if missing:
        raise SettingsError(f"the token table lacks column(s) {sorted(missing)}")
    tokens, judged = _counted_tokens(tokens, unit=unit, include_eos=include_eos)
    hallucinated = _group(judged[judged["label"] == "hallucinated"], n_layers)
    grounded = _group(judged[judged["label"] == "grounded"], n_layers)

    positive = (judged["label"] == "hallucinated").to_numpy()
    detected = np.array([len(m) > 0 for m in _mutations_of(judged)], dtype=bool)
    tpr = hallucinated.share_with_mutation
    fpr = grounded.share_with_mutation
    auroc_value = (1 + tpr - fpr) / 2 if tpr is not None and fpr is not None else None
    diff_value = tpr - fpr if tpr is not None and fpr is not None else None
    odds_ratio, fisher_p = _fisher(hallucinated, grounded)

    has_scores = "mutation_score" in judged.columns and judged["mutation_score"].notna().any()
    scores = judged["mutation_score"].astype(float).fillna(-np.inf).to_numpy() if has_scores else None
    score_value = weighted_auroc(scores, positive) if scores is not None else None
    items = judged["item"].astype(str).to_numpy()
    diff_reps, auroc_reps, score_reps = (
        bootstrap_over_items(items, positive, detected, scores, n_bootstrap=n_bootstrap, seed=seed)
        if auroc_value is not None
        else ([], [], [])
    )
    return LayerStatistics(
        n_items=int(tokens["item"].nunique()),
        n_layers=n_layers,
        unit=unit,
        all_tokens=_group(tokens, n_layers),
        hallucinated=hallucinated,
        grounded=grounded,
        share_difference=Estimate(diff_value, *percentile_interval(diff_reps)),
        odds_ratio=odds_ratio,
        fisher_p=fisher_p,
        tpr=tpr,
        fpr=fpr,
        auroc=Estimate(auroc_value, *percentile_interval(auroc_reps)),
        score_auroc=Estimate(score_value, *percentile_interval(score_reps)) if scores is not None else None,
        n_bootstrap=n_bootstrap,
    )


def _critical_of(frame: pd.DataFrame) -> list[int | None]:
    """The ``critical_layer`` column of a token table as ints (``None``: no critical layer)."""
    import pandas as pd

    return [None if pd.isna(v) else int(v) for v in frame["critical_layer"]]


def _mutations_of(frame: pd.DataFrame) -> list[list[int]]:
    """The ``mutation_layers`` column of a token table as lists of ints (a missing list reads as empty)."""
    return [
        [int(x) for x in m] if m is not None and not isinstance(m, float) else []
        for m in frame["mutation_layers"]
    ]


def _group(frame: pd.DataFrame, n_layers: int) -> GroupStats:
    """The critical and mutation layers of a group of tokens (rows of a token table)."""
    return GroupStats.of(_critical_of(frame), _mutations_of(frame), n_layers)


def _counted_tokens(
    tokens: pd.DataFrame, *, unit: Unit, include_eos: bool
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tokens counted among "all tokens" (a final EOS only with ``include_eos``) and, of them, the judged ones
    of the ``unit``: hallucinated or grounded, and with ``"first_token"`` only each word's first token."""
    if not include_eos and "is_eos" in tokens.columns:
        tokens = tokens[~tokens["is_eos"].fillna(False).astype(bool)]
    judged = tokens[tokens["label"].isin(["hallucinated", "grounded"])]
    if unit == "first_token":
        judged = judged[judged["first"].astype(bool)]
    return tokens, judged


def _fisher(hallucinated: GroupStats, grounded: GroupStats) -> tuple[float | None, float | None]:
    """Odds ratio (``None`` when infinite) and p-value of Fisher's exact test on the 2×2 table hallucinated /
    grounded × mutation yes / no; both ``None`` when a group has no token."""
    if not (hallucinated.n_tokens and grounded.n_tokens):
        return None, None
    from scipy.stats import fisher_exact

    table = [
        [hallucinated.n_with_mutation, hallucinated.n_tokens - hallucinated.n_with_mutation],
        [grounded.n_with_mutation, grounded.n_tokens - grounded.n_with_mutation],
    ]
    result = fisher_exact(table)
    return (float(result[0]) if np.isfinite(result[0]) else None), float(result[1])
