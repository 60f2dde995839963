"""The :class:`Lens` interface: what metrics, traces and the API need from a lens.

A lens maps pre-norm residual states to float32 logits over the vocabulary. :class:`~evolens.lens.LogitLens`
(final norm + language head, in its ``"logit"`` and ``"paper"`` modes) is one; a tuned lens (a learned affine map
per layer before the norm and head, cf. tuned-lens's ``Lens``) or a float64 reference lens is one new class that
implements these members — nothing in ``metrics/``, ``trace/`` or the API needs to change.
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

    def logits(self, states: torch.Tensor, boundaries: torch.Tensor | None = None) -> torch.Tensor:
        """``[n_boundaries, n, d_model]`` pre-norm states -> ``[n_boundaries, n, vocab_size]`` float32 logits on
        :attr:`device`; row ``i`` is boundary ``boundaries[i]`` (default ``0..n_boundaries-1``)."""
        ...

    def with_mode(self, mode: str) -> Lens:
        """The same lens in another mode (a lens with one mode returns itself for it and raises
        :class:`~evolens.errors.SettingsError` for any other)."""
        ...

    def with_matmul_dtype(self, dtype: torch.dtype | None) -> Lens:
        """The same lens with its head's GEMM in ``dtype`` (``None``: exact); a lens without a fast mode returns
        itself for ``None`` and raises :class:`~evolens.errors.SettingsError` otherwise."""
        ...
