"""LVLM vs text-only (paper §6): the same model and prompt with and without the image, and a separate causal LM,
traced the same way; their JSD profiles, stage structure and hierarchy ratio side by side."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from evolens.analysis.params import DetectorParams
from evolens.analysis.profiles import ProfileComparison

if TYPE_CHECKING:
    from evolens.api import LVLM

IMAGE, NO_IMAGE, LLM = "image", "no image", "llm"


def compare_text_only(
    lvlm: LVLM,
    images: Any,
    prompts: str | Sequence[str],
    *,
    llm: LVLM | None = None,
    llm_prompts: str | Sequence[str] | None = None,
    params: DetectorParams | None = None,
    **trace_options: Any,
) -> ProfileComparison:
    """Trace ``lvlm`` with the images (label ``"image"``), ``lvlm`` with the same prompts and no image
    (``"no image"``), and, if given, the causal LM ``llm`` with ``llm_prompts`` (default: the same prompts;
    label ``"llm"``), then compare their profiles (:func:`~evolens.analysis.profiles.compare_profiles`).

    Args:
        lvlm: A vision-language model.
        images: One image or one per prompt.
        prompts: One prompt or one per image.
        llm: A text-only model loaded with :func:`evolens.load`.
        llm_prompts: Prompts for ``llm`` (e.g. the paper's "Who was the first Indian to win an academy award?").
        params: Detector parameters.
        **trace_options: Options of :meth:`evolens.LVLM.trace`, used for every condition.
    """
    raise NotImplementedError
