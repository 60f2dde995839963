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


def robust_level(values: np.ndarray) -> tuple[float, float]:
    """``(median, 1.4826 * MAD)`` of ``values`` (both 0 for an empty array)."""
    if values.size == 0:
        return 0.0, 0.0
    median = float(np.median(values))
    return median, MAD_SCALE * float(np.median(np.abs(values - median)))


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
    ``crit_prob``), or the other when it was not found (``-1``) and ``params.stage_fallback`` allows it."""
    params = params or DetectorParams()
    primary, other = (crit_jsd, crit_prob) if params.stage_critical == "jsd" else (crit_prob, crit_jsd)
    return int(primary if primary != NOT_FOUND or not params.stage_fallback else other)


def spike_threshold(jsd: Curve, critical: int, params: DetectorParams | None = None) -> tuple[float, float]:
    """``(threshold, level)`` of JSD spikes after ``critical``: ``level`` = median of ``jsd[critical:]``, scale =
    1.4826 * MAD, threshold = ``max(spike_ratio * level, level + spike_mads * scale, spike_min_bits)`` (the last
    term for bits only)."""
    params = params or DetectorParams()
    curve = as_curve(jsd, "jsd")
    if not 0 <= critical < curve.size:
        raise SettingsError(f"critical layer must be in [0, {curve.size - 1}], got {critical}")
    level, scale = robust_level(curve[critical:])
    threshold = max(params.spike_ratio * level, level + params.spike_mads * scale)
    if params.jsd_reduction == "bits":
        threshold = max(threshold, params.spike_min_bits)
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
    mutation layers.

    Args:
        jsd: ``[L]`` adjacent-layer JSD.
        critical: The token's critical layer (state index) or ``-1``.
        params: Detector parameters.
        top1_ids: ``[L + 1]`` top-1 token id at each state (needed by the "top1" and "both" rules).
        top1_probs: ``[L + 1]`` its probability.
        baseline: ``[L]`` typical JSD of each transition (e.g. its median over the trace's tokens), or ``None``.
    """
    params = params or DetectorParams()
    curve = as_curve(jsd, "jsd")
    n_layers = curve.size
    if critical == NOT_FOUND:
        return []
    if not 0 <= critical <= n_layers:
        raise SettingsError(f"critical layer must be in [0, {n_layers}] or -1, got {critical}")
    if critical >= n_layers:
        return []
    ids, probs = _top1_curves(top1_ids, top1_probs, n_layers, params)
    thresholds, level = _spike_thresholds(curve, critical, params, baseline)
    n = params.n_persist(n_layers)
    found: list[Mutation] = []
    for m in range(critical + 1, n_layers + 1):
        value = float(curve[m - 1])
        spike = bool(value > thresholds[m - 1])
        flip = False
        before = after = NOT_FOUND
        if ids is not None and probs is not None:
            before, after = int(ids[m - 1]), int(ids[m])
            flip = (
                before != after
                and bool((ids[max(critical, m - n) : m] == before).all())
                and bool((ids[m : min(m + n, n_layers + 1)] == after).all())
                and float(probs[m]) >= params.prob_min_peak
            )
        if _rule_hit(params.mutation_rule, spike, flip):
            ratio = value / level if level > 0 else math.inf
            found.append(Mutation(m, value, ratio, spike, flip, before, after))
    return found


def _top1_curves(
    top1_ids: Curve | None, top1_probs: Curve | None, n_layers: int, params: DetectorParams
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The ``[L + 1]`` top-1 ids and probabilities checked, or ``(None, None)`` when not given (refused by the
    ``"top1"`` and ``"both"`` mutation rules, which need them)."""
    if top1_ids is None or top1_probs is None:
        if params.mutation_rule in ("top1", "both"):
            raise SettingsError(
                f"mutation_rule={params.mutation_rule!r} needs the top-1 ids and probabilities"
            )
        return None, None
    ids = as_curve(top1_ids, "top1_ids").astype(np.int64)
    probs = as_curve(top1_probs, "top1_probs")
    if ids.size != n_layers + 1 or probs.size != n_layers + 1:
        raise SettingsError(f"top-1 curves must have {n_layers + 1} entries (states 0..L)")
    return ids, probs


def _spike_thresholds(
    curve: np.ndarray, critical: int, params: DetectorParams, baseline: Curve | None
) -> tuple[np.ndarray, float]:
    """``([L] threshold of each transition, level)``: the :func:`spike_threshold` after ``critical``, raised to
    ``spike_layer_ratio`` times the layer ``baseline`` where one is given."""
    n_layers = curve.size
    threshold, level = spike_threshold(curve, critical, params)
    thresholds = np.full(n_layers, threshold)
    if baseline is not None:
        base = as_curve(baseline, "baseline")
        if base.size != n_layers:
            raise SettingsError(
                f"baseline must have {n_layers} entries (one per transition), got {base.size}"
            )
        thresholds = np.maximum(thresholds, params.spike_layer_ratio * base)
    return thresholds, level


def _rule_hit(rule: str, spike: bool, flip: bool) -> bool:
    """Whether a candidate state is a mutation layer under ``mutation_rule``: ``"jsd"`` the spike, ``"top1"`` the
    flip, ``"both"`` both, ``"either"`` either."""
    if rule == "jsd":
        return spike
    if rule == "top1":
        return flip
    if rule == "both":
        return spike and flip
    return spike or flip


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
