"""Every family with a tiny builder: save, load, trace, and check the lens and the capture against the model.

One checkpoint per family is saved and loaded once for the module (parametrized module-scoped fixture).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import evolens
from evolens.models import get_family, supported_families
from evolens.testing import TINY_BUILDERS, save_tiny, tiny_unavailable

FAMILIES = sorted(TINY_BUILDERS)
PROMPTS = ("describe the image", "what color is the ball on the left of the tree ?")
MAX_NEW = 4
TEXT_ONLY = ("llava", "qwen2_vl", "mllama")


def _image(width: int, height: int, seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


IMAGES = (_image(40, 30, 0), _image(64, 40, 1))


@pytest.fixture(scope="module", params=FAMILIES)
def lvlm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> evolens.LVLM:
    reason = tiny_unavailable(request.param)
    if reason is not None:
        pytest.skip(reason)
    path = save_tiny(request.param, tmp_path_factory.mktemp(request.param))
    return evolens.load(path, device="cpu", verify=True)


@pytest.fixture(scope="module")
def first(lvlm: evolens.LVLM) -> evolens.Trace:
    """The first item traced alone (with an image for vision-language families)."""
    return lvlm.trace(IMAGES[0] if lvlm.is_vlm else None, PROMPTS[0], max_new_tokens=MAX_NEW)


def _generate(lvlm: evolens.LVLM, trace: evolens.Trace, image: Image.Image | None) -> Any:
    """Plain Hugging Face generation of the same input, with raw logits and hidden states."""
    roles = lvlm.loaded.roles
    inputs = lvlm.encode([trace.rendered_prompt], [image] if image is not None else None)
    eos = evolens.capture.generate.eos_token_ids(lvlm.model, lvlm.tokenizer)
    with torch.inference_mode():
        return lvlm.model.generate(
            **inputs,
            max_new_tokens=trace.n_steps,
            do_sample=False,
            output_logits=True,
            output_hidden_states=True,
            return_dict_in_generate=True,
            suppress_tokens=list(roles.suppressed_token_ids) or None,
            eos_token_id=list(eos),
            pad_token_id=lvlm.tokenizer.pad_token_id,
        )


@pytest.fixture(scope="module")
def generated(lvlm: evolens.LVLM, first: evolens.Trace) -> Any:
    """Hugging Face's own generation of the first item (raw logits and hidden states)."""
    return _generate(lvlm, first, IMAGES[0] if lvlm.is_vlm else None)


def _check_lens_against_generate(lvlm: evolens.LVLM, trace: evolens.Trace, out: Any) -> None:
    prompt_len = out.sequences.shape[1] - len(out.logits)
    assert out.sequences[0, prompt_len:].tolist() == trace.generated_ids.tolist()
    assert trace.n_steps == len(out.logits) >= 1
    model_logits = torch.stack(out.logits)[:, 0].float()  # [T, vocab], raw (before logits processors)
    lens_logits = lvlm.lens("logit").logits(trace.hidden_states[-1:])[0]  # [T, vocab]
    torch.testing.assert_close(lens_logits, model_logits, atol=1e-4, rtol=1e-4)


def test_family_is_chosen_from_model_type(lvlm: evolens.LVLM) -> None:
    assert lvlm.family in FAMILIES
    assert lvlm.model.config.model_type in get_family(lvlm.family).model_types
    assert lvlm.n_layers == 4


def test_lens_at_last_layer_equals_model_logits_every_step(
    lvlm: evolens.LVLM, first: evolens.Trace, generated: Any
) -> None:
    assert first.hidden_states is not None
    assert first.hidden_states.shape[:2] == (lvlm.n_layers + 1, first.n_steps)
    _check_lens_against_generate(lvlm, first, generated)


