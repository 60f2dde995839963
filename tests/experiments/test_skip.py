from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from evolens.analysis import Annotations, count_hallucinations
from evolens.capture.generate import eos_token_ids
from evolens.errors import PromptError, SettingsError
from evolens.experiments.skip import (
    SkipReport,
    check_skip_layers,
    generate_skipped,
    identity_hooks,
    rebuilt_stack,
    run_skip,
    skip_layers,
)
from evolens.testing import TINY_BUILDERS
from tests.experiments.conftest import make_image

FAMILIES = sorted(TINY_BUILDERS)
PROMPTS = ("describe the image", "what color is the heart on the left ?")
N_NEW = 6


def _items(lvlm, n: int = 1):
    images = [make_image(i) for i in range(n)] if lvlm.is_vlm else [None] * n
    return images, list(PROMPTS[:n])


def _greedy_no_cache(lvlm, image, prompt: str, skip: tuple[int, ...], n_new: int) -> list[int]:
    """Reference: full forward passes without a KV cache, arg-max, the skipped layers' outputs replaced by inputs."""
    rendered = lvlm.render_prompt(prompt, image=image is not None)
    inputs = dict(lvlm.encode([rendered], [image] if image is not None else None))
    ids, mask = inputs.pop("input_ids"), inputs.pop("attention_mask")
    suppress = list(lvlm.loaded.roles.suppressed_token_ids)
    eos = set(eos_token_ids(lvlm.model, lvlm.tokenizer))
    out: list[int] = []
    with identity_hooks(lvlm.loaded.roles.decoder_layers, skip), torch.inference_mode():
        for _ in range(n_new):
            # per-position inputs (token_type_ids...) grow by repeating their last column, as generate() does
            extra = {
                k: torch.cat([v, v[:, -1:].expand(v.shape[0], ids.shape[1] - v.shape[1])], 1)
                if isinstance(v, torch.Tensor) and v.dim() == 2 and v.shape[1] < ids.shape[1]
                else v
                for k, v in inputs.items()
            }
            logits = (
                lvlm.model(input_ids=ids, attention_mask=mask, use_cache=False, **extra).logits[:, -1].float()
            )
            if suppress:
                logits[:, suppress] = float("-inf")
            token = int(logits.argmax(-1))
            out.append(token)
            if token in eos:
                break
            ids = torch.cat([ids, torch.tensor([[token]])], 1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
    return out


def _without_eos(tokens: list[int], lvlm) -> list[int]:
    eos = set(eos_token_ids(lvlm.model, lvlm.tokenizer))
    return tokens[:-1] if tokens and tokens[-1] in eos else tokens


@pytest.mark.parametrize("family", FAMILIES)
def test_skipping_nothing_reproduces_the_trace(family: str, tiny_models) -> None:
    lvlm = tiny_models(family)
    images, prompts = _items(lvlm, 2)
    traces = lvlm.trace(images=images, prompts=prompts, max_new_tokens=N_NEW, keep_hidden_states=False)
    for method in ("hook", "rebuild"):
        gens = generate_skipped(lvlm, images, prompts, (), method=method, max_new_tokens=N_NEW)
        for trace, gen in zip(traces, gens, strict=True):
            assert gen.token_ids == _without_eos(trace.generated_ids.tolist(), lvlm)
            assert gen.text == trace.text and gen.stop_reason == trace.stop_reason
    with skip_layers(lvlm, []) as skip:
        assert skip == ()
        again = lvlm.trace(images[0], prompts[0], max_new_tokens=N_NEW)
    assert torch.equal(again.generated_ids, traces[0].generated_ids)


@pytest.mark.parametrize("family", FAMILIES)
def test_skipped_layer_state_equals_its_input(family: str, tiny_models) -> None:
    lvlm = tiny_models(family)
    images, prompts = _items(lvlm)
    n_layers = lvlm.n_layers
    for layer in (1, n_layers - 1, n_layers):
        with skip_layers(lvlm, [layer]):
            trace = lvlm.trace(images[0], prompts[0], max_new_tokens=3)
        states = trace.hidden_states
        assert states is not None
        assert torch.equal(states[layer], states[layer - 1])  # layer l skipped: state l == state l - 1
        others = [k for k in range(1, n_layers + 1) if k != layer]
        assert all(not torch.equal(states[k], states[k - 1]) for k in others)
    # the hooks are gone
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in lvlm.loaded.roles.decoder_layers)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", ["hook", "rebuild"])
def test_cached_generation_matches_no_cache_reference(family: str, method: str, tiny_models) -> None:
    lvlm = tiny_models(family)
    images, prompts = _items(lvlm, 2)
    for skip in [(1,), (2, 3), (lvlm.n_layers,)]:
        gens = generate_skipped(
            lvlm, images, prompts, skip, method=method, max_new_tokens=N_NEW
        )  # padded batch
        for image, prompt, gen in zip(images, prompts, gens, strict=True):
            reference = _greedy_no_cache(lvlm, image, prompt, skip, N_NEW)
            assert gen.token_ids == _without_eos(reference, lvlm), (family, method, skip)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", ["hook", "rebuild"])
