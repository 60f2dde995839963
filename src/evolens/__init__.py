"""evolens: how multimodal knowledge evolves, layer by layer, inside vision-language models.

>>> import evolens
>>> sorted(evolens.supported_families())[:2]
['llama', 'llava']
"""

from evolens.errors import (
    EvolensError,
    ImageDecodeError,
    ImageNotFoundError,
    InputError,
    ModelLoadError,
    NotAModelError,
    PromptError,
    SettingsError,
    UnsafeCheckpointError,
    UnsupportedModelError,
)

__version__ = "0.1.0"

from evolens.analysis import (
    AnalysisSummary,
    Annotations,
    DetectorParams,
    ProfileComparison,
    TraceAnalysis,
    analyze_trace,
    summarize,
)
from evolens.api import LVLM, load
from evolens.capture.generate import GenerationSettings
from evolens.experiments import (
    SkipReport,
    TokenComparison,
    compare_hallucinations,
    compare_text_only,
    compare_tokens,
    generate_skipped,
    run_skip,
    skip_layers,
)
from evolens.lens.logit_lens import LogitLens
from evolens.metrics.compute import LayerMetrics
from evolens.models.registry import Family, register_family, supported_families
from evolens.trace import Candidates, ModelInfo, TopK, Trace

__all__ = [
    "LVLM",
    "AnalysisSummary",
    "Annotations",
    "Candidates",
    "DetectorParams",
    "EvolensError",
    "Family",
    "GenerationSettings",
    "ImageDecodeError",
    "ImageNotFoundError",
    "InputError",
    "LayerMetrics",
    "LogitLens",
    "ModelInfo",
    "ModelLoadError",
    "NotAModelError",
    "ProfileComparison",
    "PromptError",
    "SettingsError",
    "SkipReport",
    "TokenComparison",
    "TopK",
    "Trace",
    "TraceAnalysis",
    "UnsafeCheckpointError",
    "UnsupportedModelError",
    "__version__",
    "analyze_trace",
    "compare_hallucinations",
    "compare_text_only",
    "compare_tokens",
    "generate_skipped",
    "load",
    "register_family",
    "run_skip",
    "skip_layers",
    "summarize",
    "supported_families",
]
