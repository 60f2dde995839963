"""The :class:`Trace`: one generation followed through every decoder layer, with its lens metrics — plain data.

A trace holds tensors and strings only; what needs the model's norm and head (full logits, untracked token ids,
another lens mode) lives in :class:`~evolens.trace.lensed.LensedTrace`, attached from outside.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

from evolens.errors import LensUnavailableError, SettingsError
from evolens.trace.fileformat import metrics_table, read_trace_fields, save_trace
from evolens.trace.record import TraceRecord

if TYPE_CHECKING:
    import pandas as pd

JsdReduction = Literal["bits", "paper"]


@dataclass(frozen=True)
class TopK:
    """The k most probable tokens at every (layer, step).

    Attributes:
        ids: ``[n_layers + 1, n_steps, k]`` token ids, most probable first.
        probs: ``[n_layers + 1, n_steps, k]`` their probabilities.
        vocab: Id -> display string for every id in ``ids``.
    """

    ids: torch.Tensor
    probs: torch.Tensor
    vocab: dict[int, str]

    def tokens(self, layer: int, step: int) -> list[str]:
        """Display strings of the top-k tokens at ``(layer, step)``."""
        return [self.vocab.get(int(i), f"<{int(i)}>") for i in self.ids[layer, step].tolist()]


@dataclass(frozen=True)
class Candidates:
    """The paper's candidate tokens of one step: the generated token plus every top-1 token at or after a layer.

    Attributes:
        step: The generation step.
        from_layer: Layers ``>= from_layer`` contributed their top-1 token.
        ids: ``[n_candidates]`` the generated token first, then the others by first layer where they are top-1.
        probs: ``[n_layers + 1, n_candidates]`` each candidate's probability at every layer.
        tokens: Display strings of ``ids``.
    """

    step: int
    from_layer: int
    ids: torch.Tensor
    probs: torch.Tensor
    tokens: list[str]


@dataclass
class Trace(TraceRecord):
    """One generation followed through every decoder layer: the fields of :class:`TraceRecord` (plain data, no
    model modules) with their accessors, and its directory format (:meth:`save`, :meth:`load`).

    Layer axis: index 0 is the embedding state, index ``l`` the output of decoder layer ``l``, all before the
    final norm; step axis: one entry per generated token. Full logits and untracked token ids need the lens again:
    :class:`~evolens.trace.lensed.LensedTrace`.
    """

    # ----------------------------------------------------------------- shape
    @property
    def n_layers(self) -> int:
        """Decoder layers L; every per-layer array has L + 1 rows."""
        return self.metrics.n_layers

    @property
    def n_steps(self) -> int:
        """Generated tokens."""
        return self.metrics.n_steps

    @property
    def lens_mode(self) -> str:
        return self.metrics.lens_mode

    # --------------------------------------------------------------- metrics
    def token_logprobs(self, ids: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """Natural log-probabilities: of the generated tokens ``[n_layers + 1, n_steps]``, or of ``ids``
        ``[n_layers + 1, n_steps, len(ids)]``.

        Raises:
            LensUnavailableError: ``ids`` the trace did not track (``track=``); :class:`~evolens.LensedTrace`
                computes any ids through the lens.
        """
        if ids is None:
            return self.metrics.target_logprobs
        return self._tracked(ids)[0]

    def token_probs(self, ids: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """Probabilities: of each generated token ``[n_layers + 1, n_steps]``, or of ``ids``
        ``[n_layers + 1, n_steps, len(ids)]``."""
        return self.token_logprobs(ids).exp()

    def token_ranks(self, ids: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """1-based ranks (1 = most probable), same shapes as :meth:`token_probs`."""
        if ids is None:
            return self.metrics.target_ranks
        return self._tracked(ids)[1]

    def entropy(self) -> torch.Tensor:
        """``[n_layers + 1, n_steps]`` entropy of each layer's distribution, bits."""
        return self.metrics.entropy_bits

    def jsd(self, reduction: JsdReduction = "bits") -> torch.Tensor:
        """``[n_layers, n_steps]`` divergence between layer l and l + 1.

        Args:
            reduction: ``"bits"`` — Jensen-Shannon divergence in bits summed over the vocabulary, in [0, 1]
                (paper eq. 3-4); ``"paper"`` — what the paper's code computes: 1/2 [KL(m||p) + KL(m||q)] / |V|
                in nats.
        """
        if reduction == "bits":
            return self.metrics.jsd_bits
        if reduction == "paper":
            return self.metrics.jsd_paper
        raise SettingsError(f"unknown JSD reduction {reduction!r}; use 'bits' or 'paper'")

    def kl_to_last(self) -> torch.Tensor:
        """``[n_layers + 1, n_steps]`` KL(p_last || p_l) in bits."""
        return self.metrics.kl_to_last_bits

    def topk(self, k: int = 5) -> TopK:
        """The ``k`` most probable tokens at every (layer, step); ``k`` at most the number computed."""
        stored = self.metrics.topk_ids.shape[-1]
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= stored:
            raise SettingsError(f"k must be in [1, {stored}] (the trace kept the top {stored}); got {k!r}")
        return TopK(self.metrics.topk_ids[..., :k], self.metrics.topk_logprobs[..., :k].exp(), self.vocab)

    def candidates(self, step: int, from_layer: int | None = None) -> Candidates:
        """The paper's candidate tokens at ``step``: the generated token plus each token that is top-1 at some
        layer ``>= from_layer`` (default: the last 40% of the layers, i.e. 20-32 of LLaVA-1.5-7B's 32)."""
        if not 0 <= step < self.n_steps:
            raise SettingsError(f"step must be in [0, {self.n_steps}), got {step}")
        if from_layer is None:
            from_layer = round(self.n_layers * 0.6)
        if not 0 <= from_layer <= self.n_layers:
            raise SettingsError(f"from_layer must be in [0, {self.n_layers}], got {from_layer}")
        top1 = self.metrics.topk_ids[from_layer:, step, 0].tolist()
        ordered = [int(self.generated_ids[step])]
        for token in top1:
            if token not in ordered:
                ordered.append(token)
        stored = self.metrics.candidate_ids[step].tolist()
        columns = []
        for token in ordered:
            if token in stored:
                columns.append(self.metrics.candidate_logprobs[:, step, stored.index(token)])
            else:  # the generated token need not be top-1 anywhere
                columns.append(self.metrics.target_logprobs[:, step])
        probs = torch.stack(columns, dim=-1).exp()
        return Candidates(
            step, from_layer, torch.tensor(ordered), probs, [self.vocab.get(t, f"<{t}>") for t in ordered]
        )

    def stored_token_metrics(
        self, ids: Sequence[int] | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Log-probabilities and ranks of ``ids`` (``[n_layers + 1, n_steps, len(ids)]`` each) when the trace
        tracked every one of them, else ``None``."""
        wanted = torch.as_tensor(ids, dtype=torch.long).flatten().tolist()
        known = self.metrics.tracked_ids.tolist()
        if not all(int(i) in known for i in wanted):
            return None
        cols = [known.index(int(i)) for i in wanted]
        return self.metrics.tracked_logprobs[..., cols], self.metrics.tracked_ranks[..., cols]

    def _tracked(self, ids: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stored = self.stored_token_metrics(ids)
        if stored is None:
            raise LensUnavailableError(
                "probabilities of token ids the trace did not track need the model's norm and head: use "
                "lvlm.attach(trace).token_probs(ids) (or evolens.LensedTrace(trace, lens, tokenizer))"
            )
        return stored

    # -------------------------------------------------------------- export
    def to_frame(self) -> pd.DataFrame:
        """The long table: one row per (step, layer); see :func:`evolens.trace.fileformat.metrics_table`."""
        return metrics_table(self).to_pandas()

    def save(self, directory: str | Path, *, hidden_states: bool = True, overwrite: bool = False) -> Path:
        """Write the trace to ``directory`` atomically (manifest, Parquet long table, safetensors)."""
        return save_trace(self, directory, hidden_states=hidden_states, overwrite=overwrite)

    @classmethod
    def load(cls, directory: str | Path) -> Trace:
        """Read a trace written by :meth:`save` (data only: attach a lens with :meth:`evolens.LVLM.attach`)."""
        return cls(**read_trace_fields(directory))


def load_trace(directory: str | Path) -> Trace:
    """Read a trace written by :func:`~evolens.trace.fileformat.save_trace` (same as :meth:`Trace.load`)."""
    return Trace.load(directory)
