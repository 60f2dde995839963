"""The families evolens ships, described as data. Each is checked by a test on a tiny saved checkpoint."""

from __future__ import annotations

from typing import Any

from evolens.models.registry import Family, register_family


def _paligemma_prompt(processor: Any, prompt: str, n_images: int) -> str:
    # PaliGemma has no chat template: its processor prepends the image tokens and BOS and appends "\n" itself.
    return prompt


BUILTIN_FAMILIES: tuple[Family, ...] = (
    Family(
        name="llava",
        model_types=("llava",),
        description="LLaVA-1.5 and other llava-hf checkpoints (CLIP/SigLIP tower + projector + Llama/Vicuna/Mistral)",
    ),
    Family(
        name="llava_next",
        model_types=("llava_next",),
        description="LLaVA-NeXT (LLaVA-1.6) with any-resolution tiling",
    ),
    Family(
        name="paligemma",
        model_types=("paligemma",),
        prompt_builder=_paligemma_prompt,
        description="PaliGemma 1/2 (SigLIP + Gemma), prompt without chat template",
    ),
    Family(
        name="llama",
        model_types=("llama",),
        kind="text",
        description="Llama / Vicuna causal LMs (text-only comparisons)",
    ),
    Family(
        name="qwen2",
        model_types=("qwen2",),
        kind="text",
        description="Qwen2 / Qwen2.5 causal LMs (text-only comparisons)",
    ),
)

for _family in BUILTIN_FAMILIES:
    register_family(_family)
