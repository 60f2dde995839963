"""CHAIR (Rohrbach et al., 2018): object hallucination in captions against MSCOCO's objects.

A caption is lower-cased, split into words (``nltk.word_tokenize``) and each word singularized (pattern 3.6's
``singularize`` under the ``"official"`` protocol, TextBlob's copy of it under ``"evolens"``: they differ on
"airbuses", "collies", "doggies"; see :mod:`evolens.data.singular`). Two-word names are joined first ("hot dog", "teddy bear", "baby elephant" -> "elephant",
"toilet seat" -> "toilet"); "seat" is dropped when "toilet" is present. A word is an object mention when it is in
the synonym list; it counts as the list's node word (its first word). An image's ground-truth objects are the node
words of its instance categories and of the object words of its reference captions. A mention whose node word is
not among them is hallucinated.

* **CHAIRi** = hallucinated mentions / mentions;
* **CHAIRs** = captions with a hallucinated mention / captions;
* **recall** = ground-truth objects mentioned / ground-truth objects (reported by later work; not in CHAIR).

The synonym list is read as CHAIR's ``chair.py`` reads it under ``"official"`` (each line stripped and split on
``", "``: the entries written after a double space, "scooter,  motor bike" and "cake,  cheesecake", keep a leading
space and never match) and with every entry stripped under ``"evolens"`` (they match).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evolens.data.labels import Mention
from evolens.data.protocols import DEFAULT_PROTOCOL, Protocol, check_protocol
from evolens.data.scores import ItemEvaluation, ratio
from evolens.data.singular import pattern_singularize
from evolens.data.text import TextTools, singularize
from evolens.envelope import JsonRecord

logger = logging.getLogger(__name__)

#: Two-word object names CHAIR joins before looking words up.
DOUBLE_WORDS = (
    "motor bike",
    "motor cycle",
    "air plane",
    "traffic light",
    "street light",
    "traffic signal",
    "stop light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "suit case",
    "sports ball",
    "baseball bat",
    "baseball glove",
    "tennis racket",
    "wine glass",
    "hot dog",
    "cell phone",
    "mobile phone",
    "teddy bear",
    "hair drier",
    "potted plant",
    "bow tie",
    "laptop computer",
    "stove top oven",
    "home plate",
    "train track",
)
ANIMAL_WORDS = (
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "animal",
    "cub",
)
VEHICLE_WORDS = ("jet", "train")


def double_word_map() -> dict[str, str]:
    """CHAIR's two-word table: each joined pair and what it counts as."""
    table = {w: w for w in DOUBLE_WORDS}
    for animal in ANIMAL_WORDS:
        table[f"baby {animal}"] = animal
        table[f"adult {animal}"] = animal
    for vehicle in VEHICLE_WORDS:
        table[f"passenger {vehicle}"] = vehicle
    table["bow tie"] = "tie"
    table["toilet seat"] = "toilet"
    table["wine glas"] = "wine glass"  # pattern singularizes "glass" to "glas"
    return table


def official_synonym_groups(lines: Iterable[str]) -> list[list[str]]:
    """``synonyms.txt`` as CHAIR's ``chair.py`` parses it: each line stripped, then split on ``", "`` — an entry
    after a double space keeps its leading space (blank lines are skipped; CHAIR's would map "" to "")."""
    return [line.strip().split(", ") for line in lines if line.strip()]


def synonym_groups(resources: Mapping[str, Any], protocol: Protocol) -> list[list[str]] | None:
    """The synonym groups of a dataset's evaluation resources under ``protocol``.

    ``"official"`` parses the raw lines (``resources["synonym_lines"]``) as CHAIR does; without them (resources
    stored before evolens kept them) it uses the stripped groups and says so in the log.
    """
    groups = resources.get("synonyms")
    if protocol != "official" or not groups:
        return groups
    lines = resources.get("synonym_lines")
    if lines is None:
        logger.warning(
            "CHAIR: the synonym list's raw lines are not among the resources; its entries are read stripped, so "
            "those after a double space match, which CHAIR's own parser does not do"
        )
        return groups
    return official_synonym_groups(lines)


@dataclass(frozen=True)
class ChairScores(JsonRecord):
    """CHAIR over a set of captions.

    Attributes:
        n_captions, n_hallucinated_captions: Captions, and those with a hallucinated mention.
        n_mentions, n_hallucinated_mentions: Object mentions, and the hallucinated ones.
        gt_objects, gt_mentioned: Ground-truth objects over all images, and those the captions mention.
        chair_i: ``n_hallucinated_mentions / n_mentions``.
        chair_s: ``n_hallucinated_captions / n_captions``.
        recall: ``gt_mentioned / gt_objects``.
        synonyms: ``"chair"`` (CHAIR's synonym list) or ``"categories"`` (category names only; see
            :class:`~evolens.data.coco.Coco`).
    """

    n_captions: int
    n_hallucinated_captions: int
    n_mentions: int
    n_hallucinated_mentions: int
    gt_objects: int
    gt_mentioned: int
    chair_i: float | None
    chair_s: float | None
    recall: float | None
    synonyms: str

    @classmethod
    def from_items(cls, items: Sequence[ItemEvaluation], synonyms: str) -> ChairScores:
        def total(key: str) -> int:
            return sum((it.counts or {}).get(key, 0) for it in items)

        n_hal = sum(it.hallucinated for it in items)
        return cls(
            n_captions=len(items),
            n_hallucinated_captions=n_hal,
            n_mentions=total("mentions"),
            n_hallucinated_mentions=total("hallucinated"),
            gt_objects=total("gt_objects"),
            gt_mentioned=total("gt_mentioned"),
            chair_i=ratio(total("hallucinated"), total("mentions")),
            chair_s=ratio(n_hal, len(items)),
            recall=ratio(total("gt_mentioned"), total("gt_objects")),
            synonyms=synonyms,
        )


