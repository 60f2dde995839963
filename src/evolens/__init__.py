"""evolens: how multimodal knowledge evolves, layer by layer, inside vision-language models.

The README's quick start, run on a tiny random LLaVA saved to a temporary directory (a real checkpoint or a hub id
such as ``"llava-hf/llava-1.5-7b-hf"`` works the same way):

>>> import tempfile
>>> import evolens
>>> from evolens.testing import save_tiny
>>> from PIL import Image
>>> model_dir = save_tiny("llava", tempfile.mkdtemp())
>>> lvlm = evolens.load(model_dir, device="cpu")
>>> trace = lvlm.trace(image=Image.new("RGB", (64, 64), "red"), prompt="describe this image", max_new_tokens=6)
>>> len(trace.tokens) == trace.n_steps
True
>>> trace.token_probs().shape        # [n_layers + 1, n_steps]: probability of each generated token at each layer
torch.Size([5, 6])
>>> trace.jsd().shape                # [n_layers, n_steps]: JSD between layer l and l + 1, bits
torch.Size([4, 6])
>>> bool(((trace.jsd() >= 0) & (trace.jsd() <= 1)).all())
True
>>> trace.jsd(reduction="paper").shape
torch.Size([4, 6])
>>> trace.topk(5).ids.shape
torch.Size([5, 6, 5])
>>> trace.hidden_states.shape       # [n_layers + 1, n_steps, d_model], before the final norm
torch.Size([5, 6, 32])
>>> paper = lvlm.trace(image=Image.new("RGB", (64, 64), "red"), prompt="describe this image", max_new_tokens=6, lens="paper")
>>> path = trace.save(tempfile.mkdtemp() + "/dog")
>>> evolens.Trace.load(path).text == trace.text
True
>>> {"llava", "qwen2_vl", "llama"} <= set(evolens.supported_families())
True
"""

from evolens import toy
from evolens._version import __version__
from evolens.analysis import (
    AnalysisSummary,
    Annotations,
    DetectorParams,
    ProfileComparison,
    TraceAnalysis,
    analyze_trace,
    summarize,
)
from evolens.api import LVLM, Decoding, LoadOptions, TraceOptions, load
from evolens.capture.compiled import CompileOptions
from evolens.capture.generate import GenerationSettings
from evolens.data import (
    Amber,
    Coco,
    DataItem,
    Dataset,
    Evaluation,
    ImageFolder,
    Pope,
    evaluate,
    evaluate_dataset,
    open_dataset,
)
from evolens.decoding import parse_strategies
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
from evolens.geometry import (
    FeatureMap,
    JumpSettings,
    ReducerSettings,
    StageGroup,
    multi_image_map,
    single_image_map,
)
from evolens.hallucination import LayerStatistics, TokenLabels, TokenLayers, label_tokens, layer_statistics
from evolens.lens import Lens, LogitLens
from evolens.metrics.compute import LayerMetrics
from evolens.models.registry import Family, register_family, supported_families
from evolens.runs import FinalizeOptions, RunSummary, finalize_run, run
from evolens.store.results import RunResults
from evolens.trace import Candidates, LensedTrace, ModelInfo, TopK, Trace

__all__ = [
    "LVLM",
    "Amber",
    "AnalysisSummary",
    "Annotations",
    "Candidates",
    "Coco",
    "CompileOptions",
    "DataItem",
    "Dataset",
    "DatasetError",
    "Decoding",
    "DetectorParams",
    "Evaluation",
    "EvolensError",
    "Family",
    "FeatureMap",
    "FinalizeOptions",
    "GenerationSettings",
    "ImageDecodeError",
    "ImageFolder",
    "ImageNotFoundError",
    "InputError",
    "JumpSettings",
    "LayerMetrics",
    "LayerStatistics",
    "Lens",
    "LensedTrace",
    "LoadOptions",
    "LogitLens",
    "ModelInfo",
    "ModelLoadError",
    "NotAModelError",
    "Pope",
    "ProfileComparison",
    "PromptError",
    "ReducerSettings",
    "RunResults",
    "RunSummary",
    "SettingsError",
    "SkipReport",
    "StageGroup",
    "TokenComparison",
    "TokenLabels",
    "TokenLayers",
    "TopK",
    "Trace",
    "TraceAnalysis",
    "TraceOptions",
    "UnsafeCheckpointError",
    "UnsafePathError",
    "UnsupportedModelError",
    "__version__",
    "analyze_trace",
    "compare_hallucinations",
    "compare_text_only",
    "compare_tokens",
    "evaluate",
    "evaluate_dataset",
    "finalize_run",
    "generate_skipped",
    "label_tokens",
    "layer_statistics",
    "load",
    "multi_image_map",
    "open_dataset",
    "parse_strategies",
    "register_family",
    "run",
    "run_skip",
    "single_image_map",
    "skip_layers",
    "summarize",
    "supported_families",
    "toy",
]
