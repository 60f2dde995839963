"""LVLM vs text-only (paper §6): the same model and prompt with and without the image, and a separate causal LM,
traced the same way; their JSD profiles, stage structure and hierarchy ratio side by side."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evolens.analysis.params import DetectorParams
from evolens.analysis.profiles import ProfileComparison, compare_profiles
from evolens.api import LVLM, TraceOptions
from evolens.errors import PromptError
from evolens.experiments.items import pair_items

IMAGE, NO_IMAGE, LLM = "image", "no image", "llm"


def compare_text_only(
    lvlm: LVLM,
    images: Any,
    prompts: str | Sequence[str],
    *,
    llm: LVLM | None = None,
    llm_prompts: str | Sequence[str] | None = None,
    params: DetectorParams | None = None,
    options: TraceOptions | None = None,
) -> ProfileComparison:
    """Trace ``lvlm`` with the images (label ``"image"``), ``lvlm`` with the same prompts and no image
    (``"no image"``; each distinct prompt once), and, if given, the causal LM ``llm`` with ``llm_prompts`` (default: the same prompts;
    label ``"llm"``), then compare their profiles (:func:`~evolens.analysis.profiles.compare_profiles`).

    Args:
        lvlm: A vision-language model.
        images: One image or one per prompt.
        prompts: One prompt or one per image.
        llm: A text-only model loaded with :func:`evolens.load`.
        llm_prompts: Prompts for ``llm`` (e.g. the paper's "Who was the first Indian to win an academy award?").
        params: Detector parameters.
        options: How every condition is traced (:class:`~evolens.api.TraceOptions`; default: its defaults without
            keeping the hidden states, which the comparison does not need).

    Raises:
        PromptError: ``lvlm`` is not a vision-language model, an item has no image, or ``llm`` is not text-only.
    """
    if not lvlm.is_vlm:
        raise PromptError(
            f"{lvlm.loaded.source} is a text-only model; compare_text_only needs a vision-language model"
        )
    image_list, prompt_list = pair_items(images, prompts)
    if any(image is None for image in image_list):
        raise PromptError("every item needs an image (the comparison removes it for the text-only condition)")
    options = options or TraceOptions(keep_hidden_states=False)
    unique = list(dict.fromkeys(prompt_list))
    groups = {
        IMAGE: lvlm.trace(images=image_list, prompts=prompt_list, options=options),
        # the same prompt without an image gives the same trace every time: trace each distinct prompt once
        NO_IMAGE: lvlm.trace(images=[None] * len(unique), prompts=unique, options=options),
    }
    if llm is not None:
        if llm.is_vlm:
            raise PromptError(
                f"llm must be a text-only causal LM, got the vision-language model {llm.loaded.source}"
            )
        _, llm_list = pair_items(None, llm_prompts if llm_prompts is not None else prompt_list)
        groups[LLM] = llm.trace(images=[None] * len(llm_list), prompts=llm_list, options=options)
    return compare_profiles(groups, params)