class ChairJudge:
    """CHAIR's caption judgement.

    Args:
        synonyms: CHAIR's synonym groups (node word first), or ``None`` to use ``categories`` alone.
        categories: COCO category names (used when ``synonyms`` is ``None``).
        tools: Text tools (the sentence splitter is the only part with an exact/fallback choice).
        protocol: ``"official"`` singularizes with pattern 3.6, ``"evolens"`` with TextBlob's copy; the synonym
            groups are taken as given (:func:`synonym_groups` reads them under a protocol).
    """

    def __init__(
        self,
        synonyms: Sequence[Sequence[str]] | None,
        categories: Iterable[str],
        tools: TextTools,
        *,
        protocol: Protocol = DEFAULT_PROTOCOL,
    ) -> None:
        self.protocol = check_protocol(protocol)
        self._singularize = pattern_singularize if self.protocol == "official" else singularize
        groups = [list(g) for g in synonyms] if synonyms else [[c] for c in categories]
        self.source = "chair" if synonyms else "categories"
        self.node_of: dict[str, str] = {}
        for group in groups:
            for word in group:
                self.node_of[word] = group[0]
        for category in categories:  # instance names must map to a node word even if the list misses one
            self.node_of.setdefault(category, category)
        self.double = double_word_map()
        self.tools = tools

    def object_words(self, caption: str) -> list[tuple[str, str, int, int]]:
        """``(word, node_word, start, end)`` of every object mention of ``caption``, in order."""
        lowered = caption.lower()
        spans_ok = len(lowered) == len(caption)
        words = self.tools.words(lowered)
        singular = [self._singularize(w.text) for w in words]
        joined: list[tuple[str, int, int]] = []
        i = 0
        while i < len(words):
            pair = " ".join(singular[i : i + 2])
            if i + 1 < len(words) and pair in self.double:
                joined.append((self.double[pair], words[i].start, words[i + 1].end))
                i += 2
            else:
                joined.append((singular[i], words[i].start, words[i].end))
                i += 1
        names = [w for w, _, _ in joined]
        if "toilet" in names and "seat" in names:
            joined = [j for j in joined if j[0] != "seat"]
        return [
            (w, self.node_of[w], s if spans_ok else -1, e if spans_ok else -1)
            for w, s, e in joined
            if w in self.node_of
        ]

    def ground_truth(self, instance_objects: Sequence[str], reference_captions: Sequence[str]) -> set[str]:
        """Node words of an image's instance categories and of its reference captions' object words."""
        truth = {self.node_of.get(name, name) for name in instance_objects}
        for caption in reference_captions:
            truth.update(node for _, node, _, _ in self.object_words(caption))
        return truth

    def judge(
        self, item_id: str, text: str, instance_objects: Sequence[str], reference_captions: Sequence[str]
    ) -> ItemEvaluation:
        truth = self.ground_truth(instance_objects, reference_captions)
        found = self.object_words(text)
        mentions = tuple(
            Mention(start, end, text[start:end], node, "grounded" if node in truth else "hallucinated")
            for _word, node, start, end in found
            if start >= 0
        )
        n_hal = sum(node not in truth for _, node, _, _ in found)
        mentioned = {node for _, node, _, _ in found}
        return ItemEvaluation(
            item_id=item_id,
            task="chair",
            text=text,
            mentions=mentions,
            hallucinated=n_hal > 0,
            counts={
                "mentions": len(found),
                "hallucinated": n_hal,
                "gt_objects": len(truth),
                "gt_mentioned": len(truth & mentioned),
            },
        )


_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s|$)")


def drop_unfinished_sentence(caption: str) -> str:
    """``caption`` without an unfinished last sentence: cut after the last ``.``, ``!`` or ``?`` that ends a sentence
    (closing quotes and brackets kept), so that an object a caption cut by ``max_new_tokens`` was still naming is
    not judged (OPERA's practice before CHAIR). A caption with no finished sentence, or whose last one is finished,
    is returned as it is.

    >>> drop_unfinished_sentence("A dog on a sofa. A cat sits next to a")
    'A dog on a sofa.'
    >>> drop_unfinished_sentence("A dog on a sofa.")
    'A dog on a sofa.'
    >>> drop_unfinished_sentence("A dog on a")
    'A dog on a'
    """
    ends = list(_SENTENCE_END.finditer(caption))
    if not ends or not caption[ends[-1].end() :].strip():
        return caption
    return caption[: ends[-1].end()]
