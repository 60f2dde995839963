"""The logit lens: map a residual-stream state to a distribution over the vocabulary (paper eq. 1-2).

Two modes:

* ``"logit"`` (default, correct): final norm, then the language head (and the model's own logit scaling or
  soft-capping, if it has any), on every state. Applied to the last layer's pre-norm output this reproduces the
  model's own next-token logits exactly.
* ``"paper"``: what the paper's released code does: the language head on the raw states of layers 0..L-1 (no
  final norm) and on the normed last state (Hugging Face's ``hidden_states[-1]`` is already normed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import nn

from evolens.errors import SettingsError
from evolens.models.roles import LogitTransform, ModelRoles

LensMode = Literal["logit", "paper"]
LENS_MODES: tuple[str, ...] = get_args(LensMode)


def check_lens_mode(mode: str) -> LensMode:
    """Return ``mode`` if it is a known lens mode, else raise :class:`SettingsError`."""
    if mode not in LENS_MODES:
        raise SettingsError(f"unknown lens {mode!r}; use one of {list(LENS_MODES)}")
    return mode  # type: ignore[return-value]


@dataclass(frozen=True)
class LogitLens:
    """Final norm + language head, applied to residual states.

    Attributes:
        final_norm: The model's own final norm module (so Gemma's ``1 + w`` and friends are exact).
        lm_head: The model's language head.
        transform: Logit scaling / soft-capping the model applies after its head.
        n_layers: Number of decoder layers L (boundary L is the last layer's output).
        mode: ``"logit"`` or ``"paper"`` (see module docstring).
    """

    final_norm: nn.Module
    lm_head: nn.Module
    transform: LogitTransform
    n_layers: int
    mode: LensMode = "logit"

    @classmethod
    def from_roles(cls, roles: ModelRoles, mode: str = "logit") -> LogitLens:
        return cls(
            roles.final_norm, roles.lm_head, roles.logit_transform, roles.n_layers, check_lens_mode(mode)
        )

    @property
    def device(self) -> torch.device:
        return next(self.lm_head.parameters()).device

    @property
    def vocab_size(self) -> int:
        """Number of logits the head produces."""
        weight = self.lm_head.weight
        assert isinstance(weight, torch.Tensor)
        return int(weight.shape[0])

    @property
    def dtype(self) -> torch.dtype:
        return next(self.lm_head.parameters()).dtype

    def with_mode(self, mode: str) -> LogitLens:
        return LogitLens(self.final_norm, self.lm_head, self.transform, self.n_layers, check_lens_mode(mode))

    @torch.inference_mode()
    def logits(self, states: torch.Tensor, boundaries: torch.Tensor | None = None) -> torch.Tensor:
        """Float32 logits of ``states``.

        Args:
            states: ``[n_boundaries, n, d_model]`` pre-norm residual states; row ``i`` is boundary
                ``boundaries[i]`` (0 = embeddings, L = last layer's output).
            boundaries: ``[n_boundaries]`` layer index of each row; default ``0..n_boundaries-1``.

        Returns:
            ``[n_boundaries, n, vocab_size]`` float32 logits on the head's device.
        """
        if boundaries is None:
            boundaries = torch.arange(states.shape[0])
        x = states.to(device=self.device, dtype=self.dtype)
        if self.mode == "logit":
            x = self.final_norm(x)
        else:
            last = (boundaries == self.n_layers).to(self.device)
            if bool(last.any()):
                x = x.clone()
                x[last] = self.final_norm(x[last])
        return self.transform.apply(self.lm_head(x).float())
