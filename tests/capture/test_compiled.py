"""The static-cache, compiled decoding path (issue 14, item 5): the recording hooks are traced into the compiled
step, whose states go into the capture buffer; on every family that can compile, decoding that way equals eager
decoding, and the families that cannot decode eagerly."""

from __future__ import annotations

import logging

import pytest
import torch

import evolens
from evolens.api import TraceOptions
from evolens.capture import compiled as compiled_module
from evolens.capture import generate as generate_module
from evolens.capture.compiled import CompileOptions, cache_length, compile_unsupported
from evolens.capture.generate import GenerationSettings, eos_token_ids, generate_with_capture
from evolens.capture.hooks import ResidualRecording, collect_compiled, record_residual_stream
from evolens.decoding import Dola
from evolens.errors import CaptureError, SettingsError
from evolens.testing import TINY_BUILDERS
from tests.experiments.conftest import load_family, make_image

FAMILIES = sorted(TINY_BUILDERS)
PROMPTS = ("describe the image", "what color is the heart on the left ?")
# traced as one graph and run op by op: the same numbers as eager decoding, without inductor's compile time
CHECK = CompileOptions(backend="eager")
N_NEW = 6
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    yield
    torch._dynamo.reset()


@pytest.fixture
def compiled_calls(monkeypatch) -> list[int]:
    """Counts the compiled decoding steps (one entry per step)."""
    calls: list[int] = []
    original = compiled_module.RecordedStep.__call__

    def counting(self, **kwargs):
        calls.append(1)
        return original(self, **kwargs)

    monkeypatch.setattr(compiled_module.RecordedStep, "__call__", counting)
    return calls


def _capture(lvlm, compile_options, n_new: int = N_NEW, prompts: tuple[str, ...] = PROMPTS, **kwargs):
    images = [make_image(i) for i in range(len(prompts))] if lvlm.is_vlm else None
    rendered = [lvlm.render_prompt(p, image=images is not None) for p in prompts]
    return generate_with_capture(
        lvlm.model,
        lvlm.loaded.roles.decoder_layers,
        lvlm.encode(rendered, images),
        GenerationSettings(max_new_tokens=n_new),
        eos_ids=eos_token_ids(lvlm.model, lvlm.tokenizer),
        pad_id=int(lvlm.tokenizer.pad_token_id),
        suppress_ids=lvlm.loaded.roles.suppressed_token_ids,
        compile_options=compile_options,
        **kwargs,
    )


def _assert_same(eager, compiled, atol: float = 1e-5) -> None:
    for a, b in zip(eager, compiled, strict=True):
        assert a.generated_ids.tolist() == b.generated_ids.tolist()
        assert a.stop_reason == b.stop_reason
        torch.testing.assert_close(b.hidden_states, a.hidden_states, rtol=atol, atol=atol)


@pytest.mark.parametrize("family", FAMILIES)
def test_compiled_decoding_equals_eager_decoding(
    family: str, tiny_models, compiled_calls, caplog, monkeypatch
) -> None:
    lvlm = load_family(family, tiny_models)
    eager = _capture(lvlm, None)
    monkeypatch.setattr(generate_module, "_WARNED_EAGER", set())
    with caplog.at_level(logging.WARNING, logger="evolens.capture.generate"):
        compiled = _capture(lvlm, CHECK)
    _assert_same(eager, compiled)
    reason = compile_unsupported(lvlm.model)
    if reason is None:
        # the prefill runs eagerly, every later step compiled
        assert len(compiled_calls) == max(len(item.generated_ids) for item in compiled) - 1
    else:
        assert not compiled_calls
        assert "decodes eagerly" in caplog.text
    assert "get_compiled_call" not in vars(lvlm.model)  # the model's own method is back


def test_inductor_compiles_once_and_agrees_with_eager_decoding(tiny_models, compiled_calls) -> None:
    from torch._dynamo.utils import counters

    lvlm = load_family("llava", tiny_models)
    eager = _capture(lvlm, None)
    options = CompileOptions()
    _assert_same(eager, _capture(lvlm, options), atol=1e-4)
    graphs = counters["stats"]["unique_graphs"]
    # a second trace reuses the compiled step: new hooks and a new recording guard nothing
    _assert_same(eager, _capture(lvlm, options), atol=1e-4)
    assert counters["stats"]["unique_graphs"] == graphs
    assert len(compiled_calls) == 2 * (N_NEW - 1)


