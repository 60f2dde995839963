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
    real_load = evolens.api.lvlm.load_model

    def broken(*args, **kwargs):
        loaded = real_load(*args, **kwargs)
        loaded.roles = dataclasses.replace(loaded.roles, final_norm=nn.Identity())
        return loaded

    monkeypatch.setattr(evolens.api.lvlm, "load_model", broken)
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


def _fast_mode_case() -> tuple[LogitLens, torch.Tensor, torch.Tensor]:
    from evolens.models.roles import LogitTransform

    g = torch.Generator().manual_seed(0)
    d, vocab, n_layers, n_steps = 512, 4000, 6, 5
    norm = nn.RMSNorm(d, eps=1e-6)
    head = nn.Linear(d, vocab, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.randn(vocab, d, generator=g) * 3 / d**0.5)  # logits of std ~3, as LLMs have
    # a residual stream that drifts from layer to layer, so adjacent distributions are close but not equal
    states = torch.cumsum(torch.randn(n_layers + 1, n_steps, d, generator=g), 0)
    targets = torch.randint(0, vocab, (n_steps,), generator=g)
    return LogitLens(norm, head, LogitTransform(), n_layers), states, targets


def test_fast_mode_bfloat16_matmul_stays_within_its_stated_error() -> None:
    from evolens.metrics import compute_layer_metrics

    lens, states, targets = _fast_mode_case()
    fast = lens.with_matmul_dtype(torch.bfloat16)
    assert fast.matmul_dtype == torch.bfloat16 and fast.with_mode("paper").matmul_dtype == torch.bfloat16
    exact_logits, fast_logits = lens.logits(states), fast.logits(states)
    assert fast_logits.dtype == torch.float32
    err = float((fast_logits - exact_logits).abs().max())
    # bfloat16 really ran, and within ~0.5% of the largest logit (bfloat16 rounds to 8 significant bits)
    assert 0 < err < 0.01 * float(exact_logits.abs().max())
    exact = compute_layer_metrics(states, lens, targets)
    approx = compute_layer_metrics(states, fast, targets)
    assert float((approx.jsd_bits - exact.jsd_bits).abs().max()) < 1e-2
    assert float((approx.target_logprobs - exact.target_logprobs).abs().max()) < 0.1
    assert float((approx.entropy_bits - exact.entropy_bits).abs().max()) < 0.1
    # the head's weight is converted once and reused, and refreshed after an in-place update
    first = fast._weights[torch.bfloat16][1]
    fast.logits(states)
    assert fast._weights[torch.bfloat16][1] is first
    with torch.no_grad():
        lens.lm_head.weight.mul_(2.0)
    assert torch.allclose(fast.logits(states), lens.logits(states), atol=0.2)


def test_fast_mode_needs_a_linear_head() -> None:
    from evolens.models.roles import LogitTransform

    with pytest.raises(SettingsError, match=r"nn\.Linear"):
        LogitLens(nn.LayerNorm(4), nn.Identity(), LogitTransform(), 1, matmul_dtype=torch.bfloat16)
    with pytest.raises(SettingsError, match="floating"):
        LogitLens(nn.LayerNorm(4), nn.Linear(4, 3), LogitTransform(), 1, matmul_dtype=torch.int8)
