"""Capture: generate while recording each decoder layer's residual stream for every generated token."""

from evolens.capture.compiled import CompileOptions
from evolens.capture.generate import CapturedItem, GenerationSettings, eos_token_ids, generate_with_capture
from evolens.capture.hooks import ResidualRecording, record_residual_stream

__all__ = [
    "CapturedItem",
    "CompileOptions",
    "GenerationSettings",
    "ResidualRecording",
    "eos_token_ids",
    "generate_with_capture",
    "record_residual_stream",
]
