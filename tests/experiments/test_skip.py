from __future__ import annotations

import json
import re

import pytest
import torch
from torch import nn

from evolens.analysis import Annotations, count_hallucinations
from evolens.api import TraceOptions
from evolens.capture.generate import eos_token_ids
from evolens.errors import PromptError, SettingsError
from evolens.experiments.rebuild import REBUILD_BLOCKERS, rebuild_refusal, rebuilt_stack
from evolens.experiments.skip import (
    SkipReport,
    check_skip_layers,
    generate_skipped,
    identity_hooks,
    rebuild_unsupported,
    run_skip,
    skip_layers,
)
from evolens.testing import TINY_BUILDERS, build_tiny
from tests.experiments.conftest import load_family, make_image

FAMILIES = sorted(TINY_BUILDERS)
PROMPTS = ("describe the image", "what color is the heart on the left ?")
N_NEW = 6
NEW_TOKENS = TraceOptions.from_flat(max_new_tokens=N_NEW)  # the options of every generation here
pytestmark = pytest.mark.usefixtures("one_thread")


def _items(lvlm, n: int = 1):
    images = [make_image(i) for i in range(n)] if lvlm.is_vlm else [None] * n
    return images, list(PROMPTS[:n])


def _greedy_no_cache(lvlm, image, prompt: str, skip: tuple[int, ...], n_new: int) -> list[int]:
    """Reference: greedy decoding by full forward passes over the whole sequence without a KV cache, the skipped
    layers' outputs replaced by their inputs.

    Nothing of generate() runs but the family's own rule for growing per-position inputs by one generated token
    (``_update_model_kwargs_for_generation``: the attention mask, token_type_ids — a generated token is in
    PaliGemma's causal suffix —, mm_token_type_ids, Mllama's cross-attention mask). Everything else (pixels, image
    grids and sizes) goes in unchanged at every step, and the model computes positions from the full sequence, as
    it does without a cache (Qwen's M-RoPE from the image grids included).
    """
    rendered = lvlm.render_prompt(prompt, image=image is not None)
    model_kwargs = dict(lvlm.encode([rendered], [image] if image is not None else None))
    ids = model_kwargs.pop("input_ids")
    model = lvlm.model
    suppress = list(lvlm.loaded.roles.suppressed_token_ids)
    eos = set(eos_token_ids(model, lvlm.tokenizer))
    out: list[int] = []
    with identity_hooks(lvlm.loaded.roles.decoder_layers, skip), torch.inference_mode():
        for _ in range(n_new):
            output = model(input_ids=ids, use_cache=False, **model_kwargs)
            logits = output.logits[:, -1].float()
            if suppress:
                logits[:, suppress] = float("-inf")
            token = int(logits.argmax(-1))
            out.append(token)
            if token in eos:
                break
            ids = torch.cat([ids, torch.tensor([[token]])], 1)
            model_kwargs = model._update_model_kwargs_for_generation(
                output, model_kwargs, is_encoder_decoder=False
            )
            model_kwargs.pop("past_key_values", None)
    return out


def _without_eos(tokens: list[int], lvlm) -> list[int]:
    eos = set(eos_token_ids(lvlm.model, lvlm.tokenizer))
    return tokens[:-1] if tokens and tokens[-1] in eos else tokens


def _rebuildable(lvlm, candidates) -> tuple[int, ...] | None:
    """The first skip set the rebuild supports on this model, or None."""
    return next((s for s in candidates if rebuild_unsupported(lvlm, s) is None), None)


@pytest.mark.parametrize("family", FAMILIES)
def test_skipping_nothing_reproduces_the_trace(family: str, tiny_models) -> None:
    lvlm = load_family(family, tiny_models)
    images, prompts = _items(lvlm, 2)
    traces = lvlm.trace(
        images=images,
        prompts=prompts,
        options=NEW_TOKENS,
        keep_hidden_states=False,
    )
    for method in ("hook", "rebuild"):
        gens = generate_skipped(lvlm, images, prompts, (), method=method, options=NEW_TOKENS)
        for trace, gen in zip(traces, gens, strict=True):
            assert gen.token_ids == _without_eos(trace.generated_ids.tolist(), lvlm)
            assert gen.text == trace.text and gen.stop_reason == trace.stop_reason
    with skip_layers(lvlm, []) as skip:
        assert skip == ()
        again = lvlm.trace(images[0], prompts[0], options=NEW_TOKENS)
    assert torch.equal(again.generated_ids, traces[0].generated_ids)