def test_compiled_trace_equals_eager_trace_on_the_toy(tmp_path) -> None:
    """The toy model stops at its EOS: rows of one batch finish at different steps."""
    toy = evolens.load(evolens.toy.model_dir(), device="cpu")
    evolens.toy.export_testset(tmp_path / "toy", n_typical=3, n_atypical=1)
    images = sorted((tmp_path / "toy" / "image").glob("*.png"))
    prompts = [
        "describe the image .",
        "what color is the circle ?",
        "describe the image .",
        "is there a circle ?",
    ]
    eager_options = TraceOptions.from_flat(max_new_tokens=24, batch_size=4, prompt_positions=True)
    eager = toy.trace(images=images, prompts=prompts, options=eager_options)
    compiled = toy.trace(
        images=images,
        prompts=prompts,
        options=TraceOptions.from_flat(max_new_tokens=24, batch_size=4, prompt_positions=True, compile=CHECK),
    )
    assert len({t.n_steps for t in eager}) > 1 and all(t.stop_reason == "eos" for t in eager)
    # the static cache's prefill attends over the whole (masked) cache: other shapes, other float rounding
    close = {"atol": 1e-4, "rtol": 1e-4}
    for a, b in zip(eager, compiled, strict=True):
        assert a.generated_ids.tolist() == b.generated_ids.tolist()
        torch.testing.assert_close(b.hidden_states, a.hidden_states, **close)
        torch.testing.assert_close(b.prompt_hidden_states, a.prompt_hidden_states, **close)
        torch.testing.assert_close(b.token_probs(), a.token_probs(), **close)
        torch.testing.assert_close(b.jsd(), a.jsd(), **close)


def test_compiled_decoding_composes_with_a_listener_and_a_rule(tiny_models) -> None:
    lvlm = load_family("llava", tiny_models)
    seen: dict[str, list[torch.Tensor]] = {"eager": [], "compiled": []}

    def listener(into):
        return lambda states, ids: into.append(states.clone())

    eager = _capture(lvlm, None, listener=listener(seen["eager"]), listen_every=2)
    compiled = _capture(lvlm, CHECK, listener=listener(seen["compiled"]), listen_every=2)
    _assert_same(eager, compiled)
    torch.testing.assert_close(torch.cat(seen["compiled"], 1), torch.cat(seen["eager"], 1))
    # a decoding rule reads the recorded states at every step: the compiled steps must have written them
    options = TraceOptions.from_flat(max_new_tokens=N_NEW, decoding=Dola())
    images = [make_image(i) for i in range(2)]
    a = lvlm.trace(images=images, prompts=list(PROMPTS), options=options)
    b = lvlm.trace(
        images=images,
        prompts=list(PROMPTS),
        options=TraceOptions.from_flat(max_new_tokens=N_NEW, decoding=Dola(), compile=CHECK),
    )
    assert [t.generated_ids.tolist() for t in a] == [t.generated_ids.tolist() for t in b]
    assert [t.decoding for t in a] == [t.decoding for t in b]


def test_the_model_is_restored_when_generation_fails(tiny_models, monkeypatch) -> None:
    lvlm = load_family("llama", tiny_models)
    layers = lvlm.loaded.roles.decoder_layers
    hooks = sum(len(layer._forward_hooks) + len(layer._forward_pre_hooks) for layer in layers)

    def fail(self, **kwargs):
        raise RuntimeError("step failed")

    monkeypatch.setattr(compiled_module.RecordedStep, "__call__", fail)
    with pytest.raises(RuntimeError, match="step failed"):
        _capture(lvlm, CHECK)
    assert "get_compiled_call" not in vars(lvlm.model)
    assert sum(len(layer._forward_hooks) + len(layer._forward_pre_hooks) for layer in layers) == hooks


class _PassThrough(torch.nn.Module):
    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


