"""evolens: how multimodal knowledge evolves, layer by layer, inside vision-language models.

>>> import evolens
>>> {"llava", "qwen2_vl", "llama"} <= set(evolens.supported_families())
True
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

from evolens.api import LVLM, load
from evolens.capture.generate import GenerationSettings
from evolens.lens.logit_lens import LogitLens
from evolens.metrics.compute import LayerMetrics
from evolens.models.registry import Family, register_family, supported_families
from evolens.trace import Candidates, ModelInfo, TopK, Trace

__all__ = [
    "LVLM",
    "Candidates",
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
    "PromptError",
    "SettingsError",
    "TopK",
    "Trace",
    "UnsafeCheckpointError",
    "UnsupportedModelError",
    "__version__",
    "load",
    "register_family",
    "supported_families",
]
