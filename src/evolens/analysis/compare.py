"""Comparing generations: token-level diff, similarity score, and hallucination counts against annotations.

Used by the layer-skip experiment (paper Fig. 5); pure functions of token ids and texts.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from evolens.envelope import JsonRecord
from evolens.errors import SettingsError

DiffTag = Literal["equal", "replace", "insert", "delete"]


@dataclass(frozen=True)
class DiffOp(JsonRecord):
    """One operation turning the original token sequence ``a`` into the variant ``b`` (difflib opcodes).

    Attributes:
        tag: ``"equal"``, ``"replace"``, ``"insert"`` or ``"delete"``.
        a_start, a_end: Token range in the original.
        b_start, b_end: Token range in the variant.
        a_tokens: The original's tokens in that range.
        b_tokens: The variant's tokens in that range.
    """

    tag: DiffTag
    a_start: int
    a_end: int
    b_start: int
    b_end: int
    a_tokens: list[str]
    b_tokens: list[str]


def token_diff(
    a_ids: Sequence[int], b_ids: Sequence[int], a_tokens: Sequence[str], b_tokens: Sequence[str]
) -> list[DiffOp]:
    """The token-level diff of two generations (``difflib.SequenceMatcher`` on ids, ``autojunk=False``)."""
    if len(a_ids) != len(a_tokens) or len(b_ids) != len(b_tokens):
        raise SettingsError("each token id sequence needs one display string per id")
    matcher = difflib.SequenceMatcher(None, list(a_ids), list(b_ids), autojunk=False)
    return [
        DiffOp(tag, i1, i2, j1, j2, list(a_tokens[i1:i2]), list(b_tokens[j1:j2]))
        for tag, i1, i2, j1, j2 in matcher.get_opcodes()
    ]


def similarity(a_ids: Sequence[int], b_ids: Sequence[int]) -> float:
    """Token-level similarity in [0, 1]: ``2 M / (|a| + |b|)`` with ``M`` the tokens in the matching blocks of
    ``difflib.SequenceMatcher`` (Ratcliff-Obershelp, ``autojunk=False``). 1 for identical sequences (and for two
    empty ones), 0 when no token matches."""
    if not a_ids and not b_ids:
        return 1.0
    return difflib.SequenceMatcher(None, list(a_ids), list(b_ids), autojunk=False).ratio()


def common_prefix(a_ids: Sequence[int], b_ids: Sequence[int]) -> int:
    """Number of leading tokens the two sequences share (where the variant first departs from the original)."""
    n = 0
    for x, y in zip(a_ids, b_ids, strict=False):
        if x != y:
            break
        n += 1
    return n


@dataclass(frozen=True)
class Annotations:
    """What an image contains, for counting hallucinations in a description (AMBER/CHAIR style).

    Attributes:
        ground_truth: Words or phrases of objects (or attributes) that are in the image.
        hallucination: Words or phrases that would be hallucinations if mentioned.

    Both are matched case-insensitively on word boundaries, with an optional plural ``s``/``es``; words are
    normalised to lower case and stripped. A word may not be in both sets.
    """

    ground_truth: frozenset[str]
    hallucination: frozenset[str]

    def __post_init__(self) -> None:
        for name in ("ground_truth", "hallucination"):
            words = getattr(self, name)
            if isinstance(words, str):
                raise SettingsError(f"{name} must be a collection of words, not one string {words!r}")
            normal = frozenset(_normalise(w) for w in words)
            if "" in normal:
                raise SettingsError(f"{name} contains an empty word")
            object.__setattr__(self, name, normal)
        both = self.ground_truth & self.hallucination
        if both:
            raise SettingsError(f"words in both ground_truth and hallucination: {sorted(both)}")

    @classmethod
    def of(cls, ground_truth: Iterable[str] = (), hallucination: Iterable[str] = ()) -> Annotations:
        return cls(frozenset(ground_truth), frozenset(hallucination))

    def to_dict(self) -> dict[str, Any]:
        return {"ground_truth": sorted(self.ground_truth), "hallucination": sorted(self.hallucination)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Annotations:
        return cls.of(data.get("ground_truth", ()), data.get("hallucination", ()))


@dataclass(frozen=True)
class HallucinationCount(JsonRecord):
    """Annotated words mentioned in one generated text, and how they changed against the original.

    Attributes:
        hallucinated: Distinct hallucination words mentioned, sorted.
        n_hallucinated: Mentions of hallucination words (with repetition).
        correct: Distinct ground-truth words mentioned, sorted.
        n_correct: Mentions of ground-truth words.
        corrected: Hallucination words of the original that this text no longer mentions (Fig. 5 green).
        introduced: Hallucination words this text mentions that the original did not.
    """

    hallucinated: list[str]
    n_hallucinated: int
    correct: list[str]
    n_correct: int
    corrected: list[str]
    introduced: list[str]


def _normalise(word: str) -> str:
    return " ".join(str(word).lower().split())


def mention_spans(text: str, words: Iterable[str]) -> list[tuple[int, int, str]]:
    """Every occurrence of each word or phrase in ``text`` as ``(start, end, word)`` character spans, sorted by
    position: case-insensitive, on word boundaries, plural ``s``/``es`` allowed (inside the span), any whitespace
    between the words of a phrase. ``word`` is the normalised (lower-case) word that matched."""
    haystack, flags = text.lower(), 0
    if len(haystack) != len(text):  # lower() changed the length (rare Unicode): keep offsets into ``text``
        haystack, flags = text, re.IGNORECASE
    spans: list[tuple[int, int, str]] = []
    for word in sorted({_normalise(w) for w in words}):
        if not word:
            continue
        body = r"\s+".join(re.escape(part) for part in word.split())
        pattern = re.compile(rf"(?<!\w){body}(?:s|es)?(?!\w)", flags)
        spans.extend((m.start(), m.end(), word) for m in pattern.finditer(haystack))
    return sorted(spans)


def mentions(text: str, words: Iterable[str]) -> dict[str, int]:
    """Occurrences of each word or phrase in ``text`` (see :func:`mention_spans` for the matching rules). Words not
    mentioned are left out."""
    found: dict[str, int] = {}
    for _, _, word in mention_spans(text, words):
        found[word] = found.get(word, 0) + 1
    return dict(sorted(found.items()))


def count_hallucinations(
    text: str, annotations: Annotations, *, original: str | None = None
) -> HallucinationCount:
    """Count annotated words in ``text``; with ``original``, also which hallucinations were corrected or added."""
    hall = mentions(text, annotations.hallucination)
    good = mentions(text, annotations.ground_truth)
    before = set(mentions(original, annotations.hallucination)) if original is not None else set(hall)
    return HallucinationCount(
        hallucinated=sorted(hall),
        n_hallucinated=sum(hall.values()),
        correct=sorted(good),
        n_correct=sum(good.values()),
        corrected=sorted(before - set(hall)),
        introduced=sorted(set(hall) - before),
    )
