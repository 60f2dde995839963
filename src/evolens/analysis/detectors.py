"""Per-token detectors of the critical layer, the mutation layers and the three stages (paper §3-4).

Pure functions of one token's curves (numpy, float64 inside); :func:`evolens.analysis.analyze_trace` applies them
to every generated token of a trace. Layer numbers are state indices (see :mod:`evolens.analysis.params`): a
curve of probabilities has ``L + 1`` entries (states 0..L), a JSD curve ``L`` entries (transition ``l`` goes from
state ``l`` to ``l + 1``). Every definition is written out, with its defaults, in the README section "Detectors".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from evolens.analysis.params import NOT_FOUND, DetectorParams
from evolens.analysis.stages import MUTATION, RAPID, STABLE, UNKNOWN
from evolens.errors import SettingsError

Curve = torch.Tensor | np.ndarray | Sequence[float]

MAD_SCALE = 1.4826  # makes the MAD a consistent estimate of a normal standard deviation


@dataclass(frozen=True)
class Mutation:
    """One mutation layer of one token.

    Attributes:
        layer: State index ``m`` (``critical < m <= L``): decoder layer ``m`` produced the mutated state.
        jsd: JSD of the transition into it, ``jsd[m - 1]`` (units of ``DetectorParams.jsd_reduction``).
        ratio: ``jsd / level``, with ``level`` the median JSD from the critical layer on (``inf`` if level is 0;
            ``None`` in :meth:`to_dict`).
        is_spike: The transition exceeded the spike threshold.
        is_flip: The top-1 token changed at ``m`` and the new one persisted (``False`` when top-1 ids were not
            given).
        token_before: Top-1 id at state ``m - 1`` (``-1`` when top-1 ids were not given).
        token_after: Top-1 id at state ``m`` (``-1`` when not given).
    """

    layer: int
    jsd: float
    ratio: float
    is_spike: bool
    is_flip: bool
    token_before: int = NOT_FOUND
    token_after: int = NOT_FOUND

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = _json_float(self.ratio)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Mutation:
        values = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        values["ratio"] = math.inf if values.get("ratio") is None else float(values["ratio"])
        return cls(**values)


@dataclass(frozen=True)
class ChangePoint:
    """The best split of a JSD curve into a high segment and a low one (L1 fit of medians on log10 JSD).

    Attributes:
        layer: State index ``c`` where the low segment starts (transitions ``c..L-1`` are "after"), or ``-1``.
        median_before: Median JSD of transitions ``first_layer..c-1``.
        median_after: Median JSD of transitions ``c..L-1``.
        mean_before: Mean JSD of transitions ``first_layer..c-1``.
        mean_after: Mean JSD of transitions ``c..L-1``.
    """

    layer: int
    median_before: float
    median_after: float
    mean_before: float
    mean_after: float


@dataclass(frozen=True)
class HierarchyScore:
    """How hierarchical a JSD profile is (paper §6): one number, plus where the profile splits.

    Attributes:
        ratio: ``mean_before / mean_after`` at the best split (``inf`` if ``mean_after`` is 0, ``nan`` if the
            profile is too short to split; both ``None`` in :meth:`to_dict`). About 1 for a profile without
            stages; large for the LVLM pattern.
        split_layer: The best split (state index) whether or not it passes the critical-layer test, or ``-1``.
        critical_layer: The JSD critical layer of the profile (the split, if it passes the test), or ``-1``.
        mean_before, mean_after: Mean JSD of transitions ``first_layer..split-1`` and ``split..L-1``.
    """

    ratio: float
    split_layer: int
    critical_layer: int
    mean_before: float
    mean_after: float

    def to_dict(self) -> dict[str, Any]:
        return {k: _json_float(v) if isinstance(v, float) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HierarchyScore:
        return cls(
            ratio=_float_from_json(data["ratio"], default=math.nan),
            split_layer=int(data["split_layer"]),
            critical_layer=int(data["critical_layer"]),
            mean_before=_float_from_json(data["mean_before"], default=math.nan),
            mean_after=_float_from_json(data["mean_after"], default=math.nan),
        )


# ---------------------------------------------------------------------------- helpers
def as_curve(values: Curve, name: str = "curve") -> np.ndarray:
    """A 1-D float64 numpy copy of ``values``; NaN or infinite entries are refused."""
    if isinstance(values, torch.Tensor):
        array = values.detach().to(torch.float64).cpu().numpy()
    else:
        array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise SettingsError(f"{name} must be 1-D, got shape {tuple(array.shape)}")
    if not np.all(np.isfinite(array)):
        raise SettingsError(f"{name} has NaN or infinite entries")
    return array.copy()


def _json_float(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _float_from_json(value: Any, *, default: float) -> float:
    return default if value is None else float(value)


def as_curves(values: np.ndarray, name: str = "curves") -> np.ndarray:
    """A 2-D float64 numpy array of ``[layers, tokens]`` curves (one column per token); NaN or infinite entries are
    refused."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2:
        raise SettingsError(f"{name} must be 2-D [layers, tokens], got shape {tuple(array.shape)}")
    if not np.all(np.isfinite(array)):
        raise SettingsError(f"{name} has NaN or infinite entries")
    return array


