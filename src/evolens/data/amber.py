"""AMBER (Wang et al., 2023): an LLM-free hallucination benchmark — generative descriptions and yes/no questions.

Files, as in AMBER's repository (``data/``)::

    query/query_generative.json     [{"id": 1, "image": "AMBER_1.jpg", "query": "Describe this image."}, ...]
    query/query_discriminative*.json, query_all.json   the same form, ids >= 1005
    annotations.json                one entry per id, in id order (AMBER indexes it by ``id - 1``):
                                    {"id": 1, "type": "generative", "truth": [objects], "hallu": [objects]}
                                    {"id": 1005, "type": "discriminative-...", "truth": "yes" | "no"}
                                    (evolens reads an optional "prior": "yes" | "no" too — the answer a language
                                    prior suggests instead of the truth; not AMBER's, kept on the item — and an
                                    optional "atypical": true | false, the image's group, as the toy writes it)
    relation.json                   {object: [related words]} — the object vocabulary and its near-synonyms
    safe_words.txt                  words never counted as hallucinations, one per line
    image/AMBER_1.jpg ...           the images (downloaded separately)
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

from evolens.data.items import (
    DataItem,
    Dataset,
    ReaderOption,
    absolute_str,
    prompt_of,
    read_json,
    require_dir,
    require_file,
    resolve_inside,
)
from evolens.errors import DatasetError

GENERATIVE = "amber-generative"
DISCRIMINATIVE = "amber-discriminative"
QUERIES, IMAGES = "query_generative.json", "image"
ANNOTATIONS, RELATION, SAFE_WORDS = "annotations.json", "relation.json", "safe_words.txt"

#: AMBER's discriminative types and the dimension each is reported under (as AMBER's inference.py groups them;
#: any other type — "discriminative-relation" and "relation" in the released file — counts as relation).
DIMENSIONS = {
    "discriminative-hallucination": "existence",
    "discriminative-attribute-state": "attribute",
    "discriminative-attribute-number": "attribute",
    "discriminative-attribute-action": "attribute",
}


def _atypical(entry: dict[str, Any], at: str) -> dict[str, bool]:
    """The entry's optional ``atypical`` flag (not AMBER's: the toy's image group), checked, as item annotations."""
    if "atypical" not in entry:
        return {}
    if not isinstance(entry["atypical"], bool):
        raise DatasetError(f"{at}: 'atypical' must be true or false, got {entry['atypical']!r}")
    return {"atypical": entry["atypical"]}


def dimension_of(annotation_type: str) -> str:
    """``"existence"``, ``"attribute"`` or ``"relation"`` for an AMBER discriminative type."""
    return DIMENSIONS.get(annotation_type, "relation")


