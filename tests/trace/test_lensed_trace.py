"""A trace is plain data; :class:`~evolens.LensedTrace` attaches the lens (and tokenizer) from outside."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

import evolens
from evolens import LensedTrace, Trace
from evolens.errors import LensUnavailableError, SettingsError
from tests.conftest import make_image


@pytest.fixture(scope="module")
def paper_trace(tiny_llava):
    return tiny_llava.trace(make_image(4), "describe this image", max_new_tokens=5, lens="paper", topk=4)


def test_a_trace_holds_no_model_modules(paper_trace) -> None:
    names = {f.name for f in dataclasses.fields(Trace)}
    assert not any(name.startswith("_") for name in names)
    assert not any(isinstance(getattr(paper_trace, name), nn.Module) for name in names)


def test_attach_takes_the_trace_lens_mode(tiny_llava, paper_trace) -> None:
    lensed = tiny_llava.attach(paper_trace)
    assert isinstance(lensed, LensedTrace) and lensed.lens.mode == "paper"
    assert lensed.tokenizer is tiny_llava.tokenizer and "paper" in repr(lensed)
    # the attached lens recomputes exactly what the trace stored
    logp = torch.log_softmax(lensed.logits(), -1)
    expected = logp.gather(-1, paper_trace.generated_ids.view(1, -1, 1).expand(logp.shape[0], -1, 1))[..., 0]
    torch.testing.assert_close(expected, paper_trace.token_logprobs(), atol=1e-5, rtol=1e-5)
    assert torch.equal(lensed.token_probs(), paper_trace.token_probs())
    assert torch.equal(lensed.token_ranks(), paper_trace.token_ranks())


def test_with_lens_switches_mode_and_names_new_tokens(tiny_llava, paper_trace) -> None:
    switched = tiny_llava.attach(paper_trace).with_lens("logit")
    assert switched.lens.mode == switched.trace.lens_mode == "logit"
    assert switched.trace.metrics.topk_ids.shape[-1] == 4
    assert paper_trace.lens_mode == "paper"  # the original is left as it was
    assert set(switched.trace.metrics.topk_ids.unique().tolist()) <= set(switched.trace.vocab)
    back = switched.with_lens("paper").trace
    torch.testing.assert_close(back.jsd(), paper_trace.jsd(), atol=1e-6, rtol=1e-6)
    with pytest.raises(SettingsError, match="unknown lens"):
        tiny_llava.attach(paper_trace).with_lens("tuned")


def test_a_lens_of_another_depth_is_refused(tiny_llava, paper_trace) -> None:
    deeper = dataclasses.replace(tiny_llava.lens(), n_layers=tiny_llava.n_layers + 1)
    with pytest.raises(SettingsError, match="layers"):
        LensedTrace(paper_trace, deeper)


def test_a_loaded_trace_gets_its_lens_back(tiny_llava, paper_trace, tmp_path) -> None:
    loaded = evolens.Trace.load(paper_trace.save(tmp_path / "t"))
    with pytest.raises(LensUnavailableError, match="attach"):
        loaded.token_ranks([3])
    lensed = LensedTrace(loaded, tiny_llava.lens(), tiny_llava.tokenizer)  # any mode: set to the trace's
    assert lensed.lens.mode == "paper"
    torch.testing.assert_close(lensed.token_ranks([3]), tiny_llava.attach(paper_trace).token_ranks([3]))
