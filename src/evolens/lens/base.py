"""The :class:`Lens` interface: what metrics, traces and the API need from a lens.

A lens maps pre-norm residual states to logits over the vocabulary (float32, or float64 when asked). :class:`~evolens.lens.LogitLens`
(final norm + language head, in its ``"logit"`` and ``"paper"`` modes) is one; a tuned lens (a learned affine map
per layer before the norm and head, cf. tuned-lens's ``Lens``) is one new class that implements these members — nothing in ``metrics/``, ``trace/`` or the API needs to change.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Lens(Protocol):
    """Residual states -> vocabulary logits.

    Attributes:
        n_layers: Decoder layers L; states come as boundaries 0..L (0 = embeddings, L = last layer's output).
        mode: The lens's name as traces record it (``"logit"``, ``"paper"``, or a custom lens's own name).
        vocab_size: Logits per state.
        device: Where :meth:`logits` computes (the analysis runs there too).
        matmul_dtype: dtype of a reduced-precision head GEMM (the logit lens's fast mode), recorded in traces as
            ``lens_dtype``; ``None`` for an exact lens.
        logits_dtype: dtype of the logits :meth:`logits` returns, and so of every metric computed from them
            (``torch.float32``, or ``torch.float64``: recorded in traces as ``metrics_dtype``).
    """

    @property
    def n_layers(self) -> int: ...

    @property
    def mode(self) -> str: ...

    @property
    def vocab_size(self) -> int: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def matmul_dtype(self) -> torch.dtype | None: ...

    @property
    def logits_dtype(self) -> torch.dtype: ...

    def logits(self, states: torch.Tensor, boundaries: torch.Tensor | None = None) -> torch.Tensor:
        """``[n_boundaries, n, d_model]`` pre-norm states -> ``[n_boundaries, n, vocab_size]`` logits in
        :attr:`logits_dtype` on :attr:`device`; row ``i`` is boundary ``boundaries[i]`` (default ``0..n_boundaries-1``)."""
        ...

    def with_mode(self, mode: str) -> Lens:
        """The same lens in another mode (a lens with one mode returns itself for it and raises
        :class:`~evolens.errors.SettingsError` for any other)."""
        ...

    def with_matmul_dtype(self, dtype: torch.dtype | None) -> Lens:
        """The same lens with its head's GEMM in ``dtype`` (``None``: exact); a lens without a fast mode returns
        itself for ``None`` and raises :class:`~evolens.errors.SettingsError` otherwise."""
        ...

    def with_logits_dtype(self, dtype: torch.dtype) -> Lens:
        """The same lens with its logits in ``dtype`` (``torch.float64``: the metrics' float64 option); a lens
        without a float64 mode returns itself for ``torch.float32`` and raises
        :class:`~evolens.errors.SettingsError` otherwise."""
        ...
