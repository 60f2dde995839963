"""Which layer baseline each trace's JSD spikes are held against: its own, or one shared by a model's traces.

The layer baseline (README, "Detectors") is the median JSD of each transition over a set of tokens. A long answer
has enough tokens for its own; one-word answers do not, and share one computed over all the traces of their model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

from evolens.analysis.params import DetectorParams

if TYPE_CHECKING:
    import numpy as np

    from evolens.analysis.trace_analysis import TraceAnalysis
    from evolens.trace import Trace

BaselineMode = Literal["auto", "trace", "dataset"]


def _model_key(trace: Trace) -> tuple[str, str, int]:
    """Traces that may share a layer baseline: same weights, lens and depth."""
    return (trace.model.weights_hash or trace.model.source, trace.lens_mode, trace.n_layers)


def _n_words(trace: Trace) -> int:
    """Generated tokens besides a final EOS."""
    return trace.n_steps - 1 if trace.stop_reason == "eos" and trace.n_steps > 0 else trace.n_steps


def layer_baselines(
    traces: Sequence[Trace], params: DetectorParams, mode: BaselineMode
) -> tuple[list[np.ndarray | None], list[str]]:
    """The layer baseline to give each trace (``None``: its own, as :func:`~evolens.analysis.analyze_trace` does)
    and a line describing each model's choice.

    ``dataset``: one baseline per model (same weights, lens and depth), :func:`~evolens.analysis.jsd_baseline` over
    all its traces. ``trace``: each trace's own. ``auto``: the dataset baseline for a model whose traces are mostly
    too short for their own (more than half have fewer than ``baseline_min_tokens`` tokens besides EOS, e.g.
    one-word answers) when it has at least two traces; else each trace's own.
    """
    from evolens.analysis import jsd_baseline

    groups: dict[tuple[str, str, int], list[int]] = {}
    for index, trace in enumerate(traces):
        groups.setdefault(_model_key(trace), []).append(index)
    chosen: list[np.ndarray | None] = [None] * len(traces)
    lines: list[str] = []
    if params.spike_layer_ratio == 0:
        return chosen, ["layer baseline: off (spike_layer_ratio = 0)"]
    for members in groups.values():
        group = [traces[i] for i in members]
        short = sum(_n_words(t) < params.baseline_min_tokens for t in group)
        use_dataset = mode == "dataset" or (mode == "auto" and len(group) >= 2 and short * 2 > len(group))
        name = group[0].model.source
        if use_dataset:
            baseline = jsd_baseline(group, params)
            for i in members:
                chosen[i] = baseline
            n_tokens = sum(_n_words(t) for t in group)
            lines.append(
                f"layer baseline ({name}): dataset, median over {len(group)} traces, {n_tokens} tokens"
            )
        else:
            lines.append(
                f"layer baseline ({name}): each trace's own ({short} of {len(group)} traces have fewer than "
                f"{params.baseline_min_tokens} tokens and get none)"
            )
    return chosen, lines


def analyze_traces(
    traces: Sequence[Trace],
    params: DetectorParams,
    mode: BaselineMode,
    advance: Callable[[int], None] | None = None,
) -> tuple[list[TraceAnalysis], list[str]]:
    """:func:`~evolens.analysis.analyze_trace` of every trace, each held against the layer baseline that
    :func:`layer_baselines` chooses for it; also returns the lines describing those choices.

    ``advance(1)`` is called after each trace (a progress bar).
    """
    from evolens.analysis.trace_analysis import analyze_trace

    baselines, lines = layer_baselines(traces, params, mode)
    analyses = []
    for trace, baseline in zip(traces, baselines, strict=True):
        analyses.append(analyze_trace(trace, params, baseline_jsd=baseline))
        if advance is not None:
            advance(1)
    return analyses, lines


def by_depth(analyses: Sequence[TraceAnalysis]) -> list[list[TraceAnalysis]]:
    """``analyses`` grouped by model depth, shallowest first: medians of layers of models of different depths do
    not pool, so each group is summarised on its own."""
    depths = sorted({a.n_layers for a in analyses})
    return [[a for a in analyses if a.n_layers == d] for d in depths]
