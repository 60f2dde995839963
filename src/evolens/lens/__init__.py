"""Lens: hidden state -> vocabulary distribution (the :class:`Lens` interface and the logit lens)."""

from evolens.lens.base import Lens
from evolens.lens.logit_lens import (
    LENS_MODES,
    METRICS_DTYPES,
    LensMode,
    LogitLens,
    MetricsDtype,
    check_lens_mode,
    lens_dtype_of,
    metrics_dtype_of,
)

__all__ = [
    "LENS_MODES",
    "METRICS_DTYPES",
    "Lens",
    "LensMode",
    "LogitLens",
    "MetricsDtype",
    "check_lens_mode",
    "lens_dtype_of",
    "metrics_dtype_of",
]
