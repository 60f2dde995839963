"""Recording the residual stream: hooks' lifetime, alignment with Hugging Face, batching, sampling, stopping."""

from __future__ import annotations

import pytest
import torch

from evolens.capture import GenerationSettings, generate_with_capture, record_residual_stream
from evolens.errors import CaptureError, SettingsError
from tests.conftest import make_image


def _n_hooks(layers) -> int:
    return sum(len(layer._forward_hooks) + len(layer._forward_pre_hooks) for layer in layers)


def test_hooks_are_removed_on_exit_and_on_error(tiny_llava) -> None:
    layers = tiny_llava.loaded.roles.decoder_layers
    before = _n_hooks(layers)
    with record_residual_stream(layers):
        assert _n_hooks(layers) == before + len(layers) + 1
    assert _n_hooks(layers) == before
    with pytest.raises(RuntimeError, match="boom"), record_residual_stream(layers):
        raise RuntimeError("boom")
    assert _n_hooks(layers) == before


def test_hooks_are_removed_when_generation_fails(tiny_llava, image, monkeypatch) -> None:
    layers = tiny_llava.loaded.roles.decoder_layers
    before = _n_hooks(layers)

    def fail(*args, **kwargs):
        raise RuntimeError("generation failed")

    monkeypatch.setattr(tiny_llava.model, "generate", fail)
    with pytest.raises(RuntimeError, match="generation failed"):
        tiny_llava.trace(image, "describe this image", max_new_tokens=2)
    assert _n_hooks(layers) == before


def test_states_match_hugging_face_hidden_states(tiny_llava, image) -> None:
    trace = tiny_llava.trace(image, "describe this image", max_new_tokens=5)
    inputs = tiny_llava.encode([trace.rendered_prompt], [image])
    with torch.inference_mode():
        ref = tiny_llava.model.generate(
            **inputs,
            max_new_tokens=5,
            do_sample=False,
            output_hidden_states=True,
            return_dict_in_generate=True,
            suppress_tokens=list(tiny_llava.loaded.roles.suppressed_token_ids),
        )
    norm = tiny_llava.loaded.roles.final_norm
    assert trace.hidden_states.shape == (tiny_llava.n_layers + 1, trace.n_steps, 32)
    for step in range(trace.n_steps):
        hf = torch.stack([h[0, -1] for h in ref.hidden_states[step]])
        assert torch.allclose(trace.hidden_states[:-1, step], hf[:-1], atol=1e-6)
        assert torch.allclose(norm(trace.hidden_states[-1, step]), hf[-1], atol=1e-6)


def test_prompt_positions_are_kept_on_request(tiny_llava, image) -> None:
    trace = tiny_llava.trace(image, "describe this image", max_new_tokens=3, prompt_positions=True)
    n_prompt = trace.prompt_ids.shape[0]
    assert trace.prompt_hidden_states is not None
    assert trace.prompt_hidden_states.shape == (tiny_llava.n_layers + 1, n_prompt, 32)
    # the last prompt position is the one that predicts the first generated token
    assert torch.allclose(trace.prompt_hidden_states[:, -1], trace.hidden_states[:, 0])
    assert trace.image_token_positions.numel() == 16
    image_id = tiny_llava.loaded.roles.image_token_id
    assert bool((trace.prompt_ids[trace.image_token_positions] == image_id).all())
    assert tiny_llava.trace(image, "describe this image", max_new_tokens=2).prompt_hidden_states is None


def test_batch_equals_one_at_a_time(tiny_llava) -> None:
    images = [make_image(3, (50, 30)), None, make_image(4, (20, 60))]
    prompts = [
        "describe this image",
        "what color is the circle ?",
        "what shape is on the left of the red square ?",
    ]
    batch = tiny_llava.trace(images=images, prompts=prompts, max_new_tokens=6, prompt_positions=True)
    for img, prompt, got in zip(images, prompts, batch, strict=True):
        alone = tiny_llava.trace(img, prompt, max_new_tokens=6, prompt_positions=True)
        assert torch.equal(got.generated_ids, alone.generated_ids)
        assert torch.equal(got.prompt_ids, alone.prompt_ids)
        assert torch.allclose(got.hidden_states, alone.hidden_states, atol=1e-5)
        assert torch.allclose(got.prompt_hidden_states, alone.prompt_hidden_states, atol=1e-5)
        assert torch.allclose(got.metrics.jsd_bits, alone.metrics.jsd_bits, atol=1e-5)
        assert got.text == alone.text and got.tokens == alone.tokens


def test_text_model_batch_equals_one_at_a_time(tiny_llama) -> None:
    prompts = ["what color is the sky ?", "describe the boy playing with a ball in the field"]
    batch = tiny_llama.trace(prompts=prompts, max_new_tokens=5, batch_size=2)
    for prompt, got in zip(prompts, batch, strict=True):
        alone = tiny_llama.trace(None, prompt, max_new_tokens=5)
        assert torch.equal(got.generated_ids, alone.generated_ids)
        assert torch.allclose(got.hidden_states, alone.hidden_states, atol=1e-5)


