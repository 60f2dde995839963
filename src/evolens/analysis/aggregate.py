"""Aggregation of :class:`~evolens.analysis.TraceAnalysis` results per item (image) and per dataset.

Distributions of layers are histograms over states ``0..L``. Medians and rates come with seeded percentile
bootstrap confidence intervals: per item the unit of resampling is the token; per dataset it is the item (a
cluster bootstrap: tokens of one image are not independent), with the resampled items' tokens pooled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from evolens.analysis.io import JsonResult, clean_json
from evolens.analysis.params import NOT_FOUND, DetectorParams
from evolens.analysis.trace_analysis import TraceAnalysis
from evolens.errors import SettingsError

KIND = "evolens.analysis_summary"
DEFAULT_NAME = "summary.json"
QUANTITIES: tuple[str, ...] = (
    "critical_layer_prob",
    "critical_layer_jsd",
    "critical_layer",
    "mutation_layer",
    "mutation_layers",
)
"""Layer quantities summarised: the three critical layers, the first mutation layer, and every mutation layer
(pooled: a token with two mutation layers counts twice)."""


@dataclass(frozen=True)
class Estimate:
    """A statistic with its percentile bootstrap confidence interval.

    Attributes:
        value: The statistic on the data (NaN when there is no data).
        ci_low: Lower bound of the ``level`` interval (NaN without data or with ``n_boot = 0``).
        ci_high: Upper bound.
        n: Number of observations behind ``value`` (tokens, or for rates the denominator).
        level: Confidence level, e.g. 0.95.
        n_boot: Bootstrap resamples.
        unit: What was resampled: ``"token"`` or ``"item"``.
    """

    value: float
    ci_low: float
    ci_high: float
    n: int
    level: float
    n_boot: int
    unit: str

    def to_dict(self) -> dict[str, Any]:
        """Plain dict; NaN becomes ``None`` (strict JSON)."""
        return clean_json(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Estimate:
        def f(key: str) -> float:
            return math.nan if data[key] is None else float(data[key])

        return cls(f("value"), f("ci_low"), f("ci_high"), int(data["n"]), float(data["level"]),
                   int(data["n_boot"]), str(data["unit"]))  # fmt: skip


@dataclass(frozen=True)
class LayerDistribution:
    """The distribution of one layer quantity over tokens.

    Attributes:
        counts: ``L + 1`` counts: ``counts[l]`` tokens have the quantity at state ``l``.
        n_tokens: Tokens considered (found or not).
        n_found: Tokens for which the layer was found (for ``mutation_layers``: the number of mutation layers).
        median: Median layer of the found ones, with its bootstrap interval.
        mean: Mean layer of the found ones (NaN if none).
    """

    counts: list[int]
    n_tokens: int
    n_found: int
    median: Estimate
    mean: float

    @property
    def found_rate(self) -> float:
        """``n_found / n_tokens`` (NaN without tokens)."""
        return self.n_found / self.n_tokens if self.n_tokens else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": list(self.counts),
            "n_tokens": self.n_tokens,
            "n_found": self.n_found,
            "found_rate": clean_json(self.found_rate),
            "median": self.median.to_dict(),
            "mean": clean_json(self.mean),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerDistribution:
        return cls(
            counts=[int(c) for c in data["counts"]],
            n_tokens=int(data["n_tokens"]),
            n_found=int(data["n_found"]),
            median=Estimate.from_dict(data["median"]),
            mean=math.nan if data["mean"] is None else float(data["mean"]),
        )


@dataclass(frozen=True)
class ItemSummary:
    """One item (image): distributions of its tokens' layers, with token-bootstrap intervals.

    Attributes:
        item_id: The item.
        n_tokens: Tokens summarised (EOS left out unless asked).
        distributions: One :class:`LayerDistribution` per name in :data:`QUANTITIES`.
        mutation_rate: Fraction of tokens with a critical layer that have at least one mutation layer.
        agreement_rate: Fraction of tokens with both critical layers whose two critical layers agree.
    """

    item_id: str
    n_tokens: int
    distributions: dict[str, LayerDistribution]
    mutation_rate: Estimate
    agreement_rate: Estimate

    def to_dict(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "n_tokens": self.n_tokens,
            "distributions": {k: v.to_dict() for k, v in self.distributions.items()},
            "mutation_rate": self.mutation_rate.to_dict(),
            "agreement_rate": self.agreement_rate.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ItemSummary:
        return cls(
            item_id=str(data["item_id"]),
            n_tokens=int(data["n_tokens"]),
            distributions={k: LayerDistribution.from_dict(v) for k, v in data["distributions"].items()},
            mutation_rate=Estimate.from_dict(data["mutation_rate"]),
            agreement_rate=Estimate.from_dict(data["agreement_rate"]),
        )


@dataclass(frozen=True)
class AnalysisSummary(JsonResult):
    """A dataset of analysed traces: pooled distributions with item-bootstrap intervals, plus every item.

    Attributes:
        n_layers: Decoder layers L (all items share it).
        n_items: Items summarised.
        n_tokens: Tokens summarised.
        distributions: Pooled :class:`LayerDistribution` per name in :data:`QUANTITIES` (intervals resample
            items).
        mutation_rate: Pooled fraction of tokens with a critical layer that have a mutation layer.
        agreement_rate: Pooled agreement rate of the probability- and JSD-based critical layers.
        items: Per-item summaries, in input order.
        params: The detector parameters of the analyses (``None`` if they differ between items).
        include_eos: Whether EOS steps were counted.
        n_boot: Bootstrap resamples.
        level: Confidence level.
        seed: Seed of the bootstrap RNG.
    """

    result_kind: ClassVar[str] = KIND
    default_name: ClassVar[str] = DEFAULT_NAME

    n_layers: int
    n_items: int
    n_tokens: int
    distributions: dict[str, LayerDistribution]
    mutation_rate: Estimate
    agreement_rate: Estimate
    items: list[ItemSummary]
    params: DetectorParams | None
    include_eos: bool
    n_boot: int
    level: float
    seed: int

    def table(self) -> list[dict[str, Any]]:
        """Long rows ``{"item_id", "quantity", "layer", "count"}`` of every item's histograms (for Parquet/CSV)."""
        return [
            {"item_id": item.item_id, "quantity": name, "layer": layer, "count": count}
            for item in self.items
            for name, dist in item.distributions.items()
            for layer, count in enumerate(dist.counts)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_layers": self.n_layers,
            "n_items": self.n_items,
            "n_tokens": self.n_tokens,
            "distributions": {k: v.to_dict() for k, v in self.distributions.items()},
            "mutation_rate": self.mutation_rate.to_dict(),
            "agreement_rate": self.agreement_rate.to_dict(),
            "items": [i.to_dict() for i in self.items],
            "params": self.params.to_dict() if self.params is not None else None,
            "include_eos": self.include_eos,
            "n_boot": self.n_boot,
            "level": self.level,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnalysisSummary:
        return cls(
            n_layers=int(data["n_layers"]),
            n_items=int(data["n_items"]),
            n_tokens=int(data["n_tokens"]),
            distributions={k: LayerDistribution.from_dict(v) for k, v in data["distributions"].items()},
            mutation_rate=Estimate.from_dict(data["mutation_rate"]),
            agreement_rate=Estimate.from_dict(data["agreement_rate"]),
            items=[ItemSummary.from_dict(i) for i in data["items"]],
            params=DetectorParams.from_dict(data["params"]) if data.get("params") is not None else None,
            include_eos=bool(data["include_eos"]),
            n_boot=int(data["n_boot"]),
            level=float(data["level"]),
            seed=int(data["seed"]),
        )


# ---------------------------------------------------------------------------- statistics
def median_from_counts(counts: np.ndarray) -> np.ndarray:
    """Median of the values ``0..K-1`` given by histogram ``counts [..., K]`` (NaN where empty).

    Equals ``np.median`` of the expanded values: the mean of the two middle order statistics for even totals.
    """
    counts = np.asarray(counts)
    total = counts.sum(-1)
    cum = np.cumsum(counts, axis=-1)
    # 0-based order statistics (n - 1) // 2 and n // 2
    lo = (np.maximum(total, 1) - 1) // 2
    hi = np.maximum(total, 1) // 2
    lo_val = (cum <= lo[..., None]).sum(-1)
    hi_val = (cum <= hi[..., None]).sum(-1)
    out = (lo_val + hi_val) / 2.0
    return np.where(total > 0, out, np.nan)


def _interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return math.nan, math.nan
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(samples, alpha)), float(np.quantile(samples, 1.0 - alpha))


