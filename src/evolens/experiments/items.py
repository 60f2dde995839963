"""Pairing images with prompts, as :meth:`evolens.LVLM.trace` does."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evolens.errors import PromptError
from evolens.models.inputs import ImageInput, check_prompt


def pair_items(images: Any, prompts: str | Sequence[str]) -> tuple[list[ImageInput | None], list[str]]:
    """Pair images and prompts like :meth:`evolens.LVLM.trace` does (one image or a list; one prompt or a list)."""
    image_list: list[ImageInput | None]
    if images is None or isinstance(images, (str, Path)) or not isinstance(images, Sequence):
        image_list = [images]
    else:
        image_list = list(images)
    if isinstance(prompts, str):
        prompt_list = [prompts] * len(image_list)
    else:
        prompt_list = list(prompts)
        if len(image_list) == 1 and len(prompt_list) > 1:
            image_list = image_list * len(prompt_list)
    if len(prompt_list) != len(image_list):
        raise PromptError(
            f"got {len(image_list)} images but {len(prompt_list)} prompts; they pair up one to one"
        )
    if not prompt_list:
        raise PromptError("no items: give at least one prompt")
    for prompt in prompt_list:
        check_prompt(prompt)
    return image_list, prompt_list
