"""The per-token detectors of one token written out as loops — over the JSD curve's splits, over the states: the
definitions (README, "Detectors") that :func:`evolens.analysis.critical_layers_from_jsd`,
:func:`evolens.analysis.critical_layers_from_prob` and :func:`evolens.analysis.mutation_layers_by_token` vectorise
over tokens, kept for the tests that check them and for ``bench/detector_speed.py`` (it is how evolens found them
before)."""

from __future__ import annotations

import math

import numpy as np

from evolens.analysis.detectors import MAD_SCALE, Mutation
from evolens.analysis.params import NOT_FOUND, DetectorParams


def loop_change_point(curve: np.ndarray, params: DetectorParams) -> int:
    """The split ``c`` of the ``[L]`` JSD curve: the earliest minimising the L1 fit of two medians on log10 JSD
    (a later split replaces it only when lower by more than 1e-12), ``-1`` if none."""
    first, n_layers = params.first_layer, curve.size
    n_min = params.n_persist(n_layers)
    if n_layers - first < n_min + 1 or float(curve[first:].max(initial=0.0)) <= 0.0:
        return NOT_FOUND
    tail = curve[first:]
    best_cost, best = math.inf, NOT_FOUND
    # a value at or below -eps (the paper's reduction rounds below 0) makes y, and every cost, NaN or infinite
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.log10(tail + max(1e-6 * float(tail.max()), 1e-300))
        for c in range(first + 1, n_layers - n_min + 1):
            head, rest = y[: c - first], y[c - first :]
            cost = float(np.abs(head - np.median(head)).sum() + np.abs(rest - np.median(rest)).sum())
            if cost < best_cost - 1e-12:
                best_cost, best = cost, c
    return best


def loop_critical_layer(curve: np.ndarray, params: DetectorParams) -> int:
    """The JSD critical layer of the ``[L]`` curve: :func:`loop_change_point`'s split when the drop is real."""
    c = loop_change_point(curve, params)
    if c == NOT_FOUND:
        return NOT_FOUND
    before, after = np.median(curve[params.first_layer : c]), np.median(curve[c:])
    if not before >= params.jsd_drop_ratio * after:
        return NOT_FOUND
    if params.jsd_reduction == "bits" and before - after < params.jsd_min_gap_bits:
        return NOT_FOUND
    return c


def loop_critical_layer_from_prob(probs: np.ndarray, params: DetectorParams) -> int:
    """The probability critical layer of the ``[L + 1]`` curve: the first state after ``first_layer`` where the
    curve crosses up through ``prob_rel`` times its peak and stays there ``n_persist`` states (cut at ``L``)."""
    n_layers = probs.size - 1
    first = params.first_layer
    peak = float(probs[first:].max())
    if peak < params.prob_min_peak or peak <= 0.0:
        return NOT_FOUND
    above = probs >= params.prob_rel * peak
    n = params.n_persist(n_layers)
    for c in range(first + 1, n_layers + 1):
        if not above[c - 1] and bool(above[c : min(c + n, n_layers + 1)].all()):
            return c
    return NOT_FOUND


def loop_mutation_layers(
    jsd: np.ndarray,
    critical: int,
    params: DetectorParams,
    top1_ids: np.ndarray | None = None,
    top1_probs: np.ndarray | None = None,
    baseline: np.ndarray | None = None,
) -> list[Mutation]:
    """The mutation layers of one token: each state ``m`` after ``critical`` tested in turn for a JSD spike over
    the plateau's robust threshold (and the layer baseline) and for a persistent top-1 flip, combined by
    ``mutation_rule``."""
    n_layers = jsd.size
    if critical == NOT_FOUND or critical >= n_layers:
        return []
    plateau = jsd[critical:]
    level = float(np.median(plateau))
    scale = MAD_SCALE * float(np.median(np.abs(plateau - level)))
    threshold = max(params.spike_ratio * level, level + params.spike_mads * scale)
    if params.jsd_reduction == "bits":
        threshold = max(threshold, params.spike_min_bits)
    thresholds = np.full(n_layers, threshold)
    if baseline is not None:
        thresholds = np.maximum(thresholds, params.spike_layer_ratio * baseline)
    n = params.n_persist(n_layers)
    found: list[Mutation] = []
    for m in range(critical + 1, n_layers + 1):
        value = float(jsd[m - 1])
        spike = bool(value > thresholds[m - 1])
        flip = False
        before = after = NOT_FOUND
        if top1_ids is not None and top1_probs is not None:
            before, after = int(top1_ids[m - 1]), int(top1_ids[m])
            flip = (
                before != after
                and bool((top1_ids[max(critical, m - n) : m] == before).all())
                and bool((top1_ids[m : min(m + n, n_layers + 1)] == after).all())
                and float(top1_probs[m]) >= params.prob_min_peak
            )
        rule = params.mutation_rule
        hit = {"jsd": spike, "top1": flip, "both": spike and flip}.get(rule, spike or flip)
        if hit:
            ratio = value / level if level > 0 else math.inf
            found.append(Mutation(m, value, ratio, spike, flip, before, after))
    return found


__all__ = [
    "loop_change_point",
    "loop_critical_layer",
    "loop_critical_layer_from_prob",
    "loop_mutation_layers",
]
