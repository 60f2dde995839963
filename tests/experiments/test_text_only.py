from __future__ import annotations

import pytest

from evolens.api import TraceOptions
from evolens.errors import PromptError
from evolens.experiments.text_only import IMAGE, LLM, NO_IMAGE, compare_text_only
from tests.experiments.conftest import make_image


def test_three_conditions_side_by_side(tiny_models) -> None:
    lvlm, llm = tiny_models("llava"), tiny_models("llama")
    images = [make_image(0), make_image(1)]
    comparison = compare_text_only(
        lvlm,
        images,
        "describe the image",
        llm=llm,
        llm_prompts="what color is the sky ?",
        options=TraceOptions.from_flat(max_new_tokens=4, keep_hidden_states=False),
    )
    assert [p.label for p in comparison.profiles] == [IMAGE, NO_IMAGE, LLM]
    image, no_image, text = comparison.profiles
    assert image.has_image and not no_image.has_image and not text.has_image
    assert image.n_items == 2 and no_image.n_items == 1 and text.n_items == 1  # distinct prompts only
    assert image.n_layers == lvlm.n_layers and text.n_layers == llm.n_layers
    assert len(image.mean_jsd) == lvlm.n_layers
    # the same model without the image is what lvlm.trace gives with image=None
    alone = lvlm.trace(None, "describe the image", max_new_tokens=4)
    assert no_image.texts[0] == alone.text
    assert image.model_source == lvlm.loaded.source and text.model_source == llm.loaded.source


def test_text_only_errors(tiny_models) -> None:
    lvlm, llm = tiny_models("llava"), tiny_models("llama")
    with pytest.raises(PromptError, match="text-only model"):
        compare_text_only(llm, [make_image(0)], "describe the image")
    with pytest.raises(PromptError, match="needs an image"):
        compare_text_only(lvlm, [None], "describe the image")
    with pytest.raises(PromptError, match="text-only causal LM"):
        compare_text_only(
            lvlm,
            [make_image(0)],
            "describe the image",
            llm=lvlm,
            options=TraceOptions.from_flat(max_new_tokens=2),
        )
