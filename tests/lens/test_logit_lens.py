"""The lens at the last layer is the model's own next-token distribution; the paper mode is the paper's code."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

import evolens
from evolens.errors import AdapterError, SettingsError
from evolens.lens import LogitLens, check_lens_mode


def _reference_generate(lvlm, image, prompt: str, n: int):
    rendered = lvlm.render_prompt(prompt, image=image is not None)
    inputs = lvlm.encode([rendered], [image] if image is not None else None)
    with torch.inference_mode():
        return lvlm.model.generate(
            **inputs,
            max_new_tokens=n,
            do_sample=False,
            output_logits=True,
            output_hidden_states=True,
            return_dict_in_generate=True,
            suppress_tokens=list(lvlm.loaded.roles.suppressed_token_ids) or None,
            pad_token_id=lvlm.tokenizer.pad_token_id,
        )


@pytest.mark.parametrize("which", ["tiny_llava", "tiny_llama"])
def test_default_lens_at_last_layer_equals_model_logits_at_every_step(which, request, image) -> None:
    lvlm = request.getfixturevalue(which)
    img = image if lvlm.is_vlm else None
    trace = lvlm.trace(img, "describe this image", max_new_tokens=6)
    ref = _reference_generate(lvlm, img, "describe this image", 6)
    model_logits = torch.stack([step[0] for step in ref.logits])[: trace.n_steps].float()
    lens_logits = lvlm.lens().logits(trace.hidden_states)[-1]
    assert torch.allclose(lens_logits, model_logits, atol=1e-4, rtol=1e-4)
    assert torch.equal(ref.sequences[0, -trace.n_steps :], trace.generated_ids)
    model_logp = torch.log_softmax(model_logits, -1)
    expected = model_logp.gather(-1, trace.generated_ids[:, None])[:, 0]
    assert torch.allclose(trace.token_logprobs()[-1], expected, atol=1e-5)


def test_paper_lens_is_head_on_hugging_face_hidden_states(tiny_llava, image) -> None:
    trace = tiny_llava.trace(image, "describe this image", max_new_tokens=4, lens="paper")
    ref = _reference_generate(tiny_llava, image, "describe this image", 4)
    head = tiny_llava.loaded.roles.lm_head
    for step in range(trace.n_steps):
        hf = torch.stack([h[0, -1] for h in ref.hidden_states[step]])  # [L+1, d]; the last entry is normed
        expected = torch.log_softmax(head(hf).float(), -1)
        got = tiny_llava.lens("paper").logits(trace.hidden_states[:, step : step + 1])[:, 0]
        assert torch.allclose(torch.log_softmax(got, -1), expected, atol=1e-5)
        # raw states 0..L-1 are what HF returns; the last HF state is the normed version of ours
        assert torch.allclose(hf[:-1], trace.hidden_states[:-1, step], atol=1e-6)
        norm = tiny_llava.loaded.roles.final_norm
        assert torch.allclose(hf[-1], norm(trace.hidden_states[-1, step]), atol=1e-6)


def test_modes_differ_only_below_the_last_layer(tiny_llava, image) -> None:
    states = tiny_llava.trace(image, "describe this image", max_new_tokens=3).hidden_states
    logit = tiny_llava.lens("logit").logits(states)
    paper = tiny_llava.lens("paper").logits(states)
    assert torch.allclose(logit[-1], paper[-1])
    assert not torch.allclose(logit[:-1], paper[:-1])


def test_check_lens_passes_and_catches_wrong_roles(tiny_llava, tiny_llava_dir, monkeypatch) -> None:
    assert tiny_llava.check_lens() < 1e-4
    real_load = evolens.api.load_model

    def broken(*args, **kwargs):
        loaded = real_load(*args, **kwargs)
        loaded.roles = dataclasses.replace(loaded.roles, final_norm=nn.Identity())
        return loaded

    monkeypatch.setattr(evolens.api, "load_model", broken)
    with pytest.raises(AdapterError, match="does not reproduce"):
        evolens.load(tiny_llava_dir, device="cpu")
    assert evolens.load(tiny_llava_dir, device="cpu", verify=False).check_lens() > 1e-3


def test_unknown_lens_mode() -> None:
    with pytest.raises(SettingsError, match="unknown lens"):
        check_lens_mode("tuned")


def test_lens_casts_states_to_the_head_dtype() -> None:
    norm, head = nn.LayerNorm(8), nn.Linear(8, 5)
    from evolens.models.roles import LogitTransform

    lens = LogitLens(norm, head, LogitTransform(), 2)
    out = lens.logits(torch.randn(3, 4, 8, dtype=torch.float64))
    assert out.dtype == torch.float32 and out.shape == (3, 4, 5)
