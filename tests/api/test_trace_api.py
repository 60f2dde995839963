"""The README's Python API on a tiny saved checkpoint."""

from __future__ import annotations

import pytest
import torch

import evolens
from evolens.errors import LensUnavailableError, SettingsError


@pytest.fixture(scope="module")
def trace(tiny_llava):
    from tests.conftest import make_image

    return tiny_llava.trace(
        image=make_image(0), prompt="Please describe this image in detail.", max_new_tokens=8
    )


def test_readme_shapes(trace, tiny_llava) -> None:
    L, T = tiny_llava.n_layers, trace.n_steps
    assert isinstance(trace.text, str) and len(trace.tokens) == T
    assert trace.token_probs().shape == (L + 1, T)
    assert trace.jsd().shape == (L, T)
    assert trace.jsd(reduction="paper").shape == (L, T)
    assert trace.entropy().shape == (L + 1, T)
    assert trace.kl_to_last().shape == (L + 1, T)
    assert torch.allclose(trace.kl_to_last()[-1], torch.zeros(T))
    top = trace.topk(5)
    assert top.ids.shape == top.probs.shape == (L + 1, T, 5)
    assert len(top.tokens(L, 0)) == 5
    assert trace.hidden_states.shape == (L + 1, T, 32)
    assert bool((trace.jsd() >= 0).all() and (trace.jsd() <= 1).all())


def test_tokens_concatenate_to_the_decoded_text(trace, tiny_llava) -> None:
    assert "".join(trace.tokens) == tiny_llava.tokenizer.decode(
        trace.generated_ids.tolist(), skip_special_tokens=False
    )


def test_generated_token_is_top1_at_the_last_layer_under_greedy(trace) -> None:
    assert torch.equal(trace.topk(1).ids[-1, :, 0], trace.generated_ids)
    assert bool((trace.token_ranks()[-1] == 1).all())


def test_tracked_tokens_and_recomputation_agree(tiny_llava, trace) -> None:
    from tests.conftest import make_image

    tracked = tiny_llava.trace(
        make_image(0), "Please describe this image in detail.", max_new_tokens=8, track=["red", "blue"]
    )
    ids = tiny_llava.token_ids(["red", "blue"])
    assert tracked.metrics.tracked_ids.tolist() == ids
    from_store = tracked.token_probs(ids)
    lensed = tiny_llava.attach(trace)
    recomputed = lensed.token_probs(ids)  # not tracked there: computed again through the lens
    assert from_store.shape == (tiny_llava.n_layers + 1, tracked.n_steps, 2)
    assert torch.allclose(from_store, recomputed, atol=1e-6)
    assert torch.equal(tracked.token_ranks(ids), lensed.token_ranks(ids))
    assert torch.equal(tiny_llava.attach(tracked).token_probs(ids), from_store)  # tracked ids: as stored


def test_paper_lens_two_ways(tiny_llava, trace) -> None:
    from tests.conftest import make_image

    direct = tiny_llava.trace(
        make_image(0), "Please describe this image in detail.", max_new_tokens=8, lens="paper"
    )
    switched = tiny_llava.attach(trace).with_lens("paper").trace
    assert direct.lens_mode == switched.lens_mode == "paper"
    assert torch.allclose(direct.jsd(), switched.jsd(), atol=1e-6)
    assert torch.allclose(direct.token_probs(), switched.token_probs(), atol=1e-6)
    assert torch.allclose(direct.token_probs()[-1], trace.token_probs()[-1], atol=1e-6)
    assert not torch.allclose(direct.token_probs()[:-1], trace.token_probs()[:-1])


def test_candidates(trace) -> None:
    cands = trace.candidates(step=1, from_layer=2)
    assert cands.ids[0] == trace.generated_ids[1]
    assert cands.probs.shape == (trace.n_layers + 1, len(cands.ids))
    assert torch.allclose(cands.probs[:, 0], trace.token_probs()[:, 1])
    for token in trace.metrics.topk_ids[2:, 1, 0].tolist():
        assert token in cands.ids.tolist()
    with pytest.raises(SettingsError, match="from_layer"):
        trace.candidates(0, from_layer=99)
    with pytest.raises(SettingsError, match="step"):
        trace.candidates(trace.n_steps)


def test_full_logits_only_on_request(trace, tiny_llava) -> None:
    logits = tiny_llava.attach(trace).logits()
    assert logits.shape == (trace.n_layers + 1, trace.n_steps, trace.metrics.vocab_size)
    probs = torch.softmax(logits, -1).gather(
        -1, trace.generated_ids.view(1, -1, 1).expand(logits.shape[0], -1, 1)
    )[..., 0]
    assert torch.allclose(probs, trace.token_probs(), atol=1e-6)


def test_loaded_trace_needs_the_lens_for_new_token_ids(trace, tiny_llava, tmp_path) -> None:
    loaded = evolens.Trace.load(trace.save(tmp_path / "t"))
    with pytest.raises(LensUnavailableError, match="attach"):
        loaded.token_probs([5])
    with pytest.raises(LensUnavailableError, match="attach"):
        trace.token_probs([5])  # a fresh trace is plain data too
    lensed = tiny_llava.attach(loaded)
    assert lensed.trace is loaded and torch.allclose(
        lensed.token_probs([5]), tiny_llava.attach(trace).token_probs([5])
    )
    assert torch.equal(lensed.logits(slice(1, 3)), tiny_llava.attach(trace).logits()[:, 1:3])