@pytest.mark.parametrize("family", FAMILIES)
def test_skipped_layer_state_equals_its_input(family: str, tiny_models) -> None:
    """Skipping layer l makes state l equal state l - 1, and only there.

    Some layers leave the stream unchanged in the baseline already (Mllama's cross-attention layers: their tanh
    gates start at zero, and without an image they do not run): "only there" is checked on the layers that change
    the stream in the baseline, and the skipped layers are chosen among those, so every check can fail.
    """
    lvlm = load_family(family, tiny_models)
    images, prompts = _items(lvlm)
    n_layers = lvlm.n_layers
    baseline = lvlm.trace(images[0], prompts[0], max_new_tokens=3).hidden_states
    assert baseline is not None
    active = [k for k in range(1, n_layers + 1) if not torch.equal(baseline[k], baseline[k - 1])]
    assert len(active) >= 2, f"{family}: layers {active} change the stream; the test needs two"
    for layer in sorted({active[0], active[-2], active[-1]}):
        with skip_layers(lvlm, [layer]):
            trace = lvlm.trace(images[0], prompts[0], max_new_tokens=3)
        states = trace.hidden_states
        assert states is not None
        assert torch.equal(states[layer], states[layer - 1])  # layer l skipped: state l == state l - 1
        assert all(not torch.equal(states[k], states[k - 1]) for k in active if k != layer)
    # the hooks are gone
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in lvlm.loaded.roles.decoder_layers)


@pytest.mark.parametrize("family", FAMILIES)
def test_cached_generation_matches_no_cache_reference(family: str, tiny_models) -> None:
    """Both methods, on a left-padded batch with the KV cache, generate what full no-cache passes generate; where
    the rebuild cannot reproduce the model it refuses with the reason instead."""
    lvlm = load_family(family, tiny_models)
    images, prompts = _items(lvlm, 2)
    rebuilt = 0
    for skip in [(1,), (2, 3), (lvlm.n_layers,)]:
        references = [
            _without_eos(_greedy_no_cache(lvlm, image, prompt, skip, N_NEW), lvlm)
            for image, prompt in zip(images, prompts, strict=True)
        ]
        hooked = generate_skipped(lvlm, images, prompts, skip, method="hook", options=NEW_TOKENS)
        assert [g.token_ids for g in hooked] == references, (family, "hook", skip)
        reason = rebuild_unsupported(lvlm, skip)
        if reason is not None:
            with pytest.raises(SettingsError, match=re.escape(reason)):
                generate_skipped(
                    lvlm,
                    images,
                    prompts,
                    skip,
                    method="rebuild",
                    options=NEW_TOKENS,
                )
            continue
        gens = generate_skipped(
            lvlm,
            images,
            prompts,
            skip,
            method="rebuild",
            options=NEW_TOKENS,
        )
        assert [g.token_ids for g in gens] == references, (family, "rebuild", skip)
        rebuilt += 1
    # the rebuild runs somewhere on every family but Gemma 4 (per-layer embeddings in every layer)
    assert rebuilt >= 1 or rebuild_unsupported(lvlm, (lvlm.n_layers,)) is not None


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", ["hook", "rebuild"])
def test_padded_batches_equal_single_items(family: str, method: str, tiny_models) -> None:
    lvlm = load_family(family, tiny_models)
    images, prompts = _items(lvlm, 2)
    n = lvlm.n_layers
    skip = (2,) if method == "hook" else _rebuildable(lvlm, [(2,), (n - 1,), (n,)])
    if skip is None:
        with pytest.raises(SettingsError, match="cannot skip"):
            generate_skipped(
                lvlm,
                images,
                prompts,
                (2,),
                method=method,
                options=NEW_TOKENS,
            )
        return
    batch = generate_skipped(lvlm, images, prompts, skip, method=method, options=NEW_TOKENS)
    singles = [
        generate_skipped(lvlm, [i], [p], skip, method=method, options=NEW_TOKENS)[0]
        for i, p in zip(images, prompts, strict=True)
    ]
    assert batch == singles