class Amber(Dataset):
    """AMBER's queries with their annotations.

    Args:
        root: AMBER's ``data`` folder (holding ``annotations.json``, ``relation.json``, ``safe_words.txt`` and
            ``query/``).
        queries: The query file: a name looked up in ``root/query`` then ``root``, or a path
            (``query_generative.json`` by default; ``query_all.json`` mixes both tasks).
        images: The image folder, relative to ``root`` or absolute (``root/image`` by default); query images are
            resolved inside it.
        annotations, relation, safe_words: The other files, relative to ``root`` or absolute.
        prompt: Send this prompt instead of each query's own (e.g. the paper's "Please describe this image in
            detail.").
    """

    name = "amber"
    options = (
        ReaderOption("queries", Path, "query file: a name in ROOT/query or ROOT, or a path", default=QUERIES),
        ReaderOption("images", Path, "image folder, relative to ROOT or absolute", default=IMAGES),
        ReaderOption(
            "annotations", Path, "annotation file, relative to ROOT or absolute", default=ANNOTATIONS
        ),
        ReaderOption("relation", Path, "relation.json, relative to ROOT or absolute", default=RELATION),
        ReaderOption("safe_words", Path, "safe-word list, relative to ROOT or absolute", default=SAFE_WORDS),
        ReaderOption("prompt", str, "send this prompt instead of each query's own"),
    )
    evaluators = (GENERATIVE, DISCRIMINATIVE)
    annotation_keys = MappingProxyType(
        {
            "task": f"{GENERATIVE!r} (a description) or {DISCRIMINATIVE!r} (a yes/no question)",
            "amber_id": "AMBER's id of the query",
            "truth": "generative: the objects in the image; discriminative: the right answer, 'yes' or 'no'",
            "hallu": "generative: the objects that would be hallucinations",
            "type": "discriminative: AMBER's question type ('discriminative-attribute-state' ...)",
            "dimension": "discriminative: existence, attribute or relation",
            "prior": "discriminative, when given: the answer a language prior suggests",
            "atypical": "when given: whether the image is an atypical one (the built-in toy's groups)",
        }
    )

    def __init__(
        self,
        root: str | Path,
        queries: str | Path = QUERIES,
        *,
        images: str | Path = IMAGES,
        annotations: str | Path = ANNOTATIONS,
        relation: str | Path = RELATION,
        safe_words: str | Path = SAFE_WORDS,
        prompt: str | None = None,
    ) -> None:
        self.root = require_dir(Path(root).expanduser(), "AMBER data folder")
        self.queries_path = self._find_queries(Path(queries).expanduser())
        self.images = require_dir(self.root / Path(images).expanduser(), "AMBER image folder")
        self.annotations_path = require_file(self.root / Path(annotations).expanduser(), "AMBER annotations")
        self.relation_path = require_file(self.root / Path(relation).expanduser(), "AMBER relation file")
        self.safe_words_path = require_file(self.root / Path(safe_words).expanduser(), "AMBER safe-word list")
        self.prompt = prompt_of(prompt, "the AMBER prompt") if prompt is not None else None

    def _find_queries(self, queries: Path) -> Path:
        for candidate in (self.root / "query" / queries, self.root / queries):
            if candidate.is_file():
                return candidate
        raise DatasetError(
            f"AMBER query file {queries} not found in {self.root / 'query'} or {self.root}; give a name such as "
            "query_generative.json or a path"
        )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "root": absolute_str(self.root),
            "queries": absolute_str(self.queries_path),
            "images": absolute_str(self.images),
            "prompt": self.prompt,
        }

    # ------------------------------------------------------------------ files
    @cached_property
    def relation(self) -> dict[str, list[str]]:
        """``relation.json``: each object of AMBER's vocabulary and its related words."""
        data = read_json(self.relation_path, "AMBER relation file")
        if not isinstance(data, dict):
            raise DatasetError(f"{self.relation_path}: expected an object {{word: [related words]}}")
        for word, related in data.items():
            if not isinstance(related, list) or not all(isinstance(r, str) for r in related):
                raise DatasetError(
                    f"{self.relation_path}, entry {word!r}: expected a list of words, got {related!r}"
                )
        return {str(k): list(v) for k, v in data.items()}

    @cached_property
    def safe_words(self) -> list[str]:
        """``safe_words.txt``: words AMBER never counts as hallucinated."""
        try:
            lines = self.safe_words_path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise DatasetError(f"cannot read {self.safe_words_path}: {err}") from None
        return [line.strip() for line in lines if line.strip()]

    @cached_property
    def _annotations(self) -> list[Any]:
        return list(
            read_json(self.annotations_path, "AMBER annotations", list_of="entries indexed by id - 1")
        )

    @cached_property
    def _queries(self) -> list[Any]:
        return list(read_json(self.queries_path, "AMBER query file", list_of="{id, image, query} entries"))

    def resources(self) -> dict[str, Any]:
        return {"relation": self.relation, "safe_words": self.safe_words}

    # ------------------------------------------------------------------ items
    def _annotation(self, amber_id: int, where: str) -> dict[str, Any]:
        annotations = self._annotations
        if not 1 <= amber_id <= len(annotations):
            raise DatasetError(
                f"{where}: id {amber_id} has no annotation ({self.annotations_path} has {len(annotations)} entries, "
                "indexed by id - 1)"
            )
        entry = annotations[amber_id - 1]
        at = f"{self.annotations_path}, entry {amber_id - 1}"
        if not isinstance(entry, dict) or entry.get("id") != amber_id:
            found = entry.get("id") if isinstance(entry, dict) else entry
            raise DatasetError(
                f"{at}: expected the annotation of id {amber_id} (AMBER indexes by id - 1), found {found!r}"
            )
        kind = entry.get("type")
        if kind == "generative":
            lists = {}
            for key in ("truth", "hallu"):
                words = entry.get(key)
                if not isinstance(words, list) or not all(isinstance(w, str) and w for w in words):
                    raise DatasetError(f"{at}: {key!r} must be a list of object words, got {words!r}")
                unknown = [w for w in words if w not in self.relation]
                if unknown:
                    raise DatasetError(
                        f"{at}: {key} object(s) {unknown} are not in {self.relation_path} (AMBER's evaluation "
                        "looks every annotated object up there)"
                    )
                lists[key] = list(words)
            return {"task": GENERATIVE, "amber_id": amber_id, **lists, **_atypical(entry, at)}
        if isinstance(kind, str) and (kind.startswith("discriminative") or kind == "relation"):
            truth = entry.get("truth")
            if truth not in ("yes", "no"):
                raise DatasetError(f"{at}: a discriminative truth must be 'yes' or 'no', got {truth!r}")
            prior = entry.get("prior")
            if prior is not None and prior not in ("yes", "no"):
                raise DatasetError(
                    f"{at}: 'prior' (the answer a language prior suggests) must be 'yes' or 'no', got {prior!r}"
                )
            return {
                "task": DISCRIMINATIVE,
                "amber_id": amber_id,
                "type": kind,
                "dimension": dimension_of(kind),
                "truth": truth,
                **({"prior": prior} if prior is not None else {}),
                **_atypical(entry, at),
            }
        raise DatasetError(
            f"{at}: unknown annotation type {kind!r} (expected 'generative' or 'discriminative-...')"
        )

    def __iter__(self) -> Iterator[DataItem]:
        seen: set[int] = set()
        for index, entry in enumerate(self._queries):
            where = f"{self.queries_path}, entry {index}"
            if not isinstance(entry, dict):
                raise DatasetError(
                    f"{where}: expected an object {{id, image, query}}, got {type(entry).__name__}"
                )
            missing = [k for k in ("id", "image", "query") if k not in entry]
            if missing:
                raise DatasetError(f"{where}: missing {', '.join(repr(m) for m in missing)}")
            amber_id = entry["id"]
            if isinstance(amber_id, bool) or not isinstance(amber_id, int) or amber_id < 1:
                raise DatasetError(f"{where}: 'id' must be a positive integer, got {amber_id!r}")
            if amber_id in seen:
                raise DatasetError(f"{where}: duplicate id {amber_id}")
            seen.add(amber_id)
            query = prompt_of(entry["query"], where, "query")
            image = resolve_inside(self.images, entry["image"], where=where)
            annotations = self._annotation(amber_id, where)
            yield DataItem(
                str(amber_id), image, self.prompt or query, annotations, image_ref=str(entry["image"])
            )

    def __len__(self) -> int:
        return len(self._queries)
