"""Hallucinated vs grounded tokens: the benchmark's judgements mapped onto generated tokens (:mod:`.token_labels`),
the statistics of their critical and mutation layers (:mod:`.stats`), and token-level detectors scored against the
labels (:mod:`.detect`: signals, scoring, probes; results in :mod:`.detect_results`), and per-item outcomes with
paired comparisons of two generations of the same items (:mod:`.outcomes`).

The stage sits above :mod:`evolens.data` (whose evaluators judge the responses) and :mod:`evolens.analysis` (whose
detectors give the layers), and below :mod:`evolens.store`, which writes what it computes.
"""

from evolens.hallucination.detect import detect, select_tokens
from evolens.hallucination.detect_results import DetectOptions, DetectResult
from evolens.hallucination.outcomes import (
    ItemOutcome,
    PairedComparison,
    Quality,
    compare_outcomes,
    item_outcomes,
)
from evolens.hallucination.stats import LayerDetector, LayerStatistics, TokenLayers, Unit, layer_statistics
from evolens.hallucination.token_labels import TokenLabels, label_tokens, mention_steps

__all__ = [
    "DetectOptions",
    "DetectResult",
    "ItemOutcome",
    "LayerDetector",
    "LayerStatistics",
    "PairedComparison",
    "Quality",
    "TokenLabels",
    "TokenLayers",
    "Unit",
    "compare_outcomes",
    "detect",
    "item_outcomes",
    "label_tokens",
    "layer_statistics",
    "mention_steps",
    "select_tokens",
]
