"""The paper code's fixed-layer choices, for paper-faithful comparisons with evolens' detectors.

The authors' (unreleased) skip experiment fixed the critical layer at 18 of LLaVA-1.5-7B's 32 and chose, per
generated token, the mutation layer in 19-31 with the largest JS divergence from the critical layer
(``shared/notes/paper-code-facts.md``). :func:`paper_mutation_layers` computes that choice on a trace, scaled to
any depth. It needs full distributions, so it takes a trace with its hidden states and lens attached
(:meth:`evolens.LVLM.attach`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from evolens.errors import SettingsError, check_positive_int
from evolens.metrics.divergence import jsd_bits, jsd_paper

if TYPE_CHECKING:
    from evolens.trace import LensedTrace

PAPER_DEPTH, PAPER_CRITICAL = 32, 18


@dataclass(frozen=True)
class PaperMutations:
    """Per token, the layer in a fixed window whose distribution diverges most from a fixed critical layer.

    Attributes:
        critical_layer: The fixed critical state (18 of 32, scaled: ``round(18 / 32 * L)``).
        first_layer: First state of the window (default ``critical + 1``).
        last_layer: Last state of the window (default ``L - 1``: 19-31 for 32 layers).
        reduction: ``"bits"`` (eq. 3-4) or ``"paper"`` (the paper code's reduction).
        mutation_layer: ``[T]`` the chosen state per token.
        divergence: ``[last - first + 1][T]`` divergence of each window state from the critical state.
    """

    critical_layer: int
    first_layer: int
    last_layer: int
    reduction: str
    mutation_layer: list[int]
    divergence: list[list[float]]

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PaperMutations:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def paper_mutation_layers(
    lensed: LensedTrace,
    *,
    critical: int | None = None,
    window: tuple[int, int] | None = None,
    reduction: Literal["bits", "paper"] = "bits",
    chunk_steps: int = 8,
) -> PaperMutations:
    """The paper code's mutation layer of every token: ``argmax_{l in window} JSD(p_critical, p_l)``.

    Args:
        lensed: A trace with hidden states, and its lens (``lvlm.attach(trace)``).
        critical: Fixed critical state (default ``round(18 / 32 * L)``).
        window: Inclusive states ``(first, last)`` searched (default ``(critical + 1, L - 1)``).
        reduction: ``"bits"`` or ``"paper"`` divergence.
        chunk_steps: Steps whose full distributions are held at once.
    """
    n_layers, n_steps = lensed.trace.n_layers, lensed.trace.n_steps
    critical = round(PAPER_CRITICAL / PAPER_DEPTH * n_layers) if critical is None else critical
    first, last = window if window is not None else (critical + 1, n_layers - 1)
    if not 0 <= critical < first <= last <= n_layers:
        raise SettingsError(
            f"need 0 <= critical < first <= last <= {n_layers}; got critical={critical}, window=({first}, {last})"
        )
    if reduction not in ("bits", "paper"):
        raise SettingsError(f"unknown reduction {reduction!r}; use 'bits' or 'paper'")
    check_positive_int("chunk_steps", chunk_steps)
    divergence = jsd_bits if reduction == "bits" else jsd_paper
    parts = []
    for start in range(0, n_steps, chunk_steps):
        logp = torch.log_softmax(lensed.logits(slice(start, start + chunk_steps)).double(), dim=-1)
        parts.append(divergence(logp[critical : critical + 1], logp[first : last + 1]))  # [window, steps]
    values = torch.cat(parts, dim=1).numpy()
    chosen = first + np.argmax(values, axis=0)
    return PaperMutations(critical, first, last, reduction, chosen.astype(int).tolist(), values.tolist())
