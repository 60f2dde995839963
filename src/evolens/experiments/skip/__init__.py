"""Layer skipping (paper §4.2, Fig. 5): generation with decoder layers replaced by the identity, each variant
compared with the original output.

The stages, one module each: :mod:`~evolens.experiments.skip.methods` (the skip set; the hook and rebuild
methods), :mod:`~evolens.experiments.skip.generate` (generation with layers skipped),
:mod:`~evolens.experiments.skip.plans` (each item's skip sets from its critical and mutation layers),
:mod:`~evolens.experiments.skip.results` (variants compared with the original; ``skip.json``),
:mod:`~evolens.experiments.skip.options` (what runs: :class:`SkipOptions`),
:mod:`~evolens.experiments.skip.chunks` (finished chunks on disk, so a run resumes) and
:mod:`~evolens.experiments.skip.run` (the experiment: :func:`run_skip`).

Layer numbers are 1-based decoder layers ``1..L`` (see :mod:`evolens.analysis.layers`).
"""

from evolens.experiments.skip.chunks import ChunkStore
from evolens.experiments.skip.generate import Generation, generate_skipped, generate_variants
from evolens.experiments.skip.methods import (
    SkipMethod,
    check_skip_layers,
    identity_hooks,
    rebuild_unsupported,
    skip_layers,
    verify_rebuild,
)
from evolens.experiments.skip.options import SkipOptions
from evolens.experiments.skip.plans import SkipPlan, SkipPlanner, plan_skips
from evolens.experiments.skip.results import (
    ORIGINAL,
    SkipReport,
    SkipResult,
    VariantOutput,
    VariantSummary,
    compare_variants,
    merge_reports,
    summarize_variants,
)
from evolens.experiments.skip.run import run_skip, run_skip_chunked, skip_items

__all__ = [
    "ORIGINAL",
    "ChunkStore",
    "Generation",
    "SkipMethod",
    "SkipOptions",
    "SkipPlan",
    "SkipPlanner",
    "SkipReport",
    "SkipResult",
    "VariantOutput",
    "VariantSummary",
    "check_skip_layers",
    "compare_variants",
    "generate_skipped",
    "generate_variants",
    "identity_hooks",
    "merge_reports",
    "plan_skips",
    "rebuild_unsupported",
    "run_skip",
    "run_skip_chunked",
    "skip_items",
    "skip_layers",
    "summarize_variants",
    "verify_rebuild",
]
