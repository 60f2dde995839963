"""Hallucinated vs grounded tokens: the benchmark's judgements mapped onto generated tokens (:mod:`.token_labels`)
and the statistics of their critical and mutation layers (:mod:`.stats`).

The stage sits above :mod:`evolens.data` (whose evaluators judge the responses) and :mod:`evolens.analysis` (whose
detectors give the layers), and below :mod:`evolens.store`, which writes what it computes.
"""

from evolens.hallucination.stats import LayerDetector, LayerStatistics, TokenLayers, Unit, layer_statistics
from evolens.hallucination.token_labels import TokenLabels, label_tokens, mention_steps

__all__ = [
    "LayerDetector",
    "LayerStatistics",
    "TokenLabels",
    "TokenLayers",
    "Unit",
    "label_tokens",
    "layer_statistics",
    "mention_steps",
]
