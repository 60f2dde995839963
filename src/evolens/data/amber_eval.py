"""AMBER's metrics, computed the way its ``inference.py`` computes them.

Generative task, per response:

1. Nouns: the words tagged ``NN*``, lemmatized as nouns (case kept: AMBER's code does not lower-case, so a
   capitalised "Dogs" is not matched), kept only if in AMBER's vocabulary (every key and related word of
   ``relation.json``).
2. Each noun, in order: a safe word (``safe_words.txt``) is skipped (counted, never flagged). A noun among the
   image's truth objects or their related words is grounded and marks that truth object covered. Otherwise it marks
   the annotated hallucination target it equals or relates to (for Cog), then — with spaCy vectors — any target it
   is similar to (> 0.8), and is grounded if it is similar to a truth object or related word (marking it covered);
   if not, it is **flagged** as a hallucination.

Scores over responses (AMBER prints them × 100, one decimal):

* **CHAIR** = flagged nouns / counted nouns;
* **Cover** = covered truth objects / truth objects;
* **Hal** = share of responses with at least one flagged noun;
* **Cog** = annotated hallucination targets mentioned / hallucination targets.

Discriminative task: accuracy, and precision / recall / F1 of "No" answers, overall and per dimension
(existence, attribute, relation). The answer is the response itself when it is exactly ``Yes`` or ``No`` (protocol
``"official"``, as AMBER's script) or its first word (``"evolens"``); see :mod:`evolens.data.protocols`. AMBER's
script adds 0.001 to every denominator and rounds precision and recall before F1; evolens stores exact ratios
(``None`` when nothing was counted) and prints AMBER's rounding with :mod:`evolens.data.official_format`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evolens.data.labels import Label, Mention
from evolens.data.protocols import DEFAULT_PROTOCOL, Protocol, check_protocol
from evolens.data.scores import BinaryScores, ItemEvaluation, exact_answer, first_word_answer, ratio
from evolens.data.text import TextTools
from evolens.envelope import JsonRecord
from evolens.errors import DatasetError

SIMILARITY_THRESHOLD = 0.8


@dataclass(frozen=True)
class AmberGenerativeScores(JsonRecord):
    """AMBER's generative metrics (fractions in [0, 1]; AMBER prints them as percentages).

    Attributes:
        n_responses: Responses evaluated.
        n_mentions: Counted object nouns (safe words included, as AMBER counts them).
        n_flagged: Nouns flagged as hallucinated.
        n_hallucinated_responses: Responses with at least one flagged noun.
        cover_hits, cover_total: Truth objects mentioned / annotated.
        cog_hits, cog_total: Hallucination targets mentioned / annotated.
        chair: ``n_flagged / n_mentions``.
        cover: ``cover_hits / cover_total``.
        hal: ``n_hallucinated_responses / n_responses``.
        cog: ``cog_hits / cog_total``.
    """

    n_responses: int
    n_mentions: int
    n_flagged: int
    n_hallucinated_responses: int
    cover_hits: int
    cover_total: int
    cog_hits: int
    cog_total: int
    chair: float | None
    cover: float | None
    hal: float | None
    cog: float | None

    @classmethod
    def from_items(cls, items: Sequence[ItemEvaluation]) -> AmberGenerativeScores:
        def total(key: str) -> int:
            return sum((it.counts or {}).get(key, 0) for it in items)

        n_hal = sum(it.hallucinated for it in items)
        return cls(
            n_responses=len(items),
            n_mentions=total("mentions"),
            n_flagged=total("flagged"),
            n_hallucinated_responses=n_hal,
            cover_hits=total("cover_hits"),
            cover_total=total("cover_total"),
            cog_hits=total("cog_hits"),
            cog_total=total("cog_total"),
            chair=ratio(total("flagged"), total("mentions")),
            cover=ratio(total("cover_hits"), total("cover_total")),
            hal=ratio(n_hal, len(items)),
            cog=ratio(total("cog_hits"), total("cog_total")),
        )


@dataclass(frozen=True)
class AmberDiscriminativeScores:
    """AMBER's discriminative metrics ("No" is the positive class, as in AMBER's script).

    Attributes:
        overall: Every question.
        existence, attribute, relation: AMBER's three dimensions (``None`` when absent).
        attribute_state, attribute_number, attribute_action: The attribute sub-types.
    """

    overall: BinaryScores
    existence: BinaryScores | None
    attribute: BinaryScores | None
    relation: BinaryScores | None
    attribute_state: BinaryScores | None
    attribute_number: BinaryScores | None
    attribute_action: BinaryScores | None

    @classmethod
    def from_items(cls, items: Sequence[ItemEvaluation], types: Sequence[str]) -> AmberDiscriminativeScores:
        from evolens.data.amber import dimension_of

        def scores(selected: list[int]) -> BinaryScores | None:
            if not selected:
                return None
            return BinaryScores.from_answers(
                [items[i].answer for i in selected], [str(items[i].truth) for i in selected], positive="no"
            )

        everything = list(range(len(items)))
        overall = scores(everything)
        assert overall is not None or not items
        return cls(
            overall=overall or BinaryScores.from_answers([], [], positive="no"),
            existence=scores([i for i in everything if dimension_of(types[i]) == "existence"]),
            attribute=scores([i for i in everything if dimension_of(types[i]) == "attribute"]),
            relation=scores([i for i in everything if dimension_of(types[i]) == "relation"]),
            attribute_state=scores([i for i in everything if types[i] == "discriminative-attribute-state"]),
            attribute_number=scores([i for i in everything if types[i] == "discriminative-attribute-number"]),
            attribute_action=scores([i for i in everything if types[i] == "discriminative-attribute-action"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            k: (getattr(self, k).to_dict() if getattr(self, k) else None) for k in self.__dataclass_fields__
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AmberDiscriminativeScores:
        def part(key: str) -> BinaryScores | None:
            return BinaryScores.from_dict(data[key]) if data.get(key) else None

        return cls(
            overall=BinaryScores.from_dict(data["overall"]),
            existence=part("existence"),
            attribute=part("attribute"),
            relation=part("relation"),
            attribute_state=part("attribute_state"),
            attribute_number=part("attribute_number"),
            attribute_action=part("attribute_action"),
        )


class AmberJudge:
    """AMBER's generative judgement of responses, with a fixed vocabulary and text tools.

    Args:
        relation: ``relation.json`` (object -> related words).
        safe_words: ``safe_words.txt``.
        tools: Text tools (exact or fallback).
        threshold: spaCy similarity above which two words count as the same (AMBER: 0.8).
        protocol: ``"official"`` or ``"evolens"``: both judge as AMBER's ``inference.py`` does (the generative
            rules have nothing evolens reads differently); checked and kept so every benchmark takes one.
    """

    def __init__(
        self,
        relation: dict[str, list[str]],
        safe_words: Sequence[str],
        tools: TextTools,
        *,
        threshold: float = SIMILARITY_THRESHOLD,
        protocol: Protocol = DEFAULT_PROTOCOL,
    ) -> None:
        self.protocol = check_protocol(protocol)
        self.relation = relation
        self.vocabulary = set(relation) | {w for related in relation.values() for w in related}
        self.safe_words = set(safe_words)
        self.tools = tools
        self.threshold = threshold

    def nouns(self, text: str) -> list[tuple[str, int, int]]:
        """``(lemma, start, end)`` of the response's nouns that are in AMBER's vocabulary."""
        found = []
        for word in self.tools.tagged(text):
            if word.tag is not None and word.tag.startswith("NN"):
                lemma = self.tools.noun_lemma(word.text, self.vocabulary)
                if lemma in self.vocabulary:
                    found.append((lemma, word.start, word.end))
        return found

    def _similar(self, a: str, b: str) -> bool:
        value = self.tools.similarity(a, b)
        return value is not None and value > self.threshold

    def _expand(self, objects: Sequence[str], where: str) -> tuple[list[str], list[int], int]:
        words: list[str] = []
        owners: list[int] = []
        for idx, obj in enumerate(objects):
            if obj not in self.relation:
                raise DatasetError(f"{where}: object {obj!r} is not in AMBER's relation.json")
            words += self.relation[obj]
            owners += [idx] * len(self.relation[obj])
        return words + list(objects), owners + [0] * len(objects), len(objects)

    def judge(self, item_id: str, text: str, truth: Sequence[str], hallu: Sequence[str]) -> ItemEvaluation:
        """Judge one response (see the module docstring)."""
        where = f"item {item_id}"
        safe_words, safe_list, safe_len = self._expand(truth, where)
        ha_words, ha_list, ha_len = self._expand(hallu, where)

        def mark(flags: list[int], words_len: int, j: int) -> None:
            # AMBER's bookkeeping: a related word (j before the tail) marks the object that owns it.
            if j < len(flags) - words_len:
                flags[flags[j] + len(flags) - words_len] = 1
            else:
                flags[j] = 1

        mentions: list[Mention] = []
        n_flagged = 0
        for lemma, start, end in self.nouns(text):
            label: Label
            if lemma in self.safe_words:
                label = "exempt"
            elif lemma in safe_words:
                mark(safe_list, safe_len, safe_words.index(lemma))
                label = "grounded"
            else:
                if lemma in ha_words:
                    mark(ha_list, ha_len, ha_words.index(lemma))
                for j, other in enumerate(ha_words):
                    if self._similar(lemma, other):
                        mark(ha_list, ha_len, j)
                        break
                label = "hallucinated"
                for j, other in enumerate(safe_words):
                    if self._similar(lemma, other):
                        mark(safe_list, safe_len, j)
                        label = "grounded"
                        break
            n_flagged += label == "hallucinated"
            mentions.append(Mention(start, end, text[start:end], lemma, label))
        cover_hits = sum(safe_list[len(safe_list) - safe_len :]) if safe_len else 0
        cog_hits = sum(ha_list[len(ha_list) - ha_len :]) if ha_len else 0
        return ItemEvaluation(
            item_id=item_id,
            task="amber-generative",
            text=text,
            mentions=tuple(mentions),
            hallucinated=n_flagged > 0,
            counts={
                "mentions": len(mentions),
                "flagged": n_flagged,
                "cover_hits": cover_hits,
                "cover_total": safe_len,
                "cog_hits": cog_hits,
                "cog_total": ha_len,
            },
        )


def judge_discriminative(
    item_id: str, text: str, truth: str, *, protocol: Protocol = DEFAULT_PROTOCOL
) -> ItemEvaluation:
    """One AMBER yes/no answer against the truth; the answer word is the mention.

    ``protocol="official"`` counts only a response that is exactly ``Yes`` or ``No`` (AMBER's ``inference.py``);
    ``"evolens"`` reads the response's first word, in any case (``"Yes, there is."``, ``"NO"``).
    """
    official = check_protocol(protocol) == "official"
    answer, span = exact_answer(text) if official else first_word_answer(text)
    mentions: tuple[Mention, ...] = ()
    wrong = answer != truth
    if answer is not None and span is not None:
        mentions = (
            Mention(
                span[0], span[1], text[span[0] : span[1]], answer, "hallucinated" if wrong else "grounded"
            ),
        )
    return ItemEvaluation(
        item_id=item_id,
        task="amber-discriminative",
        text=text,
        mentions=mentions,
        hallucinated=wrong,
        answer=answer,
        truth=truth,
    )
