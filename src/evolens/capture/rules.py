"""Decoding rules applied while a generation is recorded: the hook through which a decoding strategy (evolens's
:mod:`evolens.decoding`) reads every layer's state at each step and changes the scores the next token is chosen from.

A :class:`StepRule` is called once per generated token, after the model's forward pass and Hugging Face's own logits
processors (repetition penalty, suppressed tokens), with the final scores and the step's recorded residual states. A
rule with ``contrast = True`` runs on a doubled batch: rows ``n_items..2 n_items - 1`` are *contrast rows* (the
same items with a distorted image or a disturbing instruction, as the caller encoded them); the rule reads their
scores, and every contrast row is then made to emit its item's token (its scores are replaced by the item row's),
so both rows of an item stay on one sequence. Only the items' rows become :class:`~evolens.capture.generate.
CapturedItem`\\ s.

The wrapper also notes, per item row, every step at which the rule's choice differs from the arg-max of the scores
it was given (the token plain greedy decoding would have emitted at that step): what the strategy changed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from evolens.capture.hooks import ResidualRecording


@dataclass(frozen=True)
class StepSession:
    """What a rule may use besides the scores and states: for extra forward passes of its own.

    Attributes:
        model: The generating model.
        layers: Its text decoder's layers.
        inputs: The batch given to ``generate`` (on the model's device; with contrast rows when the rule has them).
        prompt_len: Padded prompt length (generated tokens start there in ``input_ids``).
        n_items: Item rows (the first ``n_items`` rows of the batch).
        paused: ``paused()`` is a context in which forward calls are not recorded.
    """

    model: nn.Module
    layers: nn.ModuleList
    inputs: Mapping[str, Any]
    prompt_len: int
    n_items: int
    paused: Callable[[], AbstractContextManager[None]]


class StepRule(Protocol):
    """A decoding rule (see the module docstring)."""

    @property
    def contrast(self) -> bool:
        """Whether the batch carries one contrast row per item after the items' rows."""
        ...

    def start(self, session: StepSession) -> None:
        """Called once before generation starts."""
        ...

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """The scores to choose the next token from.

        Args:
            input_ids: ``[rows, prompt_len + step]`` the sequences so far.
            scores: ``[rows, vocab]`` the final layer's scores after Hugging Face's processors.
            states: ``[L + 1, rows, d_model]`` this step's pre-norm residual states (recorded by the hooks).

        Returns:
            ``[rows, vocab]`` scores (the contrast rows' are ignored).
        """
        ...


@dataclass
class RuleRecord:
    """What a rule changed, collected during generation (device tensors, read once at the end).

    Attributes:
        plain: One ``[n_items]`` tensor per step: the arg-max of the scores the rule was given.
        chosen: One ``[n_items]`` tensor per step: the arg-max of the scores it returned.
    """

    plain: list[torch.Tensor]
    chosen: list[torch.Tensor]

    def overridden(self, row: int, n_steps: int) -> list[tuple[int, int]]:
        """``(step, plain token)`` of every step of item ``row`` (its first ``n_steps``) at which the rule chose
        another token than the arg-max it was given."""
        if not self.plain:
            return []
        plain = torch.stack(self.plain)[:n_steps, row].cpu()
        chosen = torch.stack(self.chosen)[:n_steps, row].cpu()
        return [(int(t), int(plain[t])) for t in (plain != chosen).nonzero().flatten()]


def rule_processor(rec: ResidualRecording, rule: StepRule, n_items: int) -> tuple[Any, RuleRecord]:
    """A Hugging Face logits processor that applies ``rule`` at every step (states read from ``rec``), and the
    record it fills."""
    from transformers import LogitsProcessor

    record = RuleRecord([], [])

    class _RuleProcessor(LogitsProcessor):
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            rec.finish_call()  # layers the step skipped pass the stream through before the rule reads it
            states = rec.states()[:, -1]
            out = rule(input_ids, scores, states.to(scores.device))
            if rule.contrast:
                out = torch.cat([out[:n_items], out[:n_items]])
            record.plain.append(scores[:n_items].argmax(-1))
            record.chosen.append(out[:n_items].argmax(-1))
            return out

    return _RuleProcessor(), record
