"""Tiny random checkpoints of every supported family, built from configs with local tokenizers and processors.

Nothing is downloaded: tokenizers are word-level ``tokenizers`` objects over a small English vocabulary plus each
family's special tokens, image processors are the PIL variants, and chat templates are written here in the
families' own formats. ``save_tiny(family, dir)`` writes a directory that ``evolens.load(dir)`` reads exactly as
it would read a real checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from evolens.testing import tiny_gemma, tiny_llava, tiny_llava_like, tiny_other, tiny_qwen, tiny_text
from evolens.testing.tokenizer import LLAVA_TEMPLATE, WORDS, word_tokenizer

__all__ = [
    "LLAVA_TEMPLATE",
    "TINY_BUILDERS",
    "TINY_REQUIREMENTS",
    "WORDS",
    "build_tiny",
    "save_tiny",
    "tiny_unavailable",
    "word_tokenizer",
]

Builder = Callable[..., tuple[torch.nn.Module, Any]]

# family name -> builder(n_layers=4) -> (model, processor or tokenizer)
TINY_BUILDERS: dict[str, Builder] = {
    "llava": tiny_llava.build_llava,
    "llava_next": tiny_llava.build_llava_next,
    "llava_onevision": tiny_llava.build_llava_onevision,
    "mistral3": tiny_llava_like.build_mistral3,
    "internvl": tiny_llava_like.build_internvl,
    "aya_vision": tiny_llava_like.build_aya_vision,
    "vipllava": tiny_llava.build_vipllava,
    "llava_next_video": tiny_llava.build_llava_next_video,
    "video_llava": tiny_llava.build_video_llava,
    "lighton_ocr": tiny_llava_like.build_lighton_ocr,
    "deepseek_vl": tiny_llava_like.build_deepseek_vl,
    "janus": tiny_llava_like.build_janus,
    "ovis2": tiny_llava_like.build_ovis2,
    "idefics2": tiny_gemma.build_idefics2,
    "qwen2_vl": tiny_qwen.build_qwen2_vl,
    "qwen2_5_vl": tiny_qwen.build_qwen2_5_vl,
    "qwen3_vl": tiny_qwen.build_qwen3_vl,
    "qwen3_vl_moe": tiny_qwen.build_qwen3_vl_moe,
    "qwen3_5": tiny_qwen.build_qwen3_5,
    "glm4v": tiny_qwen.build_glm4v,
    "paddleocr_vl": tiny_qwen.build_paddleocr_vl,
    "gemma3": tiny_gemma.build_gemma3,
    "gemma4": tiny_gemma.build_gemma4,
    "paligemma": tiny_gemma.build_paligemma,
    "idefics3": tiny_gemma.build_idefics3,
    "smolvlm": tiny_gemma.build_smolvlm,
    "mllama": tiny_other.build_mllama,
    "llama": tiny_text.build_llama,
    "mistral": tiny_text.build_mistral,
    "qwen2": tiny_text.build_qwen2,
    "qwen3": tiny_text.build_qwen3,
    "gemma": tiny_text.build_gemma,
    "gemma2": tiny_text.build_gemma2,
    "gemma3_text": tiny_text.build_gemma3_text,
    "phi3": tiny_text.build_phi3,
    "phi": tiny_text.build_phi,
    "granite": tiny_text.build_granite,
    "cohere": tiny_text.build_cohere,
    "olmo2": tiny_text.build_olmo2,
}


# Packages a builder needs beyond evolens' own dependencies (PixtralProcessor imports torchvision).
TINY_REQUIREMENTS: dict[str, tuple[str, ...]] = {"mistral3": ("torchvision",)}


def tiny_unavailable(family: str) -> str | None:
    """Why ``family``'s tiny checkpoint cannot be built here (a missing package), or ``None`` if it can."""
    import importlib.util

    missing = [p for p in TINY_REQUIREMENTS.get(family, ()) if importlib.util.find_spec(p) is None]
    return (
        f"the tiny {family} checkpoint needs {', '.join(missing)}, which is not installed"
        if missing
        else None
    )


def build_tiny(family: str, *, seed: int = 0, **kwargs: Any) -> tuple[torch.nn.Module, Any]:
    """A tiny random model of ``family`` and its processor (or tokenizer), weights drawn under ``seed``."""
    try:
        builder = TINY_BUILDERS[family]
    except KeyError:
        raise KeyError(f"no tiny builder for {family!r}; have {sorted(TINY_BUILDERS)}") from None
    reason = tiny_unavailable(family)
    if reason is not None:
        raise ImportError(reason)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model, processor = builder(**kwargs)
    return model.eval(), processor


def save_tiny(family: str, directory: str | Path, *, seed: int = 0, **kwargs: Any) -> Path:
    """Build a tiny ``family`` model and write it (safetensors) with its processor to ``directory``."""
    model, processor = build_tiny(family, seed=seed, **kwargs)
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)  # type: ignore[operator]
    processor.save_pretrained(path)
    return path
