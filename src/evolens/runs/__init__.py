"""The run pipeline: trace a dataset into a resumable run directory (:func:`run`), then merge it — evaluate,
label tokens, analyse, compute statistics, draw figures (:func:`finalize_run`).

It composes the stages below it (the API, data, hallucination, store, report's figures) and is what the command line
calls for ``evolens run`` and ``evolens eval``.
"""

from evolens.runs.detect import detect_run
from evolens.runs.finalize import finalize_run
from evolens.runs.options import AUTO, DetectorChoice, FinalizeOptions, coerce_params
from evolens.runs.run import run
from evolens.runs.tracing import Progress, RunSummary, TqdmProgress

__all__ = [
    "AUTO",
    "DetectorChoice",
    "FinalizeOptions",
    "Progress",
    "RunSummary",
    "TqdmProgress",
    "coerce_params",
    "detect_run",
    "finalize_run",
    "run",
]
