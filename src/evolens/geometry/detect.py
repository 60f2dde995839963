"""The critical and mutation layer of a feature map, detected from its traces' metrics (README, "Detectors").

A map has one set of stage groups, so the per-token layers of :func:`~evolens.analysis.analyze_trace` are summarised
by their medians: over the trace's tokens for a single-image map, over the images' tokens at the mapped step for a
multi-image map.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from evolens.analysis.baselines import layer_baselines
from evolens.analysis.params import NOT_FOUND, DetectorParams

if TYPE_CHECKING:
    from evolens.trace import Trace


@dataclass(frozen=True)
class DetectedLayers:
    """A map's stage layers from the detectors.

    Attributes:
        critical_layer: Median of the found critical layers (state index, rounded half up); ``None`` if none.
        mutation_layer: Median of the found first mutation layers, kept only when after ``critical_layer``.
        n_units: Tokens (single image) or images (multi image) looked at.
        n_critical: How many of them have a critical layer.
        n_mutation: How many have a mutation layer.
        description: One line saying how the layers were chosen.
    """

    critical_layer: int | None
    mutation_layer: int | None
    n_units: int
    n_critical: int
    n_mutation: int
    description: str


def median_layer(values: Sequence[int] | np.ndarray) -> int | None:
    """Median of the found layers (-1 left out), rounded half up; ``None`` when none was found."""
    array = np.asarray(values, dtype=np.int64)
    array = array[array != NOT_FOUND]
    if array.size == 0:
        return None
    return math.floor(float(np.median(array)) + 0.5)


def detect_stage_layers(
    traces: Sequence[Trace], params: DetectorParams | None = None, *, step: int | None = None
) -> DetectedLayers:
    """The critical and first mutation layer of a map of ``traces``.

    Args:
        traces: One trace (``step=None``: a single-image map, its tokens EOS left out) or several (their tokens at
            ``step``: a multi-image map).
        params: Detector parameters (default :class:`~evolens.analysis.DetectorParams`). The layer baseline
            follows ``evolens analyze --baseline auto``: shared by the traces when most are too short for their own.
        step: The mapped generation step of a multi-image map.
    """
    from evolens.analysis.trace_analysis import analyze_trace

    params = params or DetectorParams()
    baselines, _ = layer_baselines(traces, params, "auto")
    critical: list[int] = []
    mutation: list[int] = []
    for trace, baseline in zip(traces, baselines, strict=True):
        analysis = analyze_trace(trace, params, baseline_jsd=baseline)
        if step is None:
            mask = analysis.step_mask()
            critical.extend(analysis.critical_layer[mask].tolist())
            mutation.extend(analysis.mutation_layer[mask].tolist())
        else:
            critical.append(int(analysis.critical_layer[step]))
            mutation.append(int(analysis.mutation_layer[step]))
    c, m = median_layer(critical), median_layer(mutation)
    if m is not None and (c is None or m <= c):
        m = None
    unit = "tokens" if step is None else f"images (step {step})"
    n_c = sum(x != NOT_FOUND for x in critical)
    n_m = sum(x != NOT_FOUND for x in mutation)
    how = f"detected: medians over {n_c} of {len(critical)} {unit} with a critical layer, {n_m} with a mutation layer"
    return DetectedLayers(c, m, len(critical), n_c, n_m, how)
