"""The :class:`Decoding` interface: what :meth:`~evolens.api.LVLM.trace` needs from a decoding strategy that reads
the lens while generating (evolens's are in :mod:`evolens.decoding`; ``TraceOptions(decoding=None)`` decodes as the
generation settings say, with no rule).

A strategy supplies a step rule (:class:`~evolens.capture.rules.StepRule`) built on the trace's lens; a contrast
strategy also says how each item's contrast row is made: its prompt (a disturbing instruction) and, after encoding,
its tensors (a distorted image).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from evolens.capture.rules import StepRule
from evolens.lens.base import Lens


@runtime_checkable
class Decoding(Protocol):
    """A decoding strategy, as the tracing API uses it."""

    @property
    def name(self) -> str:
        """The strategy's name as results record it (``"dola"``, ``"vcd"``...)."""
        ...

    @property
    def contrast(self) -> bool:
        """Whether each item is generated beside a contrast row (the batch doubles)."""
        ...

    def contrast_prompt(self, prompt: str) -> str:
        """The contrast row's prompt for an item's ``prompt`` (the prompt itself when only the image changes)."""
        ...

    def contrast_inputs(self, inputs: Mapping[str, Any], n_items: int) -> dict[str, Any]:
        """The encoded batch (``2 * n_items`` rows: items, then contrast rows) with the contrast rows' tensors
        changed as the strategy says (e.g. noise on their images)."""
        ...

    def rule(self, lens: Lens) -> StepRule:
        """A fresh rule for one generate call, reading states through ``lens``."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """Name and hyper-parameters, as a run's configuration and a trace's manifest record them."""
        ...