def test_padded_batches_equal_single_items(family: str, method: str, tiny_models) -> None:
    lvlm = tiny_models(family)
    images, prompts = _items(lvlm, 2)
    batch = generate_skipped(lvlm, images, prompts, (2,), method=method, max_new_tokens=N_NEW)
    singles = [
        generate_skipped(lvlm, [i], [p], (2,), method=method, max_new_tokens=N_NEW)[0]
        for i, p in zip(images, prompts, strict=True)
    ]
    assert batch == singles


@pytest.mark.parametrize("family", FAMILIES)
def test_rebuilt_stack_restores_everything(family: str, tiny_models) -> None:
    lvlm = tiny_models(family)
    layers = lvlm.loaded.roles.decoder_layers
    model = lvlm.model

    def snapshot():
        idx = [
            (id(sub), sub.layer_idx)
            for layer in layers
            for sub in layer.modules()
            if isinstance(getattr(sub, "layer_idx", None), int)
        ]
        text = model.config.get_text_config()
        return idx, text.num_hidden_layers, list(getattr(text, "layer_types", None) or [])

    before = snapshot()
    owner = next(m for m in model.modules() for c in m.children() if c is layers)
    with pytest.raises(RuntimeError, match="boom"), rebuilt_stack(model, layers, (1, 3)) as shorter:
        assert len(shorter) == len(layers) - 2
        assert model.config.get_text_config().num_hidden_layers == len(layers) - 2
        renumbered = [getattr(m.self_attn, "layer_idx", None) for m in shorter if hasattr(m, "self_attn")]
        assert renumbered in (list(range(len(shorter))), [])
        raise RuntimeError("boom")
    assert snapshot() == before
    assert any(c is layers for c in owner.children())


def _hf_model(kind: str):
    from transformers import Gemma2Config, Gemma2ForCausalLM, Qwen2Config, Qwen2ForCausalLM

    types = ["sliding_attention", "full_attention"] * 2
    common = dict(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, sliding_window=3, layer_types=types, max_position_embeddings=64)  # fmt: skip
    if kind == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(use_sliding_window=True, **common)).eval()
    return Gemma2ForCausalLM(Gemma2Config(head_dim=8, **common)).eval()


@pytest.mark.parametrize("kind", ["qwen2", "gemma2"])
def test_per_layer_attention_types_survive_the_rebuild(kind: str) -> None:
    """Families whose layers alternate sliding-window and full attention pick each layer's mask by its position in
    the list: replacing the list naively breaks them; the rebuild (renumbered cache slots and ``layer_types``) and
    the hook both match a no-cache reference."""
    model = _hf_model(kind)
    layers = model.model.layers
    ids = torch.randint(5, 90, (1, 12))  # longer than the sliding window

    def generate(cache: bool):
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=5, do_sample=False,
                             use_cache=cache, output_logits=True, return_dict_in_generate=True, pad_token_id=0,
                             eos_token_id=None)  # fmt: skip
        return torch.stack(out.logits)

    skip = (2,)
    with identity_hooks(layers, skip):
        reference = generate(cache=False)
        hooked = generate(cache=True)
    with rebuilt_stack(model, layers, skip):
        rebuilt = generate(cache=True)
    torch.testing.assert_close(hooked, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rebuilt, reference, atol=1e-5, rtol=1e-5)
    model.model.layers = nn.ModuleList([layer for i, layer in enumerate(layers) if i + 1 not in skip])
    try:
        naive = generate(cache=True)
    except RuntimeError:  # mask built for the wrong attention type
        naive = None
    finally:
        model.model.layers = layers
    assert naive is None or not torch.allclose(naive, reference, atol=1e-3)


