"""What an evaluator says of a response: :class:`Mention` s — character spans of the text with a label.

:mod:`evolens.hallucination.token_labels` maps them onto a trace's generated tokens.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Label = Literal["hallucinated", "grounded", "exempt"]

#: When two mentions claim one token (rare: a token spelling two words), the stronger label wins.
LABEL_PRIORITY = {"hallucinated": 3, "grounded": 2, "exempt": 1}
LABELS: tuple[Label, ...] = ("hallucinated", "grounded", "exempt")


@dataclass(frozen=True)
class Mention:
    """An object word of a response, as an evaluator judged it.

    Attributes:
        start: Offset of its first character in the response text.
        end: Offset after its last character.
        word: The words as written (``text[start:end]``).
        object: The benchmark's object it counts as (AMBER lemma, CHAIR node word, the yes/no answer).
        label: ``"hallucinated"`` (flagged by the benchmark), ``"grounded"`` (an object the benchmark accepts)
            or ``"exempt"`` (a word the benchmark never judges, such as AMBER's safe words).
    """

    start: int
    end: int
    word: str
    object: str
    label: Label

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Mention:
        return cls(
            int(data["start"]), int(data["end"]), str(data["word"]), str(data["object"]), data["label"]
        )
