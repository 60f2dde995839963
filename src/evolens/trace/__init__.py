"""Trace: one generation followed through every layer — plain data (:class:`Trace`), its directory format
(:mod:`evolens.trace.fileformat`), and the lens attached from outside (:class:`LensedTrace`)."""

from evolens.trace.core import Candidates, JsdReduction, TopK, Trace, load_trace
from evolens.trace.fileformat import SCHEMA_VERSION, metrics_table, read_manifest, save_trace
from evolens.trace.lensed import LensedTrace
from evolens.trace.record import ModelInfo, TraceRecord
from evolens.trace.vocab import metrics_token_ids, vocab_strings

__all__ = [
    "SCHEMA_VERSION",
    "Candidates",
    "JsdReduction",
    "LensedTrace",
    "ModelInfo",
    "TopK",
    "Trace",
    "TraceRecord",
    "load_trace",
    "metrics_table",
    "metrics_token_ids",
    "read_manifest",
    "save_trace",
    "vocab_strings",
]