@pytest.mark.parametrize("family", FAMILIES)
def test_rebuilt_stack_restores_everything(family: str, tiny_models) -> None:
    lvlm = load_family(family, tiny_models)
    layers = lvlm.loaded.roles.decoder_layers
    model = lvlm.model
    text = model.config.get_text_config()
    owner = next(m for m in model.modules() for c in m.children() if c is layers)

    def snapshot():
        idx = [
            (id(sub), sub.layer_idx)
            for sub in layers.modules()
            if isinstance(getattr(sub, "layer_idx", None), int)
        ]
        lists = [list(getattr(o, "cross_attention_layers", None) or []) for o in (text, owner)]
        return idx, text.num_hidden_layers, list(getattr(text, "layer_types", None) or []), lists

    before = snapshot()
    n = len(layers)
    skip = _rebuildable(lvlm, [(1, 3), (2, 3), (n - 1, n)])
    if skip is None:  # refused before anything changes
        with pytest.raises(SettingsError, match="cannot skip"), rebuilt_stack(model, layers, (1, 3)):
            pass
    else:
        with pytest.raises(RuntimeError, match="boom"), rebuilt_stack(model, layers, skip) as shorter:
            kept = [layer for i, layer in enumerate(layers) if i + 1 not in skip]
            assert list(shorter) == kept and any(c is shorter for c in owner.children())
            assert text.num_hidden_layers == len(kept)
            for new_idx, layer in enumerate(
                shorter
            ):  # every cache index inside a kept layer is its new position
                found = {
                    sub.layer_idx
                    for sub in layer.modules()
                    if isinstance(getattr(sub, "layer_idx", None), int)
                }
                assert found == {new_idx}
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


# family -> (skip sets refused, skip sets rebuilt, words of the reason); the tiny models have 4 layers
REFUSALS = {
    "gemma4": ([(1,), (4,), (2, 3)], [], "per-layer embeddings"),
    "qwen3_vl": ([(1,), (2,), (2, 3)], [(3,), (3, 4)], "DeepStack adds visual features to the outputs of decoder layers 1..2"),
    "qwen3_vl_moe": ([(1,), (2, 4)], [(4,)], "DeepStack"),
    "qwen3_5": ([(4,), (2, 4)], [(1,), (1, 2, 3)], "none of the kept layers would be an attention layer"),
    "mllama": ([(1,), (1, 3)], [(2,), (3,), (2, 3), (4,)], "the first kept layer would be a cross-attention layer"),
}  # fmt: skip


@pytest.mark.parametrize("family", sorted(REFUSALS))
def test_rebuild_refuses_what_it_cannot_reproduce(family: str, tiny_models) -> None:
    """The features that tie something to a layer's position in the list are read from the config; the rebuild is
    refused exactly for the skip sets they affect, with the reason, and the hook method still works there."""
    lvlm = load_family(family, tiny_models)
    refused, rebuilt, words = REFUSALS[family]
    for skip in refused:
        reason = rebuild_unsupported(lvlm, skip)
        assert reason is not None and words in reason
        with pytest.raises(SettingsError, match=re.escape(words)), skip_layers(lvlm, skip, method="rebuild"):
            pass
        with skip_layers(lvlm, skip, method="hook"):
            pass
    for skip in rebuilt:
        assert rebuild_unsupported(lvlm, skip) is None
        with skip_layers(lvlm, skip, method="rebuild"):  # verified against the hook method on the way in
            pass


def test_rebuild_refusals_are_data() -> None:
    """A family without a position-bound feature is refused nothing; a Gemma 4 decoder without per-layer embeddings
    is still refused, for its KV sharing and its per-position head sizes."""
    assert {b.attr for b in REBUILD_BLOCKERS} >= {"hidden_size_per_layer_input", "deepstack_visual_indexes"}
    model, _ = build_tiny("llava")
    layers = model.model.language_model.layers
    assert all(rebuild_refusal(model, layers, skip) is None for skip in [(1,), (4,), (1, 2, 3)])
    # Gemma 4 without per-layer embeddings: still bound to positions by its KV sharing and per-layer head sizes
    from transformers import Gemma4ForCausalLM, Gemma4TextConfig

    config = Gemma4TextConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, global_head_dim=8,
                              hidden_size_per_layer_input=0, num_kv_shared_layers=2, sliding_window=8,
                              layer_types=["sliding_attention", "full_attention"] * 2)  # fmt: skip
    gemma4 = Gemma4ForCausalLM(config)
    reason = rebuild_refusal(gemma4, gemma4.model.layers, (1,))
    assert reason is not None and "per-layer embeddings" not in reason
    assert "last 2 layers reuse the KV cache" in reason and "heterogeneous" in reason