def test_hidden_states_can_be_dropped(tiny_llava, image) -> None:
    light = tiny_llava.trace(image, "describe this image", max_new_tokens=3, keep_hidden_states=False)
    assert light.hidden_states is None
    with pytest.raises(LensUnavailableError, match="hidden states"):
        tiny_llava.attach(light).logits()


def test_topk_bounds(trace) -> None:
    with pytest.raises(SettingsError, match="k must be"):
        trace.topk(11)
    with pytest.raises(SettingsError, match="reduction"):
        trace.jsd(reduction="nats")  # type: ignore[arg-type]


def test_topk_kept_must_be_positive(tiny_llava, image) -> None:
    for bad in (0, -1, 2.5, True):
        with pytest.raises(SettingsError, match="topk must be a positive integer"):
            tiny_llava.trace(image, "describe this image", max_new_tokens=2, topk=bad)  # type: ignore[arg-type]


def test_raw_prompt_and_system_prompt(tiny_llava, image) -> None:
    raw = tiny_llava.trace(
        image, "USER: <image> describe this image ASSISTANT:", raw_prompt=True, max_new_tokens=3
    )
    templated = tiny_llava.trace(image, "describe this image", max_new_tokens=3)
    assert torch.equal(raw.prompt_ids, templated.prompt_ids)
    with_system = tiny_llava.render_prompt("describe this image", system="a helpful system")
    assert with_system.startswith("a helpful system")


def test_item_ids_and_image_info(tiny_llava, image_file) -> None:
    traces = tiny_llava.trace(
        images=[image_file, None], prompts="describe this image", max_new_tokens=2, item_ids=["a", "b"]
    )
    assert [t.item_id for t in traces] == ["a", "b"]
    assert traces[0].image is not None and traces[0].image.source == str(image_file)
    assert len(traces[0].image.sha256) == 64
    assert traces[1].image is None and traces[1].image_token_positions.numel() == 0


def test_vocab_strings_decode_each_id_once_per_cache(tiny_llava) -> None:
    from evolens.trace import vocab_strings

    tokenizer = tiny_llava.tokenizer
    ids = [5, 3, 9, 3]
    expected = {i: tokenizer.decode([i], skip_special_tokens=False) for i in (3, 5, 9)}
    cache: dict[int, str] = {}
    assert vocab_strings(tokenizer, ids, cache) == expected
    cache[9] = "cached"  # a cached string is read, not decoded again
    assert vocab_strings(tokenizer, [9, 4], cache) == {9: "cached", 4: tokenizer.decode([4])}
    assert vocab_strings(tokenizer, ids) == expected


def test_traces_of_one_model_share_its_decoded_vocabulary(tiny_llava, image) -> None:
    a = tiny_llava.trace(image, "describe this image", max_new_tokens=3)
    b = tiny_llava.trace(image, "what color is the circle ?", max_new_tokens=3)
    for trace in (a, b):
        assert set(trace.vocab) <= set(tiny_llava._vocab)
        assert all(trace.vocab[i] == tiny_llava.tokenizer.decode([i]) for i in trace.vocab)


def test_analysis_during_generation_gives_the_same_traces(tiny_llava, monkeypatch) -> None:
    """The GPU path (metrics reduced on a side stream as steps arrive) forced on the CPU."""
    from tests.conftest import make_image

    images = [make_image(1), make_image(2), None]
    prompts = ["describe this image", "what color is the circle ?", "what is a cat ?"]
    args = {"max_new_tokens": 7, "track": [3], "batch_size": 2, "topk": 4}
    after = tiny_llava.trace(images=images, prompts=prompts, **args)
    monkeypatch.setattr("evolens.api.batch.analyse_during_generation", lambda model, lens: True)
    monkeypatch.setattr("evolens.api.batch.STREAM_ROWS", 6)  # several additions per batch
    during = tiny_llava.trace(images=images, prompts=prompts, **args)
    for a, b in zip(after, during, strict=True):
        assert torch.equal(a.generated_ids, b.generated_ids) and a.tokens == b.tokens
        for name, value in a.metrics.tensors().items():
            other = getattr(b.metrics, name)
            assert value.shape == other.shape, name
            assert torch.allclose(value.float(), other.float(), atol=1e-5), name
        assert torch.equal(a.hidden_states, b.hidden_states)


def test_analysis_follows_generation_only_on_one_cuda_device(tiny_llava) -> None:
    from evolens.api import analyse_during_generation

    assert not analyse_during_generation(tiny_llava.model, tiny_llava.lens())


def test_words_outside_the_vocabulary_are_named_in_a_warning(tiny_llava, image, caplog) -> None:
    import logging

    with caplog.at_level(logging.WARNING, logger="evolens.api"):
        tiny_llava.trace(image, "describe this image", max_new_tokens=1)
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="evolens.api"):
        tiny_llava.trace(images=[image, image], prompts=["describe xyzzy", "plugh xyzzy"], max_new_tokens=1)
    (record,) = caplog.records
    assert "2 word(s) of the prompt are not in the model's vocabulary" in record.getMessage()
    assert "'xyzzy', 'plugh'" in record.getMessage()
