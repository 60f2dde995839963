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

from evolens.api import LVLM, load
from evolens.capture.generate import GenerationSettings
from evolens.geometry import (
    FeatureMap,
    JumpSettings,
    ReducerSettings,
    StageGroup,
    multi_image_map,
    single_image_map,
)
from evolens.lens.logit_lens import LogitLens
from evolens.metrics.compute import LayerMetrics
from evolens.models.registry import Family, register_family, supported_families
from evolens.trace import Candidates, ModelInfo, TopK, Trace

__all__ = [
    "LVLM",
    "Candidates",
    "EvolensError",
    "Family",
    "FeatureMap",
    "GenerationSettings",
    "ImageDecodeError",
    "ImageNotFoundError",
    "InputError",
    "JumpSettings",
    "LayerMetrics",
    "LogitLens",
    "ModelInfo",
    "ModelLoadError",
    "NotAModelError",
    "PromptError",
    "ReducerSettings",
    "SettingsError",
    "StageGroup",
    "TopK",
    "Trace",
    "UnsafeCheckpointError",
    "UnsupportedModelError",
    "__version__",
    "load",
    "multi_image_map",
    "register_family",
    "single_image_map",
    "supported_families",
]
