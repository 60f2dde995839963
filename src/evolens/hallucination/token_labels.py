"""Per-token labels: every object word an evaluator judged, mapped back to the generated tokens that spell it.

An evaluator reports :class:`~evolens.data.labels.Mention` s — character spans of the response text with a label.
A trace's tokens are display strings that concatenate to its text (plus any special tokens), so each token owns a
character range; a token belongs to a mention when their ranges overlap. The result, :class:`TokenLabels`, has one
entry per generated step, so every per-(layer, step) metric splits into hallucinated and grounded tokens.
"""

from __future__ import annotations

import bisect
import difflib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from evolens.data.labels import LABEL_PRIORITY, Label, Mention


@dataclass(frozen=True)
class TokenLabels:
    """One entry per generated step.

    Attributes:
        labels: The step's label (``None``: not part of any judged word).
        objects: The benchmark object of the step's mention, or ``None``.
        mention: Index of the step's mention in the evaluator's list, or -1.
        first: Whether the step is the first token of its mention (the step where the word is decided).
    """

    labels: list[str | None]
    objects: list[str | None]
    mention: list[int]
    first: list[bool]

    @property
    def n_steps(self) -> int:
        return len(self.labels)

    def steps(self, label: Label, *, first_only: bool = False) -> list[int]:
        """The steps carrying ``label`` (only first tokens of mentions if ``first_only``)."""
        return [s for s, lab in enumerate(self.labels) if lab == label and (self.first[s] or not first_only)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenLabels:
        return cls(
            list(data["labels"]),
            list(data["objects"]),
            [int(i) for i in data["mention"]],
            list(data["first"]),
        )

    @classmethod
    def empty(cls, n_steps: int) -> TokenLabels:
        return cls([None] * n_steps, [None] * n_steps, [-1] * n_steps, [False] * n_steps)


def _text_to_joined(text: str, joined: str) -> list[int | None]:
    """For each character of ``text``, its index in ``joined`` (the concatenated token pieces), or ``None``."""
    offset = joined.find(text)
    if offset >= 0:
        return list(range(offset, offset + len(text)))
    mapping: list[int | None] = [None] * len(text)
    matcher = difflib.SequenceMatcher(None, text, joined, autojunk=False)
    for a, b, size in matcher.get_matching_blocks():
        for k in range(size):
            mapping[a + k] = b + k
    return mapping


def mention_steps(tokens: Sequence[str], text: str, start: int, end: int) -> list[int]:
    """The steps whose token pieces overlap ``text[start:end]`` (in order).

    ``tokens`` are the trace's display pieces (they concatenate to ``text``, possibly with special tokens such as
    ``</s>`` added); characters of ``text`` are located in the concatenation, directly when it contains ``text``
    and by a character alignment otherwise.
    """
    return _StepIndex(tokens, text).steps(start, end)


class _StepIndex:
    def __init__(self, tokens: Sequence[str], text: str) -> None:
        joined = "".join(tokens)
        self.ends: list[int] = []
        total = 0
        for piece in tokens:
            total += len(piece)
            self.ends.append(total)
        self.to_joined = _text_to_joined(text, joined)

    def steps(self, start: int, end: int) -> list[int]:
        found: list[int] = []
        for c in range(max(start, 0), min(end, len(self.to_joined))):
            j = self.to_joined[c]
            if j is None:
                continue
            step = bisect.bisect_right(self.ends, j)
            if step < len(self.ends) and (not found or found[-1] != step):
                found.append(step)
        return found


def label_tokens(tokens: Sequence[str], text: str, mentions: Sequence[Mention]) -> TokenLabels:
    """Per-step labels of a trace's tokens from an evaluator's mentions (see the module docstring).

    Args:
        tokens: The trace's display pieces, one per generated step.
        text: The response text the mentions' offsets refer to.
        mentions: The evaluator's mentions of that text.
    """
    result = TokenLabels.empty(len(tokens))
    index = _StepIndex(tokens, text)
    for m_index, mention in enumerate(mentions):
        steps = index.steps(mention.start, mention.end)
        for position, step in enumerate(steps):
            current = result.labels[step]
            if current is not None and LABEL_PRIORITY[current] >= LABEL_PRIORITY[mention.label]:
                continue
            result.labels[step] = mention.label
            result.objects[step] = mention.object
            result.mention[step] = m_index
            result.first[step] = position == 0
    return result