def test_a_compiled_call_passes_skipped_layers_through(tiny_models) -> None:
    """A layer that does not run in a compiled call (Mllama's cross-attention layers) passes the stream through."""
    lvlm = load_family("llama", tiny_models)
    layers = lvlm.loaded.roles.decoder_layers
    ids = torch.tensor([[3, 4, 5]])
    skipped = layers[1]
    with record_residual_stream(layers):
        eager_states = torch.compile(collect_compiled, backend="eager", fullgraph=True)(
            lvlm.model, len(layers) + 1, {"input_ids": ids}
        )[1]
        layers[1] = _PassThrough()  # no hook on it: it "did not run"
        try:
            states = torch.compile(collect_compiled, backend="eager", fullgraph=True)(
                lvlm.model, len(layers) + 1, {"input_ids": ids}
            )[1]
        finally:
            layers[1] = skipped
    assert states.shape == eager_states.shape == (len(layers) + 1, 1, eager_states.shape[-1])
    torch.testing.assert_close(states[2], states[1])  # boundary 2 = the output of the missing layer 2
    torch.testing.assert_close(states[:2], eager_states[:2])


def test_an_uncompiled_call_to_the_step_is_refused(tiny_models) -> None:
    lvlm = load_family("llama", tiny_models)
    with pytest.raises(CaptureError, match="recorded no states"):
        collect_compiled(lvlm.model, lvlm.n_layers + 1, {"input_ids": torch.tensor([[3, 4]])})


def test_with_compiling_disabled_the_trace_decodes_eagerly(
    tiny_models, compiled_calls, monkeypatch, caplog
) -> None:
    """``TORCH_COMPILE_DISABLE=1`` makes a whole-graph compile fail: the trace decodes eagerly and says so."""
    lvlm = load_family("llama", tiny_models)
    eager = _capture(lvlm, None)
    monkeypatch.setattr(generate_module, "_WARNED_EAGER", set())
    with (
        torch._dynamo.config.patch(disable=True),
        caplog.at_level(logging.WARNING, logger="evolens.capture.generate"),
    ):
        compiled = _capture(lvlm, CHECK)
    _assert_same(eager, compiled)
    assert not compiled_calls
    assert "TORCH_COMPILE_DISABLE" in caplog.text


def test_record_call_checks_the_number_of_boundaries() -> None:
    rec = ResidualRecording(n_boundaries=3, capacity=2)
    rec.record_call(torch.ones(3, 2, 4))
    rec.record_call(torch.full((3, 2, 4), 2.0))
    rec.record_call(torch.full((3, 2, 4), 3.0))  # past the capacity: the buffer grows
    assert rec.n_calls == 3
    assert rec.states()[:, :, 0, 0].tolist() == [[1.0, 2.0, 3.0]] * 3
    with pytest.raises(CaptureError, match=r"expected states \[3, batch, d_model\]"):
        rec.record_call(torch.ones(2, 2, 4))


def test_compile_options_and_cache_length() -> None:
    assert cache_length(10, 128, 256) == 256
    assert cache_length(129, 128, 256) == 512
    assert cache_length(128, 128, 256) == 256
    assert CompileOptions.from_dict(CompileOptions(mode="default").to_dict()) == CompileOptions(
        mode="default"
    )
    with pytest.raises(SettingsError, match="compile mode"):
        CompileOptions(mode="fast")  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="cache_bucket"):
        CompileOptions(cache_bucket=0)
    with pytest.raises(SettingsError, match="backend"):
        CompileOptions(backend="")


def test_trace_options_carry_the_compile_options_but_a_run_does_not_record_them() -> None:
    options = TraceOptions.from_flat(compile=CompileOptions())
    assert options.compile == CompileOptions()
    assert "compile" not in options.run_config()
    assert options.run_config() == TraceOptions().run_config()


def test_generate_that_refuses_to_compile_decodes_eagerly_with_a_warning(
    tiny_models, compiled_calls, monkeypatch, caplog
) -> None:
    lvlm = load_family("llama", tiny_models)
    eager = _capture(lvlm, None)
    # Hugging Face's own criteria (a quantizer that cannot compile, CPU offload) say no
    monkeypatch.setattr(type(lvlm.model), "_valid_auto_compile_criteria", lambda self, *args: False)
    with caplog.at_level(logging.WARNING, logger="evolens.capture.generate"):
        compiled = _capture(lvlm, CHECK)
    _assert_same(eager, compiled)
    assert not compiled_calls
    assert "did not compile the decoding steps" in caplog.text