def test_sampling_is_reproducible_under_a_seed_and_leaves_the_global_rng(tiny_llava, image) -> None:
    kwargs = {"max_new_tokens": 8, "do_sample": True, "temperature": 5.0}
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = tiny_llava.trace(image, "describe this image", seed=7, **kwargs)
    assert torch.equal(torch.rand(1), expected_next)  # global RNG untouched
    b = tiny_llava.trace(image, "describe this image", seed=7, **kwargs)
    assert torch.equal(a.generated_ids, b.generated_ids)
    others = [
        tiny_llava.trace(image, "describe this image", seed=s, **kwargs).generated_ids for s in range(8, 12)
    ]
    assert any(not torch.equal(a.generated_ids, o) for o in others)


def test_rows_stop_at_their_own_eos(tiny_llava) -> None:
    images = [make_image(5), make_image(6)]
    rendered = [tiny_llava.render_prompt("describe this image")] * 2
    inputs = tiny_llava.encode(rendered, images)
    settings = GenerationSettings(max_new_tokens=6)
    free = generate_with_capture(
        tiny_llava.model, tiny_llava.loaded.roles.decoder_layers, inputs, settings, eos_ids=[], pad_id=0
    )
    # pretend the third token of row 0 is an end-of-sequence token
    eos = int(free[0].generated_ids[2])
    stopped = generate_with_capture(
        tiny_llava.model, tiny_llava.loaded.roles.decoder_layers, inputs, settings, eos_ids=[eos], pad_id=0
    )
    for before, after in zip(free, stopped, strict=True):
        first = (before.generated_ids == eos).nonzero()
        n = int(first[0, 0]) + 1 if first.numel() else 6
        assert after.generated_ids.tolist() == before.generated_ids[:n].tolist()
        assert after.hidden_states.shape[1] == n
        assert torch.allclose(after.hidden_states, before.hidden_states[:, :n], atol=1e-6)
        assert after.stop_reason == ("eos" if first.numel() else "max_new_tokens")
    assert stopped[0].stop_reason == "eos"


def test_inconsistent_layer_calls_are_refused() -> None:
    from evolens.capture.hooks import ResidualRecording

    rec = ResidualRecording(n_boundaries=3, keep_prompt=False)
    rec._record(0, torch.zeros(1, 2, 4))
    rec._record(1, torch.zeros(1, 2, 4))
    with pytest.raises(CaptureError, match="out of order"):  # layer 0 ran twice in one call
        rec._record(1, torch.zeros(1, 2, 4))
    with pytest.raises(CaptureError, match="out of order"):  # a layer ran before any call began
        ResidualRecording(n_boundaries=3)._record(2, torch.zeros(1, 2, 4))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_new_tokens": 0},
        {"max_new_tokens": -3},
        {"max_new_tokens": True},
        {"temperature": 0.0},
        {"top_p": 0.0},
        {"top_k": -1},
    ],
)
def test_bad_generation_settings(kwargs) -> None:
    with pytest.raises(SettingsError):
        GenerationSettings(**kwargs)


def test_storage_dtype(tiny_llava, image) -> None:
    trace = tiny_llava.trace(image, "describe this image", max_new_tokens=2, storage_dtype=torch.float16)
    assert trace.hidden_states.dtype == torch.float16


def test_the_buffer_grows_past_its_capacity_and_keeps_every_call() -> None:
    from evolens.capture.hooks import ResidualRecording

    rec = ResidualRecording(n_boundaries=2, capacity=1)
    for call in range(5):
        for boundary in range(2):
            rec._record(boundary, torch.full((2, 1 if call else 3, 4), float(10 * call + boundary)))
    rec.finish()
    states = rec.states()
    assert rec.n_calls == 5 and states.shape == (2, 5, 2, 4)
    expected = torch.tensor([[10.0 * c + b for c in range(5)] for b in range(2)])
    assert torch.equal(states[..., 0, 0], expected)


def test_skipped_layers_pass_the_stream_through() -> None:
    from evolens.capture.hooks import ResidualRecording

    rec = ResidualRecording(n_boundaries=4, keep_prompt=True)
    rec._record(0, torch.full((1, 3, 2), 0.0))
    rec._record(1, torch.full((1, 3, 2), 1.0))
    rec._record(3, torch.full((1, 3, 2), 3.0))  # layer 1 (boundary 2) did not run in this call
    rec._record(0, torch.full((1, 1, 2), 5.0))
    rec._record(1, torch.full((1, 1, 2), 6.0))  # the call ends here: layers 1 and 2 pass the stream through
    rec.finish()
    assert rec.states()[:, :, 0, 0].tolist() == [[0.0, 5.0], [1.0, 6.0], [1.0, 6.0], [3.0, 6.0]]
    assert rec.prompt is not None
    assert [float(p[0, 0, 0]) for p in rec.prompt] == [0.0, 1.0, 1.0, 3.0]


