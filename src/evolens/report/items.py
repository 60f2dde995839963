"""Per-item results the report shows next to a trace: its analysis (critical layers, mutation layers, stages), the
evaluation's per-token labels, layer-skipping results and feature geometry — turned into the report's data (token
series, flags, the click-through analysis panel) and into figures drawn with :mod:`evolens.viz`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from evolens.errors import SettingsError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from evolens.analysis import TraceAnalysis
    from evolens.experiments.skip import SkipResult
    from evolens.geometry import FeatureMap
    from evolens.trace import Trace

# Names of the token series and flags the report derives from the analyses and the evaluation.
CRITICAL_SERIES = "critical layer"
CRITICAL_PROB_SERIES = "critical layer (probability)"
CRITICAL_JSD_SERIES = "critical layer (JSD)"
STAGE_SERIES = "stages"
HALLUCINATED_FLAG = "hallucinated"
GROUNDED_FLAG = "grounded"
MUTATION_FLAG = "mutation layer"

SERIES_DESCRIPTIONS = {
    CRITICAL_SERIES: "critical layer that delimits the stages (evolens.analysis: JSD-based, else probability-based)",
    CRITICAL_PROB_SERIES: "critical layer from the token's probability curve (it surges and stays high)",
    CRITICAL_JSD_SERIES: "critical layer from the adjacent-layer JSD curve (it drops to a low plateau)",
    STAGE_SERIES: "stages across layers: each token's background runs from layer 0 (left) to the last layer (right)",
}
FLAG_DESCRIPTIONS = {
    HALLUCINATED_FLAG: "labelled hallucinated by the benchmark evaluation",
    GROUNDED_FLAG: "an object word the benchmark evaluation accepts (grounded)",
    MUTATION_FLAG: "the analysis detected a mutation layer",
}


# ------------------------------------------------------------------------------------------ analysis
def coerce_analysis(value: Any, trace: Trace, where: str) -> TraceAnalysis:
    """A :class:`~evolens.analysis.TraceAnalysis` (or its ``to_dict``, or a path to its JSON) checked against
    ``trace``: same depth and the same number of generated tokens.

    Raises:
        SettingsError: Not an analysis, or one of another trace.
    """
    from evolens.analysis import TraceAnalysis

    if isinstance(value, str | Path):
        value = TraceAnalysis.load(value)
    elif isinstance(value, Mapping):
        try:
            value = TraceAnalysis.from_dict(dict(value))
        except (KeyError, TypeError, ValueError) as err:
            raise SettingsError(f"{where} is not a TraceAnalysis dict: {err}") from None
    if not isinstance(value, TraceAnalysis):
        raise SettingsError(
            f"{where} must be a TraceAnalysis, its dict or a path, got {type(value).__name__}"
        )
    if value.n_layers != trace.n_layers or value.n_steps != trace.n_steps:
        raise SettingsError(
            f"{where} analyses {value.n_steps} tokens of a {value.n_layers}-layer model, but the trace has "
            f"{trace.n_steps} tokens and {trace.n_layers} layers: it belongs to another trace"
        )
    return value


def _layer(value: int) -> int | None:
    return None if int(value) < 0 else int(value)


def _finite(value: float, digits: int = 5) -> float | None:
    return round(float(value), digits) if math.isfinite(value) else None


def stage_runs(analysis: TraceAnalysis) -> list[list[list[int]]]:
    """Per token, its stages across states 0..L as runs ``[stage, first state, last state]`` (stage -1:
    undetermined), read from :attr:`TraceAnalysis.stages`."""
    stages = analysis.stages  # [L + 1, T]
    out: list[list[list[int]]] = []
    for step in range(stages.shape[1]):
        column = stages[:, step].tolist()
        runs: list[list[int]] = []
        for layer, stage in enumerate(column):
            if runs and runs[-1][0] == stage:
                runs[-1][2] = layer
            else:
                runs.append([int(stage), layer, layer])
        out.append(runs)
    return out


def analysis_payload(analysis: TraceAnalysis) -> dict[str, Any]:
    """What the page's script draws of an analysis (per token: layers, mutations with evidence, stage runs)."""
    return {
        "crit": [_layer(c) for c in analysis.critical_layer],
        "crit_prob": [_layer(c) for c in analysis.critical_layer_prob],
        "crit_jsd": [_layer(c) for c in analysis.critical_layer_jsd],
        "agree": [int(a) for a in analysis.agreement()],
        "tolerance": analysis.params.agreement_layers(analysis.n_layers),
        "stage_critical": analysis.params.stage_critical,
        "mutations": [
            [
                {
                    "layer": int(m.layer),
                    "jsd": _finite(m.jsd),
                    "ratio": _finite(m.ratio, 2),
                    "spike": bool(m.is_spike),
                    "flip": bool(m.is_flip),
                    "before": int(m.token_before),
                    "after": int(m.token_after),
                }
                for m in ms
            ]
            for ms in analysis.mutations
        ],
        "stages": stage_runs(analysis),
        "is_eos": [bool(v) for v in analysis.is_eos],
        "jsd_units": analysis.params.jsd_reduction,
    }


