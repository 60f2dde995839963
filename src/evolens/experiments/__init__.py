"""Experiments that run the model: layer skipping, hallucinated vs correct tokens, LVLM vs text-only."""

from evolens.experiments.hallucination import (
    TokenComparison,
    compare_hallucinations,
    compare_tokens,
    load_comparisons,
    save_comparisons,
)
from evolens.experiments.paper import PaperMutations, paper_mutation_layers
from evolens.experiments.skip import (
    Generation,
    SkipOptions,
    SkipReport,
    SkipResult,
    VariantOutput,
    VariantSummary,
    check_skip_layers,
    generate_skipped,
    merge_reports,
    rebuild_unsupported,
    run_skip,
    run_skip_chunked,
    skip_layers,
)
from evolens.experiments.text_only import compare_text_only

__all__ = [
    "Generation",
    "PaperMutations",
    "SkipOptions",
    "SkipReport",
    "SkipResult",
    "TokenComparison",
    "VariantOutput",
    "VariantSummary",
    "check_skip_layers",
    "compare_hallucinations",
    "compare_text_only",
    "compare_tokens",
    "generate_skipped",
    "load_comparisons",
    "merge_reports",
    "paper_mutation_layers",
    "rebuild_unsupported",
    "run_skip",
    "run_skip_chunked",
    "save_comparisons",
    "skip_layers",
]