def test_bad_skip_settings(tiny_models) -> None:
    lvlm = tiny_models("llama")
    n = lvlm.n_layers
    assert check_skip_layers([3, 1, 3], n) == (1, 3)
    for bad, match in (
        ([0], "out of range"),
        ([n + 1], "out of range"),
        (list(range(1, n + 1)), "every one"),
        ([1.5], "integers"),
        ([True], "integers"),
    ):
        with pytest.raises(SettingsError, match=match):
            check_skip_layers(bad, n)
    with pytest.raises(SettingsError, match="unknown skip method"), skip_layers(lvlm, [1], method="fast"):  # type: ignore[arg-type]
        pass
    with pytest.raises(SettingsError, match="not before mutation"):
        run_skip(lvlm, None, "describe the image", critical=3, mutation=[2], max_new_tokens=2)
    with pytest.raises(SettingsError, match="critical layer must be"):
        run_skip(lvlm, None, "describe the image", critical=n, max_new_tokens=2)
    with pytest.raises(SettingsError, match="unknown skip preset"):
        run_skip(lvlm, None, "describe the image", presets=["skip9"], max_new_tokens=2)
    with pytest.raises(SettingsError, match="unique"):
        run_skip(lvlm, None, "describe the image", layers={"skip1": [1]}, max_new_tokens=2)
    with pytest.raises(SettingsError, match="every one"):
        run_skip(lvlm, None, "describe the image", presets=(), layers={"all": list(range(1, n + 1))})
    with pytest.raises(SettingsError, match="unknown option"):
        run_skip(lvlm, None, "describe the image", max_new_token=2)
    with pytest.raises(PromptError):
        run_skip(lvlm, [None, None], ["a", "b", "c"])


def test_run_skip_report(tiny_models, tmp_path) -> None:
    lvlm = tiny_models("llava")
    images, prompts = _items(lvlm, 2)
    ann = Annotations.of(ground_truth=["square", "moon"], hallucination=["cat", "dog", "star"])
    report = run_skip(
        lvlm,
        images,
        prompts,
        critical=1,
        mutation=[3],
        layers={"mid": [2]},
        annotations=ann,
        max_new_tokens=N_NEW,
        item_ids=["a", "b"],
    )
    assert [r.item_id for r in report.results] == ["a", "b"]
    first = report.results[0]
    assert [v.name for v in first.variants] == ["original", "skip1", "skip2", "skip3", "mid"]
    assert first.variant("skip1").skipped == (2,)  # state 1 goes straight into layer 3
    assert first.variant("skip2").skipped == (3,)
    assert first.variant("skip3").skipped == (2, 3)  # L = 4 keeps max(1, round(5/32*4)) = 1 layer
    # every variant is what generate_skipped gives for its skip set, compared with the original
    original = first.variant("original")
    for v in first.variants[1:]:
        gen = generate_skipped(lvlm, images[0], prompts[0], v.skipped, max_new_tokens=N_NEW)[0]
        assert v.token_ids == gen.token_ids and v.ran
        assert v.hallucination == count_hallucinations(v.text, ann, original=original.text)
        equal = sum(op.a_end - op.a_start for op in v.diff if op.tag == "equal")
        assert v.similarity == pytest.approx(2 * equal / (len(v.token_ids) + len(original.token_ids)))
    assert original.similarity == 1.0 and original.diff == []
    summary = {s.name: s for s in report.summary}
    assert summary["original"].n_items == 2 and summary["original"].mean_similarity == 1.0
    assert summary["mid"].n_hallucinated == sum(
        r.variant("mid").hallucination.n_hallucinated for r in report.results
    )
    json.dumps(report.to_dict(), allow_nan=False)
    loaded = SkipReport.load(report.save(tmp_path))
    assert loaded.to_dict() == report.to_dict()


def test_run_skip_presets_from_detection(tiny_models) -> None:
    """Tiny random models have flat profiles: no critical layer, so the presets have nothing to skip and reuse the
    original instead of generating again."""
    lvlm = tiny_models("llama")
    report = run_skip(lvlm, None, "describe the image", max_new_tokens=N_NEW)
    result = report.results[0]
    assert result.layers is not None and result.layers.source == "detected"
    if result.layers.critical_layer == -1:
        assert all(not v.ran and v.similarity == 1.0 for v in result.variants[1:])
