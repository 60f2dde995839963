"""Every detector applied to every generated token of a trace: :func:`analyze_trace` -> :class:`TraceAnalysis`."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from evolens.analysis.detectors import (
    Mutation,
    critical_layers_from_jsd,
    critical_layers_from_prob,
    mutation_layers_by_token,
    stage_critical_layers,
    stage_jsd_medians,
    stage_of_layers,
)
from evolens.analysis.io import JsonResult
from evolens.analysis.params import NOT_FOUND, DetectorParams
from evolens.errors import SettingsError

if TYPE_CHECKING:
    from evolens.metrics.compute import LayerMetrics
    from evolens.trace import Trace

KIND = "evolens.trace_analysis"
DEFAULT_NAME = "analysis.json"


@dataclass(frozen=True, eq=False)
class TraceAnalysis(JsonResult):
    """Critical layers, mutation layers and stages of every generated token of one trace.

    Layer numbers are state indices (0 = embeddings, ``l`` = output of decoder layer ``l``, 1-based); ``-1``
    means "not found". ``T`` = number of generated tokens (the EOS token included when one was generated).

    Attributes:
        item_id: The trace's item id.
        n_layers: Decoder layers L.
        params: The detector parameters used.
        tokens: ``T`` display strings of the generated tokens.
        token_ids: ``[T]`` generated token ids.
        is_eos: ``[T]`` whether the step is the final EOS token (aggregations leave it out by default).
        critical_layer_prob: ``[T]`` critical layer from the probability curve (paper §3.1), or -1.
        critical_layer_jsd: ``[T]`` critical layer from the adjacent-layer JSD curve (§4.1), or -1.
        critical_layer: ``[T]`` the critical layer that delimits the stages (``params.stage_critical``, falling
            back to the other one when ``params.stage_fallback``), or -1.
        mutations: ``T`` lists of :class:`~evolens.analysis.detectors.Mutation`, ascending by layer, all after
            ``critical_layer``.
        rapid_jsd: ``[T]`` median JSD of transitions ``first_layer .. critical - 1`` (NaN without critical layer).
        plateau_jsd: ``[T]`` median JSD of transitions ``critical .. L - 1`` (NaN without critical layer).
        baseline_jsd: ``[L]`` the layer baseline the spikes were held against (median JSD of each transition over
            the trace's tokens, or the one given), or ``None`` when there was none.
        lens_mode: The lens of the metrics analysed.
        model_source: Which model produced the trace ("" if unknown).
    """

    result_kind: ClassVar[str] = KIND
    default_name: ClassVar[str] = DEFAULT_NAME

    item_id: str
    n_layers: int
    params: DetectorParams
    tokens: list[str]
    token_ids: np.ndarray
    is_eos: np.ndarray
    critical_layer_prob: np.ndarray
    critical_layer_jsd: np.ndarray
    critical_layer: np.ndarray
    mutations: list[list[Mutation]]
    rapid_jsd: np.ndarray
    plateau_jsd: np.ndarray
    baseline_jsd: np.ndarray | None = None
    lens_mode: str = "logit"
    model_source: str = ""
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_steps(self) -> int:
        return len(self.tokens)

    @property
    def mutation_layer(self) -> np.ndarray:
        """``[T]`` the first (lowest) mutation layer of each token, or -1."""
        return np.array([m[0].layer if m else NOT_FOUND for m in self.mutations], dtype=np.int64)

    @property
    def mutation_layers(self) -> list[list[int]]:
        """Every mutation layer of each token, ascending."""
        return [[m.layer for m in ms] for ms in self.mutations]

    @property
    def stages(self) -> np.ndarray:
        """``[L + 1, T]`` int8 stage of every (state, token): 0 rapid evolution, 1 stabilisation, 2 mutation,
        -1 undetermined (no critical layer)."""
        if "stages" not in self._cache:
            columns = [
                stage_of_layers(self.n_layers, int(c), int(m))
                for c, m in zip(self.critical_layer, self.mutation_layer, strict=True)
            ]
            self._cache["stages"] = (
                np.stack(columns, axis=1) if columns else np.zeros((self.n_layers + 1, 0), dtype=np.int8)
            )
        return self._cache["stages"]

    def agreement(self) -> np.ndarray:
        """``[T]`` int8: 1 when both critical layers were found and differ by at most
        ``params.agreement_layers(L)``, 0 when both were found and differ more, -1 when either is missing."""
        both = (self.critical_layer_prob != NOT_FOUND) & (self.critical_layer_jsd != NOT_FOUND)
        close = np.abs(self.critical_layer_prob - self.critical_layer_jsd) <= self.params.agreement_layers(
            self.n_layers
        )
        return np.where(both, close.astype(np.int8), np.int8(-1)).astype(np.int8)

    def agreement_rate(self, *, include_eos: bool = False) -> float:
        """Fraction of tokens (with both critical layers found) whose two critical layers agree; NaN if none."""
        agree = self.agreement()
        if not include_eos:
            agree = agree[~self.is_eos]
        decided = agree[agree >= 0]
        return float(decided.mean()) if decided.size else math.nan

    def step_mask(self, *, include_eos: bool = False) -> np.ndarray:
        """``[T]`` bool: the steps aggregations use."""
        return np.ones(self.n_steps, dtype=bool) if include_eos else ~self.is_eos

    # ---------------------------------------------------------------- serialise
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; ``stages`` and ``mutation_layer`` are included for readers without evolens
        (and ignored by :meth:`from_dict`, which recomputes them)."""
        return {
            "item_id": self.item_id,
            "n_layers": self.n_layers,
            "params": self.params.to_dict(),
            "lens_mode": self.lens_mode,
            "model_source": self.model_source,
            "tokens": list(self.tokens),
            "token_ids": self.token_ids.tolist(),
            "is_eos": self.is_eos.tolist(),
            "critical_layer_prob": self.critical_layer_prob.tolist(),
            "critical_layer_jsd": self.critical_layer_jsd.tolist(),
            "critical_layer": self.critical_layer.tolist(),
            "mutation_layer": self.mutation_layer.tolist(),
            "mutations": [[m.to_dict() for m in ms] for ms in self.mutations],
            "rapid_jsd": [None if math.isnan(v) else v for v in self.rapid_jsd.tolist()],
            "plateau_jsd": [None if math.isnan(v) else v for v in self.plateau_jsd.tolist()],
            "baseline_jsd": self.baseline_jsd.tolist() if self.baseline_jsd is not None else None,
            "stages": self.stages.T.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TraceAnalysis:
        def ints(key: str) -> np.ndarray:
            return np.asarray(data[key], dtype=np.int64).reshape(-1)

        def floats(key: str) -> np.ndarray:
            return np.asarray([math.nan if v is None else v for v in data[key]], dtype=np.float64)

        return cls(
            item_id=str(data["item_id"]),
            n_layers=int(data["n_layers"]),
            params=DetectorParams.from_dict(data["params"]),
            tokens=[str(t) for t in data["tokens"]],
            token_ids=ints("token_ids"),
            is_eos=np.asarray(data["is_eos"], dtype=bool).reshape(-1),
            critical_layer_prob=ints("critical_layer_prob"),
            critical_layer_jsd=ints("critical_layer_jsd"),
            critical_layer=ints("critical_layer"),
            mutations=[[Mutation.from_dict(m) for m in ms] for ms in data["mutations"]],
            rapid_jsd=floats("rapid_jsd"),
            plateau_jsd=floats("plateau_jsd"),
            baseline_jsd=(
                np.asarray(data["baseline_jsd"], dtype=np.float64)
                if data.get("baseline_jsd") is not None
                else None
            ),
            lens_mode=str(data.get("lens_mode", "logit")),
            model_source=str(data.get("model_source", "")),
        )


def analyze_metrics(
    metrics: LayerMetrics,
    params: DetectorParams | None = None,
    *,
    tokens: list[str] | None = None,
    item_id: str = "0",
    ends_with_eos: bool = False,
    model_source: str = "",
    baseline_jsd: np.ndarray | Sequence[float] | None = None,
) -> TraceAnalysis:
    """Run every detector on every step of ``metrics`` (see :func:`analyze_trace`).

    Args:
        metrics: A trace's :class:`~evolens.metrics.compute.LayerMetrics`.
        params: Detector parameters (defaults: :class:`DetectorParams()`).
        tokens: Display strings of the generated tokens (default: ``"<id>"``).
        item_id: Name of the item.
        ends_with_eos: The last step is the EOS token.
        model_source: Which model produced the metrics.
        baseline_jsd: ``[L]`` layer baseline for the spikes (e.g. :func:`jsd_baseline` over a dataset); default:
            the median over this trace's tokens (EOS left out) when it has at least ``baseline_min_tokens`` of
            them, else none. Only used when ``params.spike_layer_ratio > 0``.
    """
    params = params or DetectorParams()
    n_layers, n_steps = metrics.n_layers, metrics.n_steps
    params.check_depth(n_layers)
    if tokens is None:
        tokens = [f"<{int(i)}>" for i in metrics.target_ids.tolist()]
    if len(tokens) != n_steps:
        raise SettingsError(f"got {len(tokens)} token strings for {n_steps} steps")
    jsd, probs, top1_ids, top1_probs = _detector_curves(metrics, params)
    is_eos = np.zeros(n_steps, dtype=bool)
    if ends_with_eos and n_steps:
        is_eos[-1] = True
    baseline = _layer_baseline(jsd, is_eos, baseline_jsd, params, n_layers)
    spike_baseline = baseline if params.spike_layer_ratio > 0 else None

    crit_prob, crit_jsd, crit, rapid, plateau, mutations = _detect_steps(
        jsd, probs, top1_ids, top1_probs, params, spike_baseline
    )
    return TraceAnalysis(
        item_id=item_id,
        n_layers=n_layers,
        params=params,
        tokens=list(tokens),
        token_ids=metrics.target_ids.numpy().astype(np.int64),
        is_eos=is_eos,
        critical_layer_prob=crit_prob,
        critical_layer_jsd=crit_jsd,
        critical_layer=crit,
        mutations=mutations,
        rapid_jsd=rapid,
        plateau_jsd=plateau,
        baseline_jsd=spike_baseline,
        lens_mode=metrics.lens_mode,
        model_source=model_source,
    )


def _detect_steps(
    jsd: np.ndarray,
    probs: np.ndarray,
    top1_ids: np.ndarray,
    top1_probs: np.ndarray,
    params: DetectorParams,
    spike_baseline: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[list[Mutation]]]:
    """Run the detectors on every step ``t`` of the ``[L(+1), T]`` curves of :func:`_detector_curves` at once:
    its probability- and JSD-based critical layers, the stage critical layer, the median JSD of its rapid-change
    stage and of its plateau, and its mutation layers (none without a critical layer)."""
    crit_prob = critical_layers_from_prob(probs, params)  # every step at once
    crit_jsd = critical_layers_from_jsd(jsd, params)
    crit = stage_critical_layers(crit_prob, crit_jsd, params)
    rapid, plateau = stage_jsd_medians(jsd, crit, params.first_layer)
    mutations = mutation_layers_by_token(
        jsd, crit, params, top1_ids=top1_ids, top1_probs=top1_probs, baseline=spike_baseline
    )
    return crit_prob, crit_jsd, crit, rapid, plateau, mutations


def _detector_curves(
    metrics: LayerMetrics, params: DetectorParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The ``[L(+1), T]`` float64/int curves the detectors read: the JSD of each transition (``jsd_reduction``),
    the probability curve (``prob_curve``: the generated token's or the top-1's), and the top-1 ids and
    probabilities of every state."""
    jsd = (metrics.jsd_bits if params.jsd_reduction == "bits" else metrics.jsd_paper).double().numpy()
    if params.prob_curve == "generated":
        probs = metrics.target_logprobs.double().exp().numpy()
    else:
        probs = metrics.topk_logprobs[..., 0].double().exp().numpy()
    top1_ids = metrics.topk_ids[..., 0].numpy()
    top1_probs = metrics.topk_logprobs[..., 0].double().exp().numpy()
    return jsd, probs, top1_ids, top1_probs


def _layer_baseline(
    jsd: np.ndarray,
    is_eos: np.ndarray,
    baseline_jsd: np.ndarray | Sequence[float] | None,
    params: DetectorParams,
    n_layers: int,
) -> np.ndarray | None:
    """The ``[L]`` layer baseline of the spikes: ``baseline_jsd`` checked, else the median of ``jsd`` over the
    trace's non-EOS tokens when there are at least ``params.baseline_min_tokens``, else ``None``."""
    if baseline_jsd is not None:
        baseline = np.asarray(baseline_jsd, dtype=np.float64).reshape(-1)
        if baseline.size != n_layers or not np.all(np.isfinite(baseline)):
            raise SettingsError(f"baseline_jsd must be {n_layers} finite values, one per transition")
        return baseline
    if int((~is_eos).sum()) >= params.baseline_min_tokens:
        return np.median(jsd[:, ~is_eos], axis=1)
    return None


def jsd_baseline(traces: Iterable[Trace], params: DetectorParams | None = None) -> np.ndarray:
    """``[L]`` median JSD of each transition over every token (EOS left out) of ``traces``: a dataset-wide layer
    baseline for :func:`analyze_trace` (useful for short answers, whose own traces are too short for one).

    ``traces`` may be any iterable, e.g. a generator loading one stored trace at a time: only the ``[L, T]`` JSD
    columns are kept."""
    params = params or DetectorParams()
    columns = []
    depths: set[int] = set()
    for trace in traces:
        depths.add(trace.n_layers)
        if len(depths) != 1:
            raise SettingsError(f"traces come from models of different depths {sorted(depths)}")
        jsd = trace.jsd(params.jsd_reduction).double().numpy()
        keep = trace.n_steps - 1 if trace.stop_reason == "eos" and trace.n_steps > 1 else trace.n_steps
        columns.append(jsd[:, :keep])
    if not columns:
        raise SettingsError("give at least one trace")
    return np.median(np.concatenate(columns, axis=1), axis=1)


def analyze_trace(
    trace: Trace,
    params: DetectorParams | None = None,
    *,
    baseline_jsd: np.ndarray | Sequence[float] | None = None,
) -> TraceAnalysis:
    """Critical layers (probability- and JSD-based), mutation layers and stages of every token of ``trace``.

    Pure: reads only ``trace.metrics`` (works on loaded traces, no model needed). Definitions: README section
    "Detectors" and :mod:`evolens.analysis.detectors`. ``baseline_jsd``: see :func:`analyze_metrics`.

    Example:
        >>> from evolens.analysis import DetectorParams, analyze_trace
        >>> analysis = analyze_trace(trace, DetectorParams(first_layer=1))  # doctest: +SKIP
        >>> analysis.critical_layer_jsd, analysis.mutation_layer, analysis.stages.shape  # doctest: +SKIP
    """
    return analyze_metrics(
        trace.metrics,
        params,
        tokens=list(trace.tokens),
        item_id=trace.item_id,
        ends_with_eos=trace.stop_reason == "eos",
        model_source=trace.model.source,
        baseline_jsd=baseline_jsd,
    )