def _masked_medians(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``[..., T]`` medians over axis -2 of the entries of ``values`` (``[..., n, T]``) where ``mask`` (broadcast
    to it) is true; each median is ``np.median``'s, to the last bit (the middle entry, or half the sum of the two
    middle ones). Every reduced column must hold at least one entry."""
    filled = np.where(mask, values, np.inf)
    filled.sort(axis=-2)  # the masked-out entries last
    count = np.broadcast_to(mask, filled.shape).sum(axis=-2, keepdims=True)
    low = np.take_along_axis(filled, (count - 1) // 2, axis=-2)
    high = np.take_along_axis(filled, count // 2, axis=-2)
    return ((low + high) / 2)[..., 0, :]


# the batched change point works on [splits, layers, columns] arrays: columns per block keep them ~16 MB
_CHANGE_POINT_ELEMENTS = 2**21


def jsd_change_layers(jsd: np.ndarray, params: DetectorParams | None = None) -> np.ndarray:
    """The change point ``c`` of :func:`jsd_change_point` of every column of ``jsd`` (``[L, T]``: one JSD curve per
    token), ``-1`` where there is none: ``[T]`` int64, the same layers as one call per column, in one vectorised
    pass over blocks of columns."""
    params = params or DetectorParams()
    curves = as_curves(jsd, "jsd")
    n_layers, n_tokens = curves.shape
    first = params.first_layer
    n_min = params.n_persist(n_layers)
    layers = np.full(n_tokens, NOT_FOUND, dtype=np.int64)
    n = n_layers - first  # transitions first_layer..L-1
    if n < n_min + 1 or n_tokens == 0:
        return layers
    n_splits = n - n_min  # head y[:k], rest y[k:] for k = 1..n_splits, i.e. c = first_layer + k
    block = max(1, _CHANGE_POINT_ELEMENTS // (n_splits * n))
    for at in range(0, n_tokens, block):
        tail = curves[first:, at : at + block]
        peak = tail.max(axis=0)
        # a curve that is 0 (or below) everywhere has no split; log10 of a non-positive value is not finite, and
        # then every split's cost is NaN or infinite, as one call's loop finds
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.log10(tail + np.maximum(1e-6 * peak, 1e-300))
        valid = (peak > 0.0) & np.isfinite(y).all(axis=0)
        y = np.where(valid, y, 0.0)
        layers[at : at + block] = np.where(valid, _best_splits(y, n_splits) + first, NOT_FOUND)
    return layers


def _best_splits(y: np.ndarray, n_splits: int) -> np.ndarray:
    """``[T]`` split ``k`` in ``1..n_splits`` of each column of ``y`` (``[n, T]``) that minimises the L1 cost of
    :func:`jsd_change_point` (``sum |y_head - median(y_head)| + sum |y_rest - median(y_rest)|``), the earliest
    unless a later one is lower by more than 1e-12 (as one call's loop keeps its best)."""
    n = y.shape[0]
    head = np.arange(n)[None, :, None] < np.arange(1, n_splits + 1)[:, None, None]  # [k, n, 1]
    values = np.broadcast_to(y, (n_splits, *y.shape))
    median_head = _masked_medians(values, head)[:, None]
    median_rest = _masked_medians(values, ~head)[:, None]
    costs = np.where(head, np.abs(values - median_head), np.abs(values - median_rest)).sum(axis=1)  # [k, T]
    best_cost = np.full(y.shape[1], math.inf)
    best = np.zeros(y.shape[1], dtype=np.int64)
    for k in range(n_splits):
        lower = costs[k] < best_cost - 1e-12
        best_cost = np.where(lower, costs[k], best_cost)
        best = np.where(lower, k + 1, best)
    return best


def jsd_change_point(jsd: Curve, params: DetectorParams | None = None) -> ChangePoint:
    """The split of ``jsd`` (``[L]``) into a high and a low segment that an L1 fit of two medians explains best.

    On ``y_l = log10(jsd[l] + eps)`` for transitions ``l`` in ``[first_layer, L)`` (``eps = 1e-6 * max jsd``),
    choose ``c`` in ``[first_layer + 1, L - n_persist]`` minimising
    ``sum_{l < c} |y_l - median(y_{<c})| + sum_{l >= c} |y_l - median(y_{>=c})|`` (earliest ``c`` on ties).
    Medians make the split robust to isolated spikes (mutations) in either segment. No acceptance test here;
    see :func:`critical_layer_from_jsd`. :func:`jsd_change_layers` finds the splits of many curves at once.
    """
    params = params or DetectorParams()
    curve = as_curve(jsd, "jsd")
    best = int(jsd_change_layers(curve[:, None], params)[0])
    if best == NOT_FOUND:
        return ChangePoint(NOT_FOUND, math.nan, math.nan, math.nan, math.nan)
    before, after = curve[params.first_layer : best], curve[best:]
    return ChangePoint(
        best, float(np.median(before)), float(np.median(after)), float(before.mean()), float(after.mean())
    )


# ---------------------------------------------------------------------------- detectors
def critical_layer_from_prob(probs: Curve, params: DetectorParams | None = None) -> int:
    """Critical layer from a probability curve ``[L + 1]`` (paper §3.1: "leaves ~0 and surges"), or ``-1``.

    With ``peak = max_{l >= first_layer} p[l]`` and ``theta = prob_rel * peak``: the first state
    ``c > first_layer`` with ``p[c - 1] < theta`` and ``p[l] >= theta`` for ``l`` in
    ``[c, min(c + n_persist - 1, L)]``. ``-1`` when ``peak < prob_min_peak`` (the token never stands out) or when
    no such upward crossing exists (e.g. the curve is already high at ``first_layer``: no surge).
    :func:`critical_layers_from_prob` gives the critical layers of many curves at once.
    """
    return int(critical_layers_from_prob(as_curve(probs, "probs")[:, None], params)[0])


def critical_layers_from_prob(probs: np.ndarray, params: DetectorParams | None = None) -> np.ndarray:
    """:func:`critical_layer_from_prob` of every column of ``probs`` (``[L + 1, T]``: one curve per token): ``[T]``
    int64, ``-1`` where a column has none."""
    params = params or DetectorParams()
    p = as_curves(probs, "probs")
    n_layers = p.shape[0] - 1
    params.check_depth(n_layers)
    first = params.first_layer
    peak = p[first:].max(axis=0)
    above = p >= params.prob_rel * peak
    # candidates c = first + 1 .. L: below theta at c - 1, at or above it on [c, min(c + n, L + 1))
    starts = np.arange(first + 1, n_layers + 1)
    ends = np.minimum(starts + params.n_persist(n_layers), n_layers + 1)
    counts = np.concatenate([np.zeros((1, p.shape[1]), dtype=np.int64), np.cumsum(above, axis=0)])
    stays = counts[ends] - counts[starts] == (ends - starts)[:, None]  # [candidates, T]
    surges = ~above[starts - 1] & stays
    found = surges.any(axis=0) & (peak >= params.prob_min_peak) & (peak > 0.0)
    return np.where(found, starts[surges.argmax(axis=0)], NOT_FOUND)


def critical_layer_from_jsd(jsd: Curve, params: DetectorParams | None = None) -> int:
    """Critical layer from an adjacent-layer JSD curve ``[L]`` (paper §4.1 #1: "drops to a low plateau"), or -1.

    The split ``c`` of :func:`jsd_change_point`, accepted when the drop is real:
    ``median(jsd[first_layer:c]) >= jsd_drop_ratio * median(jsd[c:])`` and, for ``jsd_reduction="bits"``,
    ``median(jsd[first_layer:c]) - median(jsd[c:]) >= jsd_min_gap_bits``. State ``c`` is the first state of the
    stabilisation stage: its outgoing transitions are on the plateau. :func:`critical_layers_from_jsd` gives the
    critical layers of many curves at once.
    """
    return int(critical_layers_from_jsd(as_curve(jsd, "jsd")[:, None], params)[0])


def critical_layers_from_jsd(jsd: np.ndarray, params: DetectorParams | None = None) -> np.ndarray:
    """:func:`critical_layer_from_jsd` of every column of ``jsd`` (``[L, T]``: one curve per token): ``[T]``
    int64, ``-1`` where a column has none."""
    params = params or DetectorParams()
    curves = as_curves(jsd, "jsd")
    params.check_depth(curves.shape[0])
    split = jsd_change_layers(curves, params)
    found = split != NOT_FOUND
    if not found.any():
        return split
    # the columns without a split take any valid one: their medians are not used
    at = np.where(found, split, params.first_layer + 1)
    layer = np.arange(curves.shape[0])[:, None]
    median_before = _masked_medians(curves, (layer >= params.first_layer) & (layer < at))
    median_after = _masked_medians(curves, layer >= at)
    accepted = found & (median_before >= params.jsd_drop_ratio * median_after)
    if params.jsd_reduction == "bits":
        accepted &= median_before - median_after >= params.jsd_min_gap_bits
    return np.where(accepted, split, NOT_FOUND)


def stage_critical_layer(crit_prob: int, crit_jsd: int, params: DetectorParams | None = None) -> int:
    """The critical layer the stages use: the ``params.stage_critical`` one (``"jsd"``: ``crit_jsd``, else
    ``crit_prob``), or the other when it was not found (``-1``) and ``params.stage_fallback`` allows it.
    :func:`stage_critical_layers` chooses for many tokens at once."""
    return int(stage_critical_layers(np.array([crit_prob]), np.array([crit_jsd]), params)[0])


def stage_critical_layers(
    crit_prob: np.ndarray, crit_jsd: np.ndarray, params: DetectorParams | None = None
) -> np.ndarray:
    """:func:`stage_critical_layer` of every token: ``[T]`` int64 from the ``[T]`` probability- and JSD-based
    critical layers."""
    params = params or DetectorParams()
    by_prob, by_jsd = np.asarray(crit_prob, dtype=np.int64), np.asarray(crit_jsd, dtype=np.int64)
    primary, other = (by_jsd, by_prob) if params.stage_critical == "jsd" else (by_prob, by_jsd)
    return np.where((primary != NOT_FOUND) | (not params.stage_fallback), primary, other)


def spike_threshold(jsd: Curve, critical: int, params: DetectorParams | None = None) -> tuple[float, float]:
    """``(threshold, level)`` of JSD spikes after ``critical``: ``level`` = median of ``jsd[critical:]``, scale =
    1.4826 * MAD, threshold = ``max(spike_ratio * level, level + spike_mads * scale, spike_min_bits)`` (the last
    term for bits only)."""
    params = params or DetectorParams()
    curve = as_curve(jsd, "jsd")
    if not 0 <= critical < curve.size:
        raise SettingsError(f"critical layer must be in [0, {curve.size - 1}], got {critical}")
    threshold, level = _spike_thresholds(curve[:, None], np.array([critical]), params)
    return float(threshold[0]), float(level[0])


def _spike_thresholds(
    curves: np.ndarray, critical: np.ndarray, params: DetectorParams
) -> tuple[np.ndarray, np.ndarray]:
    """``([T] threshold, [T] level)`` of :func:`spike_threshold` for every column of ``curves`` (``[L, T]``), each
    after its own ``critical`` state (``[T]``, each in ``[0, L)``)."""
    after = np.arange(curves.shape[0])[:, None] >= critical
    level = _masked_medians(curves, after)
    scale = MAD_SCALE * _masked_medians(np.abs(curves - level), after)
    threshold = np.maximum(params.spike_ratio * level, level + params.spike_mads * scale)
    if params.jsd_reduction == "bits":
        threshold = np.maximum(threshold, params.spike_min_bits)
    return threshold, level


def mutation_layers(
    jsd: Curve,
    critical: int,
    params: DetectorParams | None = None,
    *,
    top1_ids: Curve | None = None,
    top1_probs: Curve | None = None,
    baseline: Curve | None = None,
) -> list[Mutation]:
    """Mutation layers of one token after its critical layer (paper §3.2 and §4.1 #2), ascending.

    A state ``m`` in ``(critical, L]`` is a candidate when
      - *spike*: ``jsd[m - 1] > threshold`` (:func:`spike_threshold`) and, with a layer ``baseline``,
        ``jsd[m - 1] > spike_layer_ratio * baseline[m - 1]``; and/or
      - *flip*: the dominant token changes: ``top1[m] != top1[m - 1]``, the old top-1 held over
        ``[max(critical, m - n_persist), m - 1]``, the new one holds over ``[m, min(m + n_persist - 1, L)]``,
        and its probability at ``m`` is at least ``prob_min_peak``;
    combined by ``mutation_rule`` (``"jsd"``, ``"top1"``, ``"either"``, ``"both"``). ``critical = -1`` gives no
    mutation layers. :func:`mutation_layers_by_token` finds those of many tokens at once.

    Args:
        jsd: ``[L]`` adjacent-layer JSD.
        critical: The token's critical layer (state index) or ``-1``.
        params: Detector parameters.
        top1_ids: ``[L + 1]`` top-1 token id at each state (needed by the "top1" and "both" rules).
        top1_probs: ``[L + 1]`` its probability.
        baseline: ``[L]`` typical JSD of each transition (e.g. its median over the trace's tokens), or ``None``.
    """
    curve = as_curve(jsd, "jsd")
    if critical in (NOT_FOUND, curve.size):  # no state after it: nothing else is read
        return []
    ids = None if top1_ids is None else as_curve(top1_ids, "top1_ids")[:, None]
    probs = None if top1_probs is None else as_curve(top1_probs, "top1_probs")[:, None]
    return mutation_layers_by_token(
        curve[:, None], np.array([critical]), params, top1_ids=ids, top1_probs=probs, baseline=baseline
    )[0]


def mutation_layers_by_token(
    jsd: np.ndarray,
    critical: np.ndarray,
    params: DetectorParams | None = None,
    *,
    top1_ids: np.ndarray | None = None,
    top1_probs: np.ndarray | None = None,
    baseline: Curve | None = None,
) -> list[list[Mutation]]:
    """:func:`mutation_layers` of every token at once: ``jsd`` ``[L, T]`` (one column per token), ``critical``
    ``[T]`` (each a state index or ``-1``), ``top1_ids`` / ``top1_probs`` ``[L + 1, T]``, ``baseline`` ``[L]``
    (one for every token) or ``[L, T]`` (one each); one list per token."""
    params = params or DetectorParams()
    curves = as_curves(jsd, "jsd")
    n_layers, n_tokens = curves.shape
    crit = np.asarray(critical, dtype=np.int64).reshape(-1)
    if crit.size != n_tokens:
        raise SettingsError(f"got {crit.size} critical layers for {n_tokens} tokens")
    bad = (crit != NOT_FOUND) & ((crit < 0) | (crit > n_layers))
    if bad.any():
        raise SettingsError(f"critical layer must be in [0, {n_layers}] or -1, got {int(crit[bad][0])}")
    # columns with a state after the critical one: the others have no mutation layer
    live = np.flatnonzero((crit >= 0) & (crit < n_layers))
    found: list[list[Mutation]] = [[] for _ in range(n_tokens)]
    if live.size == 0:
        return found
    ids, probs = _top1_curves(top1_ids, top1_probs, n_layers, n_tokens, params)
    curves, crit = curves[:, live], crit[live]
    threshold, level = _spike_thresholds(curves, crit, params)
    thresholds = np.broadcast_to(threshold, curves.shape)
    if baseline is not None:
        thresholds = np.maximum(
            thresholds, params.spike_layer_ratio * _baselines(baseline, n_layers, n_tokens)[:, live]
        )
    # row m - 1 is state m = 1..L, a candidate after its column's critical state
    candidate = np.arange(1, n_layers + 1)[:, None] > crit
    spike = curves > thresholds
    if ids is not None and probs is not None:
        ids, probs = ids[:, live], probs[:, live]
        flip = _flips(ids, probs, crit, params)
    else:
        flip = np.zeros_like(spike)
    hits = candidate & _rule_hits(params.mutation_rule, spike, flip)
    for column, row in zip(*np.nonzero(hits.T), strict=True):  # by token, then by state
        m, value, lev = int(row) + 1, float(curves[row, column]), float(level[column])
        before = after = NOT_FOUND
        if ids is not None:
            before, after = int(ids[m - 1, column]), int(ids[m, column])
        found[int(live[column])].append(
            Mutation(
                m,
                value,
                value / lev if lev > 0 else math.inf,
                bool(spike[row, column]),
                bool(flip[row, column]),
                before,
                after,
            )
        )
    return found


def _baselines(baseline: Curve, n_layers: int, n_tokens: int) -> np.ndarray:
    """The ``[L, T]`` layer baseline of every token: one ``[L]`` for all, or one column each."""
    if isinstance(baseline, torch.Tensor):
        baseline = baseline.detach().cpu().numpy()
    if np.ndim(baseline) == 2:
        base = as_curves(np.asarray(baseline), "baseline")
        if base.shape != (n_layers, n_tokens):
            raise SettingsError(f"baseline must have {n_layers} entries (one per transition) per token")
        return base
    base = as_curve(baseline, "baseline")
    if base.size != n_layers:
        raise SettingsError(f"baseline must have {n_layers} entries (one per transition), got {base.size}")
    return np.broadcast_to(base[:, None], (n_layers, n_tokens))


def _flips(ids: np.ndarray, probs: np.ndarray, critical: np.ndarray, params: DetectorParams) -> np.ndarray:
    """``[L, T]``: row ``m - 1`` is whether the top-1 token flips at state ``m`` (see :func:`mutation_layers`):
    it changes, the old one held over ``[max(critical, m - n), m - 1]``, the new one holds over
    ``[m, min(m + n - 1, L)]`` and has probability ``>= prob_min_peak`` at ``m``."""
    n_states = ids.shape[0]  # L + 1
    n = params.n_persist(n_states - 1)
    same = ids[1:] == ids[:-1]  # [L]: state j + 1 repeats state j
    state = np.broadcast_to(np.arange(n_states)[:, None], ids.shape)
    # the runs of equal ids: where the one through each state begins and ends
    starts_run = np.vstack([np.ones_like(same[:1]), ~same])  # state j differs from state j - 1
    ends_run = np.vstack([~same, np.ones_like(same[:1])])  # state j + 1 differs from state j
    begins = np.maximum.accumulate(np.where(starts_run, state, 0), axis=0)
    ends = np.minimum.accumulate(np.where(ends_run, state, n_states)[::-1], axis=0)[::-1]
    held_back = state - begins + 1  # run of equal ids ending at each state
    held_on = ends - state + 1  # run of equal ids starting at each state
    m = np.arange(1, n_states)[:, None]
    since = np.maximum(critical, m - n)  # the old token held over [since, m - 1]
    until = np.minimum(m + n, n_states)  # the new one over [m, until - 1]
    return (
        ~same
        & (held_back[:-1] >= m - since)
        & (held_on[1:] >= until - m)
        & (probs[1:] >= params.prob_min_peak)
    )


def _top1_curves(
    top1_ids: np.ndarray | None,
    top1_probs: np.ndarray | None,
    n_layers: int,
    n_tokens: int,
    params: DetectorParams,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The ``[L + 1, T]`` top-1 ids and probabilities checked, or ``(None, None)`` when not given (refused by the
    ``"top1"`` and ``"both"`` mutation rules, which need them)."""
    if top1_ids is None or top1_probs is None:
        if params.mutation_rule in ("top1", "both"):
            raise SettingsError(
                f"mutation_rule={params.mutation_rule!r} needs the top-1 ids and probabilities"
            )
        return None, None
    ids = as_curves(top1_ids, "top1_ids").astype(np.int64)
    probs = as_curves(top1_probs, "top1_probs")
    if ids.shape != (n_layers + 1, n_tokens) or probs.shape != (n_layers + 1, n_tokens):
        raise SettingsError(f"top-1 curves must have {n_layers + 1} entries (states 0..L)")
    return ids, probs


def _rule_hits(rule: str, spike: np.ndarray, flip: np.ndarray) -> np.ndarray:
    """Where a candidate state is a mutation layer under ``mutation_rule``: ``"jsd"`` the spike, ``"top1"`` the
    flip, ``"both"`` both, ``"either"`` either."""
    if rule == "jsd":
        return spike
    if rule == "top1":
        return flip
    if rule == "both":
        return spike & flip
    return spike | flip


def stage_jsd_medians(
    jsd: np.ndarray, critical: np.ndarray, first_layer: int
) -> tuple[np.ndarray, np.ndarray]:
    """``([T] rapid, [T] plateau)``: the median JSD of each token's rapid-change stage (transitions
    ``first_layer..c-1``) and of its plateau (``c..L-1``), ``c`` its critical layer (``critical``, ``[T]``); NaN
    for a stage without a transition (or a token without a critical layer)."""
    curves = as_curves(jsd, "jsd")
    crit = np.asarray(critical, dtype=np.int64).reshape(-1)
    transition = np.arange(curves.shape[0])[:, None]
    found = crit != NOT_FOUND
    rapid = found & (crit > first_layer)
    plateau = found & (crit < curves.shape[0])
    # a stage without a transition takes the whole curve, so that its median is defined; it is NaN below
    before = np.where(rapid, (transition >= first_layer) & (transition < crit), True)
    after = np.where(plateau, transition >= crit, True)
    return (
        np.where(rapid, _masked_medians(curves, before), math.nan),
        np.where(plateau, _masked_medians(curves, after), math.nan),
    )


def stage_of_layers(n_layers: int, critical: int, mutation: int) -> np.ndarray:
    """``[L + 1]`` stage of every state: 0 rapid evolution ``[0, critical)``, 1 stabilisation
    ``[critical, mutation)``, 2 mutation ``[mutation, L]``; all ``-1`` when ``critical`` is -1; no stage 2 when
    ``mutation`` is -1.

    Raises:
        SettingsError: a layer out of range, or ``mutation <= critical``.
    """
    if n_layers < 1:
        raise SettingsError(f"n_layers must be >= 1, got {n_layers}")
    out = np.full(n_layers + 1, UNKNOWN, dtype=np.int8)
    if critical == NOT_FOUND:
        if mutation != NOT_FOUND:
            raise SettingsError("a mutation layer needs a critical layer before it")
        return out
    if not 0 <= critical <= n_layers:
        raise SettingsError(f"critical layer must be in [0, {n_layers}] or -1, got {critical}")
    if mutation != NOT_FOUND and not critical < mutation <= n_layers:
        raise SettingsError(
            f"mutation layer {mutation} must come after the critical layer {critical} and be <= {n_layers}"
        )
    out[:critical] = RAPID
    out[critical:] = STABLE
    if mutation != NOT_FOUND:
        out[mutation:] = MUTATION
    return out


def crossings(first: Curve, second: Curve, *, first_layer: int = 0) -> list[tuple[int, int]]:
    """Layers where curve ``first`` crosses curve ``second``, as ``(layer, direction)`` pairs.

    ``direction`` is ``+1`` when ``first`` rises above ``second`` at state ``layer`` (``first <= second`` at
    ``layer - 1``, ``first > second`` at ``layer``) and ``-1`` when it falls to or below it. States before
    ``first_layer`` are ignored.
    """
    a, b = as_curve(first, "first"), as_curve(second, "second")
    if a.size != b.size:
        raise SettingsError(f"curves differ in length: {a.size} and {b.size}")
    if not 0 <= first_layer < a.size:
        raise SettingsError(f"first_layer must be in [0, {a.size - 1}], got {first_layer}")
    above = a > b
    return [
        (layer, 1 if above[layer] else -1)
        for layer in range(first_layer + 1, a.size)
        if above[layer] != above[layer - 1]
    ]


def hierarchy_score(jsd_profile: Curve, params: DetectorParams | None = None) -> HierarchyScore:
    """How hierarchical a JSD profile ``[L]`` is (paper §6): mean JSD before / after its best split.

    The split is that of :func:`jsd_change_point` (always computed, so flat profiles get a ratio near 1 instead
    of no number); ``critical_layer`` is set only when the split also passes :func:`critical_layer_from_jsd`.
    """
    params = params or DetectorParams()
    curve = as_curve(jsd_profile, "jsd_profile")
    params.check_depth(curve.size)
    cp = jsd_change_point(curve, params)
    if cp.layer == NOT_FOUND:
        return HierarchyScore(math.nan, NOT_FOUND, NOT_FOUND, math.nan, math.nan)
    ratio = cp.mean_before / cp.mean_after if cp.mean_after > 0 else math.inf
    return HierarchyScore(
        ratio, cp.layer, critical_layer_from_jsd(curve, params), cp.mean_before, cp.mean_after
    )