def test_paper_lens_equals_head_on_hugging_face_hidden_states(
    lvlm: evolens.LVLM, first: evolens.Trace, generated: Any
) -> None:
    image = IMAGES[0] if lvlm.is_vlm else None
    paper = lvlm.trace(image, PROMPTS[0], max_new_tokens=MAX_NEW, lens="paper")
    assert paper.lens_mode == "paper"
    assert paper.generated_ids.tolist() == first.generated_ids.tolist()
    out = generated  # Hugging Face's generation of the same input (same tokens, as just checked)
    # hidden_states[step][boundary] is [batch, positions, d]; the state predicting the next token is the last.
    hf_states = torch.stack([torch.stack([h[0, -1] for h in step]) for step in out.hidden_states], dim=1)
    assert hf_states.shape == (lvlm.n_layers + 1, paper.n_steps, lvlm.loaded.roles.d_model)
    roles = lvlm.loaded.roles
    with torch.inference_mode():
        expected = roles.logit_transform.apply(roles.lm_head(hf_states).float())
    torch.testing.assert_close(lvlm.attach(paper).logits(), expected, atol=1e-4, rtol=1e-4)
    # Hugging Face's raw entries are the states evolens captures; its last entry is already normed.
    assert paper.hidden_states is not None
    torch.testing.assert_close(paper.hidden_states[:-1], hf_states[:-1], atol=1e-5, rtol=1e-5)


def test_padded_batch_equals_one_at_a_time(lvlm: evolens.LVLM, first: evolens.Trace) -> None:
    images: list[Image.Image | None] = list(IMAGES) if lvlm.is_vlm else [None, None]
    second = lvlm.trace(images[1], PROMPTS[1], max_new_tokens=MAX_NEW)
    assert len(second.prompt_ids) != len(first.prompt_ids)  # so the batch really pads
    batch = lvlm.trace(images=images, prompts=list(PROMPTS), max_new_tokens=MAX_NEW, batch_size=2)
    for alone, batched in zip((first, second), batch, strict=True):
        assert batched.generated_ids.tolist() == alone.generated_ids.tolist()
        assert batched.prompt_ids.tolist() == alone.prompt_ids.tolist()
        assert batched.image_token_positions.tolist() == alone.image_token_positions.tolist()
        assert batched.hidden_states is not None and alone.hidden_states is not None
        torch.testing.assert_close(batched.hidden_states, alone.hidden_states, atol=1e-5, rtol=1e-4)


def test_image_token_positions_point_at_image_tokens(lvlm: evolens.LVLM, first: evolens.Trace) -> None:
    image_token_id = lvlm.loaded.roles.image_token_id
    positions = first.image_token_positions
    if not lvlm.is_vlm:
        assert image_token_id is None and positions.numel() == 0
        return
    assert positions.numel() > 0
    assert bool((first.prompt_ids[positions] == image_token_id).all())
    assert positions.numel() == int((first.prompt_ids == image_token_id).sum())
    assert image_token_id not in first.generated_ids.tolist()


@pytest.mark.parametrize("family", [f for f in TEXT_ONLY if f in TINY_BUILDERS])
def test_text_only_input_on_a_vision_language_model(
    family: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    lvlm = evolens.load(save_tiny(family, tmp_path_factory.mktemp(f"{family}-text")), device="cpu")
    trace = lvlm.trace(None, PROMPTS[0], max_new_tokens=MAX_NEW)
    assert trace.image is None and trace.image_token_positions.numel() == 0
    _check_lens_against_generate(lvlm, trace, _generate(lvlm, trace, None))
    cross_layers = getattr(lvlm.model.config.get_text_config(), "cross_attention_layers", None) or []
    assert trace.hidden_states is not None
    for layer_idx in cross_layers:  # Mllama skips them without an image: the stream passes through unchanged
        assert torch.equal(trace.hidden_states[layer_idx + 1], trace.hidden_states[layer_idx])


def test_every_builtin_family_has_a_tiny_builder() -> None:
    assert set(supported_families()) <= set(TINY_BUILDERS)


def test_a_family_that_needs_an_image_refuses_text_only_prompts(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from evolens.errors import PromptError

    assert get_family("paligemma").needs_image
    lvlm = evolens.load(save_tiny("paligemma", tmp_path_factory.mktemp("paligemma-text")), device="cpu")
    with pytest.raises(PromptError, match="'paligemma' needs an image"):
        lvlm.trace(None, PROMPTS[0], max_new_tokens=2)