def test_rebuild_renumbers_cross_attention_layers(tiny_models) -> None:
    """Mllama runs a cross-attention layer only when its *position* is listed in ``cross_attention_layers``; the
    rebuild renumbers that list (in the config and on the decoder), so a text-only prompt matches the reference."""
    lvlm = load_family("mllama", tiny_models)
    decoder = lvlm.model.model.language_model
    assert decoder.cross_attention_layers == [1, 3]
    skip = (3,)  # kept: 0, 1 (cross), 3 (cross) -> positions 0, 1, 2
    with rebuilt_stack(lvlm.model, lvlm.loaded.roles.decoder_layers, skip):
        assert decoder.cross_attention_layers == [1, 2] == decoder.config.cross_attention_layers
    assert decoder.cross_attention_layers == [1, 3] == decoder.config.cross_attention_layers
    gens = generate_skipped(
        lvlm,
        [None, None],
        list(PROMPTS),
        skip,
        method="rebuild",
        options=NEW_TOKENS,
    )
    for prompt, gen in zip(PROMPTS, gens, strict=True):
        assert gen.token_ids == _without_eos(_greedy_no_cache(lvlm, None, prompt, skip, N_NEW), lvlm)


def test_rebuild_leaves_other_towers_alone() -> None:
    """A vision tower with as many layers as the decoder keeps its config (only the decoder's is renumbered)."""
    model, _ = build_tiny("llava", n_layers=2)
    vision, text = model.config.vision_config, model.config.text_config
    assert vision.num_hidden_layers == text.num_hidden_layers == 2
    with rebuilt_stack(model, model.model.language_model.layers, (1,)):
        assert text.num_hidden_layers == 1 and vision.num_hidden_layers == 2
    assert text.num_hidden_layers == 2


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
        run_skip(
            lvlm,
            None,
            "describe the image",
            critical=3,
            mutation=[2],
            options=TraceOptions.from_flat(max_new_tokens=2),
        )
    with pytest.raises(SettingsError, match="critical layer must be"):
        run_skip(
            lvlm, None, "describe the image", critical=n, options=TraceOptions.from_flat(max_new_tokens=2)
        )
    with pytest.raises(SettingsError, match="unknown skip preset"):
        run_skip(
            lvlm,
            None,
            "describe the image",
            presets=["skip9"],
            options=TraceOptions.from_flat(max_new_tokens=2),
        )
    with pytest.raises(SettingsError, match="unique"):
        run_skip(
            lvlm,
            None,
            "describe the image",
            layers={"skip1": [1]},
            options=TraceOptions.from_flat(max_new_tokens=2),
        )
    with pytest.raises(SettingsError, match="every one"):
        run_skip(lvlm, None, "describe the image", presets=(), layers={"all": list(range(1, n + 1))})
    with pytest.raises(SettingsError, match="unknown trace option"):
        run_skip(lvlm, None, "describe the image", options=TraceOptions.from_flat(max_new_token=2))
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
        options=NEW_TOKENS,
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
        gen = generate_skipped(lvlm, images[0], prompts[0], v.skipped, options=NEW_TOKENS)[0]
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


def test_run_skip_presets_from_detection(tiny_models, monkeypatch) -> None:
    """Without critical/mutation, each item's presets come from its own detected layers: item_layers() of the
    analysis of its original trace, then skip_presets(). Checked on what the tiny model's flat profile gives
    (usually nothing to skip: the original is reused), and with a detection that finds layers."""
    import evolens.experiments.skip.plans as plans_module
    from evolens.analysis import analyze_trace, item_layers, skip_presets
    from evolens.analysis.layers import ItemLayers

    lvlm = tiny_models("llama")
    n = lvlm.n_layers
    report = run_skip(lvlm, None, "describe the image", options=NEW_TOKENS)
    result = report.results[0]
    trace = lvlm.trace(
        None,
        "describe the image",
        options=NEW_TOKENS,
        keep_hidden_states=False,
    )
    assert result.layers == item_layers(analyze_trace(trace))
    assert result.layers is not None and result.layers.source == "detected"
    plan = skip_presets(result.layers)
    for v in result.variants[1:]:
        assert v.skipped == plan[v.name] and v.ran == bool(plan[v.name])
        if not v.ran:
            assert v.token_ids == result.variant("original").token_ids and v.similarity == 1.0

    # A detection with layers (critical 1, mutation 3 of 4) gives the paper's three skip sets, each generated.
    found = ItemLayers(n, 1, (3,))
    monkeypatch.setattr(plans_module, "item_layers", lambda analysis, min_fraction: found)
    result = run_skip(lvlm, None, "describe the image", options=NEW_TOKENS).results[0]
    assert result.layers == found
    assert {v.name: v.skipped for v in result.variants[1:]} == {"skip1": (2,), "skip2": (3,), "skip3": (2, 3)}
    for v in result.variants[1:]:
        assert v.ran
        assert (
            v.token_ids
            == generate_skipped(
                lvlm,
                None,
                "describe the image",
                v.skipped,
                options=NEW_TOKENS,
            )[0].token_ids
        )