def analysis_series(analysis: TraceAnalysis) -> dict[str, list[Any]]:
    """The token series of an analysis: the three critical layers (``None`` where not found)."""
    return {
        CRITICAL_SERIES: [_layer(c) for c in analysis.critical_layer],
        CRITICAL_PROB_SERIES: [_layer(c) for c in analysis.critical_layer_prob],
        CRITICAL_JSD_SERIES: [_layer(c) for c in analysis.critical_layer_jsd],
    }


def analysis_vocab_ids(analysis: TraceAnalysis) -> set[int]:
    """Token ids an analysis names (the top-1 tokens before and after each mutation)."""
    return {i for ms in analysis.mutations for m in ms for i in (m.token_before, m.token_after) if i >= 0}


def analysis_facts(analysis: TraceAnalysis, run_baseline: Sequence[float] | None) -> list[str]:
    """Short lines summarising an item's analysis (counts, medians, agreement, the layer baseline used)."""
    mask = analysis.step_mask()
    n = int(mask.sum())
    crit = analysis.critical_layer[mask]
    found = crit[crit >= 0]
    mutated = sum(bool(ms) for keep, ms in zip(mask, analysis.mutations, strict=True) if keep)
    rate = analysis.agreement_rate()
    if analysis.baseline_jsd is None:
        baseline = "no layer baseline (too few tokens, or spike_layer_ratio = 0)"
    elif run_baseline is not None and np.allclose(
        analysis.baseline_jsd, np.asarray(run_baseline, dtype=float)
    ):
        baseline = "the run's layer baseline (an answer too short for its own)"
    else:
        baseline = "a layer baseline from its own tokens"
    median = f", median {float(np.median(found)):g}" if found.size else ""
    return [
        f"critical layer found for {found.size} of {n} tokens{median} (EOS left out); a mutation layer for "
        f"{mutated}; probability- and JSD-based critical layers agree for "
        + ("n/a" if math.isnan(rate) else f"{rate:.0%}")
        + " of the tokens with both",
        f"spikes held against {baseline}; detector: stages from the {analysis.params.stage_critical}-based "
        f"critical layer, mutation rule '{analysis.params.mutation_rule}', first layer {analysis.params.first_layer}",
    ]


# ------------------------------------------------------------------------------------------- labels
def coerce_labels(value: Any, n_steps: int, where: str) -> dict[str, list[str | None]]:
    """Per-token evaluation labels as ``{"label": [...], "object": [...]}`` from a
    :class:`~evolens.data.TokenLabels` or a mapping with ``labels``/``label`` and optional ``objects``/``object``."""
    from evolens.data.labels import LABELS

    labels = getattr(value, "labels", None)
    objects = getattr(value, "objects", None)
    if isinstance(value, Mapping):
        labels = value.get("labels", value.get("label"))
        objects = value.get("objects", value.get("object"))
    if labels is None or isinstance(labels, str) or not isinstance(labels, Sequence):
        raise SettingsError(f"{where} must give one label per token (TokenLabels or {{'labels': [...]}})")
    objects = [None] * len(labels) if objects is None else list(objects)
    if len(labels) != n_steps or len(objects) != n_steps:
        raise SettingsError(
            f"{where} has {len(labels)} labels / {len(objects)} objects but the item has {n_steps} tokens"
        )
    bad = {v for v in labels if v is not None and v not in LABELS}
    if bad:
        raise SettingsError(
            f"{where}: labels must be one of {list(LABELS)} or None, got {sorted(map(str, bad))}"
        )
    return {
        "label": [None if v is None else str(v) for v in labels],
        "object": [None if v is None else str(v) for v in objects],
    }


