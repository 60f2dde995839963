"""The :class:`~evolens.lens.Lens` interface: a lens that is not a :class:`LogitLens` goes through the metrics,
the batch metrics and :class:`~evolens.LensedTrace` unchanged.

The custom lens is a per-layer affine "tuned" lens (cf. tuned-lens): ``h -> h + A_l h + b_l`` before the model's
own final norm and head. With ``A = 0, b = 0`` it is the logit lens.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from evolens import LensedTrace
from evolens.errors import SettingsError
from evolens.lens import Lens, LogitLens
from evolens.metrics import MetricsStream, compute_batch_metrics, compute_layer_metrics, track_tokens
from evolens.models.roles import LogitTransform
from tests.conftest import make_image


@dataclass(frozen=True)
class AffineLens:
    """A tuned lens: per boundary ``l`` the translator ``h + h @ A_l + b_l``, then final norm and head.

    Attributes:
        final_norm, lm_head, transform: The model's own.
        translators: ``[n_layers + 1, d_model, d_model]``.
        biases: ``[n_layers + 1, d_model]``.
    """

    final_norm: nn.Module
    lm_head: nn.Module
    transform: LogitTransform
    translators: torch.Tensor
    biases: torch.Tensor
    mode: str = "tuned"
    matmul_dtype: torch.dtype | None = None
    logits_dtype: torch.dtype = torch.float32

    @property
    def n_layers(self) -> int:
        return int(self.translators.shape[0]) - 1

    @property
    def vocab_size(self) -> int:
        return int(self.lm_head.weight.shape[0])

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    @torch.inference_mode()
    def logits(self, states: torch.Tensor, boundaries: torch.Tensor | None = None) -> torch.Tensor:
        if boundaries is None:
            boundaries = torch.arange(states.shape[0])
        x = states.to(self.device, self.translators.dtype)
        x = x + torch.einsum("lnd,lde->lne", x, self.translators[boundaries]) + self.biases[boundaries, None]
        return self.transform.apply(self.lm_head(self.final_norm(x)).float())

    def with_mode(self, mode: str) -> AffineLens:
        if mode != self.mode:
            raise SettingsError(f"the affine lens has one mode, {self.mode!r}; got {mode!r}")
        return self

    def with_matmul_dtype(self, dtype: torch.dtype | None) -> AffineLens:
        if dtype is not None:
            raise SettingsError("the affine lens has no fast mode")
        return self

    def with_logits_dtype(self, dtype: torch.dtype) -> AffineLens:
        if dtype != torch.float32:
            raise SettingsError("the affine lens has no float64 mode")
        return self


def affine_lens(lvlm, scale: float) -> AffineLens:
    """Random translators of size ``scale`` at every boundary but the last (where a tuned lens is the model)."""
    roles = lvlm.loaded.roles
    g = torch.Generator().manual_seed(3)
    n, d = roles.n_layers + 1, roles.d_model
    translators = torch.randn(n, d, d, generator=g) * scale / d**0.5
    biases = torch.randn(n, d, generator=g) * scale
    translators[-1], biases[-1] = 0.0, 0.0
    return AffineLens(roles.final_norm, roles.lm_head, roles.logit_transform, translators, biases)


@pytest.fixture(scope="module")
def trace(tiny_llava):
    return tiny_llava.trace(make_image(3), "describe this image", max_new_tokens=6, track=[5, 7])


def _metrics(states: torch.Tensor, lens: Lens, targets: torch.Tensor, **kwargs):
    return compute_layer_metrics(states, lens, targets, k=10, tracked_ids=[5, 7], **kwargs)


def test_both_logit_lens_modes_and_a_custom_lens_implement_the_interface(tiny_llava) -> None:
    for lens in (tiny_llava.lens("logit"), tiny_llava.lens("paper"), affine_lens(tiny_llava, 0.0)):
        assert isinstance(lens, Lens)
    assert not isinstance(affine_lens(tiny_llava, 0.0), LogitLens)
    assert not isinstance(object(), Lens)


@pytest.mark.parametrize("strategy", ["blocked", "whole"])
def test_identity_affine_lens_gives_the_logit_lens_metrics(tiny_llava, trace, strategy) -> None:
    states, targets = trace.hidden_states, trace.generated_ids
    tuned = _metrics(states, affine_lens(tiny_llava, 0.0), targets, strategy=strategy, chunk_steps=4)
    logit = _metrics(states, tiny_llava.lens(), targets, strategy=strategy, chunk_steps=4)
    assert tuned.lens_mode == "tuned" and tuned.lens_dtype is None
    assert tuned.vocab_size == logit.vocab_size == tiny_llava.loaded.roles.vocab_size
    for name, value in logit.tensors().items():
        torch.testing.assert_close(getattr(tuned, name), value, atol=1e-5, rtol=1e-5, msg=name)
    for name, value in trace.metrics.tensors().items():  # what the API computed with the model's logit lens
        torch.testing.assert_close(getattr(tuned, name), value, atol=1e-5, rtol=1e-5, msg=name)


def test_a_trained_looking_affine_lens_gives_sensible_metrics(tiny_llava, trace) -> None:
    lens = affine_lens(tiny_llava, 0.5)
    states, targets = trace.hidden_states, trace.generated_ids
    tuned = _metrics(states, lens, targets)
    logit = trace.metrics
    n_layers, vocab = tiny_llava.n_layers, tiny_llava.loaded.roles.vocab_size
    assert tuned.target_logprobs.shape == (n_layers + 1, trace.n_steps)
    assert bool((tuned.target_logprobs <= 0).all() and (tuned.target_ranks >= 1).all())
    assert bool((tuned.jsd_bits >= 0).all() and (tuned.jsd_bits <= 1 + 1e-6).all())
    assert bool(
        (tuned.entropy_bits >= 0).all() and (tuned.entropy_bits <= torch.log2(torch.tensor(vocab))).all()
    )
    assert bool((tuned.kl_to_last_bits >= -1e-6).all()) and bool(
        (tuned.kl_to_last_bits[-1].abs() < 1e-6).all()
    )
    # the translators change the early layers; the last layer is the model's own distribution either way
    assert not torch.allclose(tuned.target_logprobs[:-1], logit.target_logprobs[:-1], atol=1e-3)
    torch.testing.assert_close(tuned.target_logprobs[-1], logit.target_logprobs[-1], atol=1e-5, rtol=1e-5)
    # the metrics are those of the lens's own distributions
    logp = torch.log_softmax(lens.logits(states).double(), -1)
    expected = logp.gather(-1, targets.view(1, -1, 1).expand(n_layers + 1, -1, 1))[..., 0]
    torch.testing.assert_close(tuned.target_logprobs.double(), expected, atol=1e-4, rtol=1e-4)
    logprobs, ranks = track_tokens(states, lens, torch.tensor([5, 7]))
    torch.testing.assert_close(tuned.tracked_logprobs, logprobs, atol=1e-5, rtol=1e-5)
    assert torch.equal(tuned.tracked_ranks, ranks)


def test_a_custom_lens_in_the_batch_metrics_and_the_stream(tiny_llava, trace) -> None:
    lens = affine_lens(tiny_llava, 0.5)
    states, targets = trace.hidden_states, trace.generated_ids
    alone = _metrics(states, lens, targets)
    (batched,) = compute_batch_metrics([states], lens, [targets], k=10, tracked_ids=[5, 7], strategy="whole")
    stream = MetricsStream(lens, k=10, tracked_ids=[5, 7])
    stream.add(states[:, :, None], targets[None])
    (streamed,) = stream.finish([targets])
    for other in (batched, streamed):
        assert other.lens_mode == "tuned"
        for name, value in alone.tensors().items():
            torch.testing.assert_close(getattr(other, name), value, atol=1e-5, rtol=1e-5, msg=name)


def test_a_lensed_trace_with_a_custom_lens(tiny_llava, trace) -> None:
    lens = affine_lens(tiny_llava, 0.5)
    tuned_trace = dataclasses.replace(trace, metrics=_metrics(trace.hidden_states, lens, trace.generated_ids))
    lensed = LensedTrace(tuned_trace, lens, tiny_llava.tokenizer)
    assert lensed.lens is lens and tuned_trace.lens_mode == "tuned"
    logits = lensed.logits()
    assert logits.shape == (tiny_llava.n_layers + 1, trace.n_steps, tiny_llava.loaded.roles.vocab_size)
    torch.testing.assert_close(logits, lens.logits(trace.hidden_states))
    untracked = lensed.token_logprobs([11])[..., 0]
    torch.testing.assert_close(untracked, torch.log_softmax(logits, -1)[..., 11], atol=1e-5, rtol=1e-5)
    with pytest.raises(SettingsError, match="one mode"):
        lensed.with_lens("paper")
    with pytest.raises(SettingsError, match="one mode"):
        LensedTrace(trace, lens)  # a logit-lens trace: the affine lens cannot recompute it
