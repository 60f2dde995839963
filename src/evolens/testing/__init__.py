"""Builders of tiny random checkpoints (no downloads) for tests, benchmarks and the pre-toy demo."""

from evolens.testing.tiny import (
    TINY_BUILDERS,
    TINY_REQUIREMENTS,
    build_tiny,
    save_tiny,
    tiny_unavailable,
    word_tokenizer,
)

__all__ = [
    "TINY_BUILDERS",
    "TINY_REQUIREMENTS",
    "build_tiny",
    "save_tiny",
    "tiny_unavailable",
    "word_tokenizer",
]
