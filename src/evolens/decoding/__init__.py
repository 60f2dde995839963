"""Decoding strategies that use the lens while generating (issue: the paper's §6 applications): the paper's
mutation-skip, a critical-layer contrast, and the DoLa, VCD and ICD baselines in one harness. Each is a frozen
dataclass passed as ``TraceOptions(decoding=...)``; its step rule (:mod:`.rules`) plugs into capture's generation
(:mod:`evolens.capture.rules`). The stage sits beside :mod:`evolens.experiments`: it reads the lens, the metrics and
the analysis detectors, and nothing above them.
"""

from evolens.decoding.rules import contrast_scores, dola_candidates
from evolens.decoding.strategies import (
    ICD_INSTRUCTION,
    STRATEGIES,
    CriticalContrast,
    Dola,
    Greedy,
    Icd,
    MutationSkip,
    Vcd,
    parse_strategies,
    vcd_noise,
)

__all__ = [
    "ICD_INSTRUCTION",
    "STRATEGIES",
    "CriticalContrast",
    "Dola",
    "Greedy",
    "Icd",
    "MutationSkip",
    "Vcd",
    "contrast_scores",
    "dola_candidates",
    "parse_strategies",
    "vcd_noise",
]