def _histogram(values: np.ndarray, n_layers: int) -> np.ndarray:
    values = values[values != NOT_FOUND]
    return np.bincount(values, minlength=n_layers + 1)[: n_layers + 1]


def _check_bootstrap(n_boot: int, level: float) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 0:
        raise SettingsError(f"n_boot must be an integer >= 0, got {n_boot!r}")
    if not 0.0 < level < 1.0:
        raise SettingsError(f"the confidence level must be in (0, 1), got {level!r}")


def bootstrap_median(
    values: Sequence[int] | np.ndarray, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> Estimate:
    """Median of non-negative integer ``values`` (layers; ``-1`` entries are ignored) with a token bootstrap."""
    _check_bootstrap(n_boot, level)
    array = np.asarray(values, dtype=np.int64).reshape(-1)
    array = array[array != NOT_FOUND]
    if array.size and int(array.min()) < 0:
        raise SettingsError("layer values must be >= 0 (or -1 for not found)")
    counts = np.bincount(array) if array.size else np.zeros(1, dtype=np.int64)
    return _token_median(counts, n_boot, level, np.random.default_rng(seed))


def _token_median(counts: np.ndarray, n_boot: int, level: float, rng: np.random.Generator) -> Estimate:
    n = int(counts.sum())
    value = float(median_from_counts(counts))
    low = high = math.nan
    if n and n_boot:
        samples = rng.multinomial(n, counts / n, size=n_boot)
        low, high = _interval(median_from_counts(samples), level)
    return Estimate(value, low, high, n, level, n_boot, "token")


def _token_rate(k: int, n: int, n_boot: int, level: float, rng: np.random.Generator) -> Estimate:
    value = k / n if n else math.nan
    low = high = math.nan
    if n and n_boot:
        low, high = _interval(rng.binomial(n, k / n, size=n_boot) / n, level)
    return Estimate(value, low, high, n, level, n_boot, "token")


@dataclass
class _ItemCounts:
    hist: dict[str, np.ndarray]
    n_tokens: int
    mutated: int
    with_critical: int
    agree: int
    both: int


def _item_counts(analysis: TraceAnalysis, include_eos: bool) -> _ItemCounts:
    mask = analysis.step_mask(include_eos=include_eos)
    L = analysis.n_layers
    pooled = [layer for keep, ms in zip(mask, analysis.mutation_layers, strict=True) if keep for layer in ms]
    hist = {
        "critical_layer_prob": _histogram(analysis.critical_layer_prob[mask], L),
        "critical_layer_jsd": _histogram(analysis.critical_layer_jsd[mask], L),
        "critical_layer": _histogram(analysis.critical_layer[mask], L),
        "mutation_layer": _histogram(analysis.mutation_layer[mask], L),
        "mutation_layers": _histogram(np.asarray(pooled, dtype=np.int64), L),
    }
    agreement = analysis.agreement()[mask]
    has_crit = analysis.critical_layer[mask] != NOT_FOUND
    return _ItemCounts(
        hist=hist,
        n_tokens=int(mask.sum()),
        mutated=int(((analysis.mutation_layer[mask] != NOT_FOUND) & has_crit).sum()),
        with_critical=int(has_crit.sum()),
        agree=int((agreement == 1).sum()),
        both=int((agreement >= 0).sum()),
    )


def _mean_layer(counts: np.ndarray) -> float:
    n = counts.sum()
    return float((counts * np.arange(counts.size)).sum() / n) if n else math.nan


def summarize_item(
    analysis: TraceAnalysis,
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    include_eos: bool = False,
) -> ItemSummary:
    """Distributions, medians (token bootstrap), mutation and agreement rates of one analysed trace."""
    _check_bootstrap(n_boot, level)
    return _summarize_item(analysis, _item_counts(analysis, include_eos), n_boot, level, seed)


def _summarize_item(
    analysis: TraceAnalysis, c: _ItemCounts, n_boot: int, level: float, seed: int
) -> ItemSummary:
    rng = np.random.default_rng(seed)
    dists = {
        name: LayerDistribution(
            counts=hist.tolist(),
            n_tokens=c.n_tokens,
            n_found=int(hist.sum()),
            median=_token_median(hist, n_boot, level, rng),
            mean=_mean_layer(hist),
        )
        for name, hist in c.hist.items()
    }
    return ItemSummary(
        item_id=analysis.item_id,
        n_tokens=c.n_tokens,
        distributions=dists,
        mutation_rate=_token_rate(c.mutated, c.with_critical, n_boot, level, rng),
        agreement_rate=_token_rate(c.agree, c.both, n_boot, level, rng),
    )


def summarize(
    analyses: Sequence[TraceAnalysis],
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    include_eos: bool = False,
) -> AnalysisSummary:
    """Summarise analysed traces per item and for the whole dataset.

    Args:
        analyses: One :class:`TraceAnalysis` per item; all of the same depth L.
        n_boot: Bootstrap resamples (0: no intervals).
        level: Confidence level of the percentile intervals.
        seed: Seed of the bootstrap RNG (results are reproducible).
        include_eos: Count the final EOS steps too (off: EOS is not a word of the description).

    Dataset-level intervals resample items with replacement and pool their tokens (cluster bootstrap); item-level
    intervals resample tokens.
    """
    _check_bootstrap(n_boot, level)
    if not analyses:
        raise SettingsError("nothing to summarise: the list of analyses is empty")
    depths = {a.n_layers for a in analyses}
    if len(depths) != 1:
        raise SettingsError(
            f"analyses come from models of different depths {sorted(depths)}; summarise them apart"
        )
    n_layers = depths.pop()
    counts = [_item_counts(a, include_eos) for a in analyses]
    items = [
        _summarize_item(a, c, n_boot, level, seed + i)
        for i, (a, c) in enumerate(zip(analyses, counts, strict=True))
    ]
    n_items = len(analyses)
    weights = _item_weights(np.random.default_rng(seed), n_items, n_boot)
    n_tokens = sum(c.n_tokens for c in counts)
    dists = {
        name: _pooled_distribution(np.stack([c.hist[name] for c in counts]), weights, n_tokens, level, n_boot)
        for name in QUANTITIES
    }
    mutated, with_critical = (
        np.array([c.mutated for c in counts]),
        np.array([c.with_critical for c in counts]),
    )
    agree, both = np.array([c.agree for c in counts]), np.array([c.both for c in counts])
    params = {a.params for a in analyses}
    return AnalysisSummary(
        n_layers=n_layers,
        n_items=n_items,
        n_tokens=n_tokens,
        distributions=dists,
        mutation_rate=_pooled_rate(mutated, with_critical, weights, level, n_boot),
        agreement_rate=_pooled_rate(agree, both, weights, level, n_boot),
        items=items,
        params=params.pop() if len(params) == 1 else None,
        include_eos=include_eos,
        n_boot=n_boot,
        level=level,
        seed=seed,
    )


def _item_weights(rng: np.random.Generator, n_items: int, n_boot: int) -> np.ndarray:
    """``[n_boot, n_items]`` how often each item is drawn in each resample of the cluster bootstrap (items drawn
    with replacement)."""
    picks = (
        rng.integers(0, n_items, size=(n_boot, n_items)) if n_boot else np.zeros((0, n_items), dtype=np.int64)
    )
    return (
        np.stack([np.bincount(row, minlength=n_items) for row in picks]) if n_boot else np.zeros((0, n_items))
    )


def _pooled_distribution(
    per_item: np.ndarray, weights: np.ndarray, n_tokens: int, level: float, n_boot: int
) -> LayerDistribution:
    """The items' histograms ``per_item [items, L + 1]`` pooled, with the median's interval from the resampled
    items' pooled tokens (``weights`` of :func:`_item_weights`)."""
    pooled = per_item.sum(0)
    low = high = math.nan
    if n_boot and pooled.sum():
        low, high = _interval(median_from_counts(weights @ per_item), level)
    median = Estimate(float(median_from_counts(pooled)), low, high, int(pooled.sum()), level, n_boot, "item")
    return LayerDistribution(pooled.tolist(), n_tokens, int(pooled.sum()), median, _mean_layer(pooled))


def _pooled_rate(k: np.ndarray, n: np.ndarray, weights: np.ndarray, level: float, n_boot: int) -> Estimate:
    """The pooled rate ``sum(k) / sum(n)`` of per-item counts, with its interval over the resampled items
    (``weights`` of :func:`_item_weights`; a resample without any ``n`` counts as NaN and is left out)."""
    total = int(n.sum())
    value = float(k.sum() / total) if total else math.nan
    low = high = math.nan
    if n_boot and total:
        denom = weights @ n
        with np.errstate(invalid="ignore", divide="ignore"):
            low, high = _interval(np.where(denom > 0, (weights @ k) / np.maximum(denom, 1), np.nan), level)
    return Estimate(value, low, high, total, level, n_boot, "item")
