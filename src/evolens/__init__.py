"""evolens: how multimodal knowledge evolves, layer by layer, inside vision-language models.

>>> import evolens
>>> sorted(evolens.supported_families())[:2]
['llama', 'llava']
"""

from evolens.errors import (
    DatasetError,
    EvolensError,
    ImageDecodeError,
    ImageNotFoundError,
    InputError,
    ModelLoadError,
    NotAModelError,
    PromptError,
    SettingsError,
    UnsafeCheckpointError,
    UnsafePathError,
    UnsupportedModelError,
)

__version__ = "0.1.0"

from evolens.api import LVLM, load
from evolens.capture.generate import GenerationSettings
from evolens.data import (
    Amber,
    Coco,
    DataItem,
    Dataset,
    Evaluation,
    ImageFolder,
    LayerStatistics,
    Pope,
    TokenLabels,
    TokenLayers,
    evaluate,
    evaluate_dataset,
    label_tokens,
    layer_statistics,
    open_dataset,
)
from evolens.lens.logit_lens import LogitLens
from evolens.metrics.compute import LayerMetrics
from evolens.models.registry import Family, register_family, supported_families
from evolens.runner import RunSummary, run
from evolens.store.results import RunResults, finalize_run
from evolens.trace import Candidates, ModelInfo, TopK, Trace

__all__ = [
    "LVLM",
    "Amber",
    "Candidates",
    "Coco",
    "DataItem",
    "Dataset",
    "DatasetError",
    "Evaluation",
    "EvolensError",
    "Family",
    "GenerationSettings",
    "ImageDecodeError",
    "ImageFolder",
    "ImageNotFoundError",
    "InputError",
    "LayerMetrics",
    "LayerStatistics",
    "LogitLens",
    "ModelInfo",
    "ModelLoadError",
    "NotAModelError",
    "Pope",
    "PromptError",
    "RunResults",
    "RunSummary",
    "SettingsError",
    "TokenLabels",
    "TokenLayers",
    "TopK",
    "Trace",
    "UnsafeCheckpointError",
    "UnsafePathError",
    "UnsupportedModelError",
    "__version__",
    "evaluate",
    "evaluate_dataset",
    "finalize_run",
    "label_tokens",
    "layer_statistics",
    "load",
    "open_dataset",
    "register_family",
    "run",
    "supported_families",
]
