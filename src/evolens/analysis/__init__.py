"""Knowledge evolution analyses — critical layers, mutation layers, stages — as pure functions of trace metrics.

Layer numbers are state indices: 0 = embedding state, ``l`` = output of decoder layer ``l`` (1-based, as in the
paper). "Not found" is -1. Definitions with formulas and defaults: README section "Detectors".
"""

from evolens.analysis.aggregate import (
    QUANTITIES,
    AnalysisSummary,
    Estimate,
    ItemSummary,
    LayerDistribution,
    bootstrap_median,
    median_from_counts,
    summarize,
    summarize_item,
)
from evolens.analysis.compare import (
    Annotations,
    DiffOp,
    HallucinationCount,
    common_prefix,
    count_hallucinations,
    mention_spans,
    mentions,
    similarity,
    token_diff,
)
from evolens.analysis.detectors import (
    ChangePoint,
    HierarchyScore,
    Mutation,
    critical_layer_from_jsd,
    critical_layer_from_prob,
    crossings,
    hierarchy_score,
    jsd_change_point,
    mutation_layers,
    spike_threshold,
    stage_of_layers,
)
from evolens.analysis.layers import (
    PRESETS,
    ItemLayers,
    check_critical_mutation,
    default_keep_last,
    item_layers,
    skip_presets,
)
from evolens.analysis.params import NOT_FOUND, DetectorParams
from evolens.analysis.profiles import ProfileComparison, ProfileSummary, compare_profiles, profile_summary
from evolens.analysis.stages import MUTATION, RAPID, STABLE, STAGE_NAMES, UNKNOWN
from evolens.analysis.trace_analysis import TraceAnalysis, analyze_metrics, analyze_trace, jsd_baseline

__all__ = [
    "MUTATION",
    "NOT_FOUND",
    "PRESETS",
    "QUANTITIES",
    "RAPID",
    "STABLE",
    "STAGE_NAMES",
    "UNKNOWN",
    "AnalysisSummary",
    "Annotations",
    "ChangePoint",
    "DetectorParams",
    "DiffOp",
    "Estimate",
    "HallucinationCount",
    "HierarchyScore",
    "ItemLayers",
    "ItemSummary",
    "LayerDistribution",
    "Mutation",
    "ProfileComparison",
    "ProfileSummary",
    "TraceAnalysis",
    "analyze_metrics",
    "analyze_trace",
    "bootstrap_median",
    "check_critical_mutation",
    "common_prefix",
    "compare_profiles",
    "count_hallucinations",
    "critical_layer_from_jsd",
    "critical_layer_from_prob",
    "crossings",
    "default_keep_last",
    "hierarchy_score",
    "item_layers",
    "jsd_baseline",
    "jsd_change_point",
    "median_from_counts",
    "mention_spans",
    "mentions",
    "mutation_layers",
    "profile_summary",
    "similarity",
    "skip_presets",
    "spike_threshold",
    "stage_of_layers",
    "summarize",
    "summarize_item",
    "token_diff",
]