def test_nothing_recorded_is_an_error() -> None:
    from evolens.capture.hooks import ResidualRecording

    with pytest.raises(CaptureError, match="nothing was recorded"):
        ResidualRecording(n_boundaries=3).states()
    with pytest.raises(SettingsError, match="placement"):
        ResidualRecording(n_boundaries=3, placement="gpu")  # type: ignore[arg-type]


def test_buffer_placement_spills_what_does_not_fit() -> None:
    from evolens.capture.hooks import buffer_placement

    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert buffer_placement(cpu, 10**12) == cpu  # a CPU model's buffer stays in CPU memory
    assert buffer_placement(gpu, 100, "auto", max_device_bytes=100) == gpu
    assert buffer_placement(gpu, 101, "auto", max_device_bytes=100) == cpu  # spilled to pinned host memory
    assert buffer_placement(gpu, 10**15, "device") == gpu
    assert buffer_placement(gpu, 1, "host") == cpu


@pytest.mark.parametrize("placement", ["host", "device"])
def test_placement_does_not_change_the_states(tiny_llava, image, placement) -> None:
    rendered = [tiny_llava.render_prompt("describe this image")]
    inputs = tiny_llava.encode(rendered, [image])
    args = {"eos_ids": [], "pad_id": 0, "keep_prompt": True}
    layers = tiny_llava.loaded.roles.decoder_layers
    settings = GenerationSettings(max_new_tokens=4)
    auto = generate_with_capture(tiny_llava.model, layers, inputs, settings, **args)[0]
    other = generate_with_capture(tiny_llava.model, layers, inputs, settings, placement=placement, **args)[0]
    assert torch.equal(auto.hidden_states, other.hidden_states)
    assert torch.equal(auto.prompt_hidden_states, other.prompt_hidden_states)


def test_states_can_stay_where_they_were_captured(tiny_llava, image) -> None:
    rendered = [tiny_llava.render_prompt("describe this image")] * 2
    inputs = tiny_llava.encode(rendered, [image, make_image(9)])
    layers = tiny_llava.loaded.roles.decoder_layers
    settings = GenerationSettings(max_new_tokens=3)
    stored = generate_with_capture(tiny_llava.model, layers, inputs, settings, eos_ids=[], pad_id=0)
    kept = generate_with_capture(
        tiny_llava.model, layers, inputs, settings, eos_ids=[], pad_id=0, storage_device=None
    )
    for a, b in zip(stored, kept, strict=True):
        assert torch.equal(a.hidden_states, b.hidden_states)
        assert a.hidden_states.is_contiguous()
    # both items are views of one capture buffer
    assert (
        kept[0].hidden_states.untyped_storage().data_ptr()
        == kept[1].hidden_states.untyped_storage().data_ptr()
    )


@pytest.mark.parametrize("every", [1, 2, 5, 50])
def test_a_listener_sees_every_step_once_while_generating(tiny_llava, every) -> None:
    images = [make_image(5), make_image(6)]
    inputs = tiny_llava.encode([tiny_llava.render_prompt("describe this image")] * 2, images)
    layers = tiny_llava.loaded.roles.decoder_layers
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def listener(states: torch.Tensor, ids: torch.Tensor) -> None:
        seen.append((states.clone(), ids.clone()))

    settings = GenerationSettings(max_new_tokens=5)
    plain = generate_with_capture(tiny_llava.model, layers, inputs, settings, eos_ids=[], pad_id=0)
    items = generate_with_capture(
        tiny_llava.model,
        layers,
        inputs,
        settings,
        eos_ids=[],
        pad_id=0,
        listener=listener,
        listen_every=every,
    )
    assert [s.shape[1] for s, _ in seen] == [every] * (5 // every) + ([5 % every] if 5 % every else [])
    states = torch.cat([s for s, _ in seen], dim=1)  # [L + 1, steps, batch, d]
    ids = torch.cat([i for _, i in seen], dim=1)  # [batch, steps]
    for row, (item, alone) in enumerate(zip(items, plain, strict=True)):
        assert torch.equal(ids[row], item.generated_ids)
        assert torch.equal(states[:, :, row], item.hidden_states)
        assert torch.equal(item.hidden_states, alone.hidden_states)


def test_listen_every_must_be_positive(tiny_llava, image) -> None:
    inputs = tiny_llava.encode([tiny_llava.render_prompt("describe this image")], [image])
    with pytest.raises(SettingsError, match="listen_every"):
        generate_with_capture(
            tiny_llava.model,
            tiny_llava.loaded.roles.decoder_layers,
            inputs,
            GenerationSettings(max_new_tokens=2),
            eos_ids=[],
            pad_id=0,
            listener=lambda states, ids: None,
            listen_every=0,
        )
