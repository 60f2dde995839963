"""A :class:`Trace` with a lens attached from outside: what needs the model's norm and head.

A trace is plain data. Full logits, probabilities of token ids it did not track, and its metrics under another lens
mode need the lens again (and its hidden states); :class:`LensedTrace` holds the three together. Get one with
:meth:`evolens.LVLM.attach` (the model's logit lens and tokenizer) or ``LensedTrace(trace, lens, tokenizer)`` for
any :class:`~evolens.lens.Lens`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from evolens.errors import LensUnavailableError, SettingsError
from evolens.lens.base import Lens
from evolens.lens.logit_lens import lens_dtype_of, metrics_dtype_of
from evolens.metrics.compute import compute_layer_metrics, track_tokens
from evolens.trace.core import Trace
from evolens.trace.vocab import metrics_token_ids, vocab_strings


class LensedTrace:
    """A trace, the lens that decodes its hidden states, and (optionally) the tokenizer that names new token ids.

    Attributes:
        trace: The trace (unchanged; plain data).
        lens: The lens, set to the trace's lens mode, GEMM dtype and metrics dtype (so it recomputes what the
            trace holds).
        tokenizer: Names token ids that :meth:`with_lens` finds anew, or ``None``.

    Raises:
        SettingsError: The lens has another number of layers than the trace, or cannot take its mode.
    """

    def __init__(self, trace: Trace, lens: Lens, tokenizer: Any = None) -> None:
        if lens.n_layers != trace.n_layers:
            raise SettingsError(f"lens has {lens.n_layers} layers but the trace has {trace.n_layers}")
        self.trace = trace
        metrics = trace.metrics
        self.lens = (
            lens.with_mode(trace.lens_mode)
            .with_matmul_dtype(lens_dtype_of(metrics.lens_dtype))
            .with_logits_dtype(metrics_dtype_of(metrics.metrics_dtype))
        )
        self.tokenizer = tokenizer

    def __repr__(self) -> str:
        return (
            f"LensedTrace(item_id={self.trace.item_id!r}, n_layers={self.trace.n_layers}, "
            f"n_steps={self.trace.n_steps}, lens={self.lens.mode!r})"
        )

    def logits(self, steps: slice | None = None) -> torch.Tensor:
        """The full ``[n_layers + 1, n_steps, vocab]`` logits (of ``steps`` only, if given; float64 for a float64
        trace), on the CPU — materialised only because you ask."""
        return self.lens.logits(self._states("logits()")[:, steps or slice(None)]).cpu()

    def token_logprobs(self, ids: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`Trace.token_logprobs` for any ``ids``: tracked ones as stored, the others through the lens."""
        return self.trace.token_logprobs() if ids is None else self._token_metrics(ids)[0]

    def token_probs(self, ids: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`Trace.token_probs` for any ``ids``: ``[n_layers + 1, n_steps, len(ids)]``."""
        return self.token_logprobs(ids).exp()

    def token_ranks(self, ids: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`Trace.token_ranks` for any ``ids`` (1 = most probable)."""
        return self.trace.token_ranks() if ids is None else self._token_metrics(ids)[1]

    def with_lens(self, mode: str, *, chunk_steps: int | None = None) -> LensedTrace:
        """The same trace with every metric recomputed under another lens mode (``"logit"`` or ``"paper"`` for
        the logit lens); its ``.trace`` is the new :class:`Trace`."""
        states = self._states("with_lens()")
        lens = self.lens.with_mode(mode)
        metrics = compute_layer_metrics(
            states,
            lens,
            self.trace.generated_ids,
            k=int(self.trace.metrics.topk_ids.shape[-1]),
            tracked_ids=self.trace.metrics.tracked_ids,
            chunk_steps=chunk_steps,
        )
        vocab = dict(self.trace.vocab)
        if self.tokenizer is not None:
            vocab.update(vocab_strings(self.tokenizer, metrics_token_ids(metrics)))
        return LensedTrace(replace(self.trace, metrics=metrics, vocab=vocab), lens, self.tokenizer)

    def _token_metrics(self, ids: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stored = self.trace.stored_token_metrics(ids)
        if stored is not None:
            return stored
        wanted = torch.as_tensor(ids, dtype=torch.long).flatten()
        return track_tokens(
            self._states("probabilities of token ids that were not tracked"), self.lens, wanted
        )

    def _states(self, what: str) -> torch.Tensor:
        if self.trace.hidden_states is None:
            raise LensUnavailableError(f"{what} needs the hidden states, which this trace did not keep")
        return self.trace.hidden_states