def test_a_kept_static_cache_is_reused_reset_and_gives_the_eager_results(tiny_models) -> None:
    """The static cache of one compiled generate serves the next of the same shape (one allocation, fixed
    addresses for CUDA graphs), zeroed in between: a longer prompt's entries do not leak into a shorter one's."""
    lvlm = load_family("llama", tiny_models)
    model = lvlm.model
    tokenizer = lvlm.tokenizer
    long_prompts = ["describe the image in many words please", "what color is the heart on the left ?"]
    short_prompts = ["describe it", "what color ?"]

    def capture(prompts, options):
        inputs = tokenizer(prompts, return_tensors="pt", padding=True)
        return generate_with_capture(
            model,
            lvlm.loaded.roles.decoder_layers,
            inputs,
            GenerationSettings(max_new_tokens=N_NEW),
            eos_ids=[],
            pad_id=int(tokenizer.pad_token_id),
            compile_options=options,
        )

    _assert_same(capture(long_prompts, None), capture(long_prompts, CHECK))
    first = compiled_module._KEPT_CACHES[model][1]
    _assert_same(capture(short_prompts, None), capture(short_prompts, CHECK))
    assert compiled_module._KEPT_CACHES[model][1] is first
    capture(short_prompts[:1], CHECK)  # another batch size: another cache
    assert compiled_module._KEPT_CACHES[model][1] is not first


def test_a_step_that_fails_to_compile_decodes_eagerly_with_a_warning(tiny_models, caplog) -> None:
    """A backend that cannot compile (inductor without a C++ compiler ...): the generation goes on eagerly."""
    from torch._dynamo import register_backend

    @register_backend(name="evolens_test_broken")
    def broken(graph, example_inputs):
        raise RuntimeError("no compiler here")

    lvlm = load_family("llama", tiny_models)
    eager = _capture(lvlm, None)
    with caplog.at_level(logging.WARNING, logger="evolens.capture.compiled"):
        compiled = _capture(lvlm, CompileOptions(backend="evolens_test_broken"))
    _assert_same(eager, compiled)
    assert "compiling the decoding step failed (RuntimeError: no compiler here)" in caplog.text
    assert "Hugging Face's criteria" not in caplog.text  # one warning, the one that says why
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = _capture(lvlm, CompileOptions(backend="evolens_test_broken"))
    _assert_same(eager, again)
    assert not [r for r in caplog.records if r.name.startswith("evolens")]  # known to fail: not tried again


def test_past_the_recompile_limit_a_new_shape_decodes_eagerly_with_one_warning(
    tiny_models, monkeypatch, caplog
) -> None:
    """Every model, batch size and cache length is one more graph of the same step; past dynamo's recompile limit
    (8 by default) a whole-graph compile refuses a new one: that shape decodes eagerly, the others stay compiled."""
    torch._dynamo.reset()
    monkeypatch.setattr(compiled_module, "_OVER_LIMIT", set())
    lvlm = load_family("llama", tiny_models)
    pair, single = PROMPTS, PROMPTS[:1]
    eager_pair, eager_single = _capture(lvlm, None, prompts=pair), _capture(lvlm, None, prompts=single)
    with (
        torch._dynamo.config.patch(recompile_limit=1),
        caplog.at_level(logging.WARNING, logger="evolens.capture.compiled"),
    ):
        _assert_same(eager_pair, _capture(lvlm, CHECK, prompts=pair))  # the one graph the limit allows
        assert not caplog.records
        _assert_same(eager_single, _capture(lvlm, CHECK, prompts=single))
        assert caplog.text.count("recompile limit (1 graphs") == 1
        assert [key[2][0] for key in compiled_module._OVER_LIMIT] == [1]  # batch 1 refused, batch 2 kept
        caplog.clear()
        _assert_same(
            eager_single, _capture(lvlm, CHECK, prompts=single)
        )  # known: not tried, not warned again
        _assert_same(eager_pair, _capture(lvlm, CHECK, prompts=pair))
        assert not caplog.records
