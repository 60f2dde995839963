"""The critical layers of one curve written out as loops — over the JSD curve's splits, over the probability
curve's states: the definitions (README, "Detectors") that :func:`evolens.analysis.jsd_change_layers`,
:func:`evolens.analysis.critical_layers_from_jsd` and :func:`evolens.analysis.critical_layers_from_prob` vectorise,
kept for the tests that check them and for ``bench/detector_speed.py`` (it is how evolens found them before)."""

from __future__ import annotations

import math

import numpy as np

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


__all__ = ["loop_change_point", "loop_critical_layer", "loop_critical_layer_from_prob"]