def label_flags(labels: Mapping[str, Sequence[str | None]]) -> dict[str, list[bool]]:
    """The hallucinated and grounded flags of per-token labels."""
    return {
        HALLUCINATED_FLAG: [v == "hallucinated" for v in labels["label"]],
        GROUNDED_FLAG: [v == "grounded" for v in labels["label"]],
    }


# --------------------------------------------------------------------------------------------- skip
def skip_flags(result: SkipResult) -> list[list[str | None]]:
    """Per output (the original first), per token: the paper's Fig. 5 colours
    (:func:`~evolens.viz.results.skip_token_flags`)."""
    from evolens.viz.results import skip_token_flags

    return [list(skip_token_flags(result, variant)) for variant in result.variants]


def _variant_label(name: str, skipped: Sequence[int]) -> str:
    return f"{name} (skips {', '.join(map(str, skipped))})" if skipped else name


def skip_extras(result: SkipResult) -> dict[str, Any]:
    """A :class:`~evolens.experiments.skip.SkipResult` as report extras: the text variants (original first), the
    paper's Fig. 5 table drawn by :func:`evolens.viz.skip_table_figure`, and a table of the comparisons."""
    from evolens.viz import skip_table_figure

    flags = skip_flags(result)
    variants = [
        {
            "name": v.name,
            "tokens": list(v.tokens),
            "flags": f,
            "note": f"layers {', '.join(map(str, v.skipped))}" if v.skipped else "",
        }
        for v, f in zip(result.variants[1:], flags[1:], strict=True)
    ]
    columns = [_variant_label(v.name, v.skipped) for v in result.variants]
    figure = skip_table_figure(columns, [[list(v.tokens) for v in result.variants]], flags=[flags])
    rows = []
    for v in result.variants:
        count = v.hallucination
        rows.append(
            [
                v.name,
                ", ".join(map(str, v.skipped)) or "—",
                round(v.similarity, 4),
                v.common_prefix,
                count.n_hallucinated if count else "—",
                count.n_correct if count else "—",
                ", ".join(count.corrected) if count and count.corrected else "—",
                ", ".join(count.introduced) if count and count.introduced else "—",
            ]
        )
    table = {
        "title": f"Layer skipping ({result.method}; similarity and shared prefix against the original)",
        "columns": [
            "variant",
            "skipped layers",
            "similarity",
            "shared prefix",
            "hallucinated mentions",
            "correct mentions",
            "corrected",
            "introduced",
        ],
        "rows": rows,
    }
    return {"skip": variants, "skip_figure": figure, "skip_table": table}


# ----------------------------------------------------------------------------------------- geometry
def geometry_figure(fmap: FeatureMap) -> Figure:
    """A :class:`~evolens.geometry.FeatureMap` drawn with :func:`evolens.viz.embedding_figure` (points coloured by
    its stage groups; images named at their deepest point on a multi-image map)."""
    from evolens.viz import embedding_figure

    labels: bool | dict[int, str] = False
    if fmap.kind == "multi_image":
        labels = dict(enumerate(fmap.unit_labels))
    method = getattr(fmap.projection.settings, "method", fmap.projection.backend)
    kind = "one image, its tokens" if fmap.kind == "single_image" else "one token position across images"
    return embedding_figure(
        fmap.coords,
        fmap.point_layer,
        fmap.point_unit,
        bands=list(fmap.groups),
        label_groups=labels,
        title=f"{method} of the layers' features ({kind})",
    )


def geometry_table(fmap: FeatureMap) -> dict[str, Any]:
    """The numbers behind a feature map, as a small table."""
    numbers = fmap.numbers

    def mean(values: np.ndarray) -> Any:
        finite = values[np.isfinite(values)]
        return round(float(finite.mean()), 4) if finite.size else "—"

    rows = [
        ["map", f"{fmap.kind}, {fmap.n_units} units × {len(fmap.layers)} layers, {fmap.projection.backend}"],
        ["trustworthiness", round(float(fmap.projection.trustworthiness), 4)],
        ["dispersion jump layer", "—" if numbers.jump.layer is None else numbers.jump.layer],
        ["critical layer", "—" if numbers.critical_layer is None else numbers.critical_layer],
        ["jump − critical", "—" if numbers.jump_minus_critical is None else numbers.jump_minus_critical],
        ["mean linearity of the trajectories", mean(numbers.linearity)],
        ["mean straightness of the trajectories", mean(numbers.straightness)],
    ]
    return {"title": "Feature geometry: numbers", "columns": ["quantity", "value"], "rows": rows}
