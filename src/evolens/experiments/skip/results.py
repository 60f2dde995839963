"""Results of the layer-skip experiment (paper Fig. 5): each variant compared with the original, per item and
summed up over items; saved as ``skip.json``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from evolens.analysis.compare import (
    Annotations,
    DiffOp,
    HallucinationCount,
    common_prefix,
    count_hallucinations,
    similarity,
    token_diff,
)
from evolens.analysis.io import JsonResult, clean_json
from evolens.analysis.layers import ItemLayers
from evolens.errors import SettingsError
from evolens.experiments.skip.generate import Generation

KIND = "evolens.skip_report"
DEFAULT_NAME = "skip.json"
ORIGINAL = "original"


@dataclass(frozen=True)
class VariantOutput:
    """One generation of an item: the original or a skip variant, compared with the original.

    Attributes:
        name: ``"original"``, a preset (``"skip1"``, ``"skip2"``, ``"skip3"``) or a user-given name.
        skipped: The skipped decoder layers (1-based), empty for the original.
        text: The generated text.
        tokens: Display strings of the generated tokens (EOS left out).
        token_ids: Their ids.
        stop_reason: ``"eos"`` or ``"max_new_tokens"``.
        similarity: :func:`~evolens.analysis.compare.similarity` with the original's tokens (1 for the original).
        common_prefix: Leading tokens shared with the original.
        diff: Token-level diff from the original (empty for the original).
        hallucination: Annotated words counted in ``text`` (``None`` without annotations).
        ran: ``False`` when the skip set was empty and the original was reused instead of generating again.
    """

    name: str
    skipped: tuple[int, ...]
    text: str
    tokens: list[str]
    token_ids: list[int]
    stop_reason: str
    similarity: float
    common_prefix: int
    diff: list[DiffOp]
    hallucination: HallucinationCount | None
    ran: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "skipped": list(self.skipped),
            "text": self.text,
            "tokens": list(self.tokens),
            "token_ids": list(self.token_ids),
            "stop_reason": self.stop_reason,
            "similarity": self.similarity,
            "common_prefix": self.common_prefix,
            "diff": [d.to_dict() for d in self.diff],
            "hallucination": self.hallucination.to_dict() if self.hallucination is not None else None,
            "ran": self.ran,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VariantOutput:
        return cls(
            name=str(data["name"]),
            skipped=tuple(int(x) for x in data["skipped"]),
            text=str(data["text"]),
            tokens=[str(t) for t in data["tokens"]],
            token_ids=[int(i) for i in data["token_ids"]],
            stop_reason=str(data["stop_reason"]),
            similarity=float(data["similarity"]),
            common_prefix=int(data["common_prefix"]),
            diff=[DiffOp.from_dict(d) for d in data["diff"]],
            hallucination=HallucinationCount.from_dict(data["hallucination"])
            if data.get("hallucination")
            else None,
            ran=bool(data.get("ran", True)),
        )


@dataclass(frozen=True)
class SkipResult:
    """One item of the layer-skip experiment: a row of the paper's Fig. 5.

    Attributes:
        item_id: The item.
        prompt: The prompt.
        image: Where the image came from (path or description), ``None`` for text-only.
        n_layers: Decoder layers L.
        method: ``"hook"`` or ``"rebuild"``.
        layers: The item's critical and mutation layers the presets were derived from (``None`` when only
            explicit skip sets were given).
        variants: The original first, then each variant in the order asked for.
        annotations: The item's annotations, if any.
    """

    item_id: str
    prompt: str
    image: str | None
    n_layers: int
    method: str
    layers: ItemLayers | None
    variants: list[VariantOutput]
    annotations: Annotations | None = None

    def variant(self, name: str) -> VariantOutput:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"no variant {name!r}; have {[v.name for v in self.variants]}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "prompt": self.prompt,
            "image": self.image,
            "n_layers": self.n_layers,
            "method": self.method,
            "layers": self.layers.to_dict() if self.layers is not None else None,
            "variants": [v.to_dict() for v in self.variants],
            "annotations": self.annotations.to_dict() if self.annotations is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SkipResult:
        return cls(
            item_id=str(data["item_id"]),
            prompt=str(data["prompt"]),
            image=data.get("image"),
            n_layers=int(data["n_layers"]),
            method=str(data["method"]),
            layers=ItemLayers.from_dict(data["layers"]) if data.get("layers") else None,
            variants=[VariantOutput.from_dict(v) for v in data["variants"]],
            annotations=Annotations.from_dict(data["annotations"]) if data.get("annotations") else None,
        )


@dataclass(frozen=True)
class VariantSummary:
    """One variant over every item (a column of the Fig. 5 table, summed up).

    Attributes:
        name: The variant.
        n_items: Items where it ran (a non-empty skip set).
        mean_similarity: Mean similarity with the original over those items.
        mean_common_prefix: Mean shared prefix, tokens.
        n_hallucinated: Hallucination mentions in total (items with annotations).
        n_correct: Ground-truth mentions in total.
        n_corrected: Original hallucination words no longer mentioned, in total.
        n_introduced: New hallucination words, in total.
    """

    name: str
    n_items: int
    mean_similarity: float
    mean_common_prefix: float
    n_hallucinated: int
    n_correct: int
    n_corrected: int
    n_introduced: int

    def to_dict(self) -> dict[str, Any]:
        """Plain dict; the means are ``None`` (not NaN) when the variant ran nowhere."""
        return clean_json({k: getattr(self, k) for k in self.__dataclass_fields__})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VariantSummary:
        values = {k: data[k] for k in cls.__dataclass_fields__}
        for key in ("mean_similarity", "mean_common_prefix"):
            values[key] = float("nan") if values[key] is None else float(values[key])
        return cls(**values)


@dataclass(frozen=True)
class SkipReport(JsonResult):
    """The layer-skip experiment over several items; saved as ``skip.json`` (:meth:`save`, :meth:`load`).

    Attributes:
        results: One :class:`SkipResult` per item, in input order.
        summary: One :class:`VariantSummary` per variant (the original included).
        settings: How it ran: method, presets, keep_last, generation settings, detector parameters.
    """

    result_kind: ClassVar[str] = KIND
    default_name: ClassVar[str] = DEFAULT_NAME

    results: list[SkipResult]
    summary: list[VariantSummary]
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "results": [r.to_dict() for r in self.results],
            "summary": [s.to_dict() for s in self.summary],
            "settings": dict(self.settings),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SkipReport:
        return cls(
            [SkipResult.from_dict(r) for r in data["results"]],
            [VariantSummary.from_dict(s) for s in data["summary"]],
            dict(data["settings"]),
        )


def compare_variant(
    name: str,
    skip: tuple[int, ...],
    gen: Generation,
    original: Generation,
    annotations: Annotations | None,
    *,
    ran: bool,
) -> VariantOutput:
    """``gen`` as variant ``name`` of an item (``skip`` skipped, ``ran`` when it was generated): its similarity,
    shared prefix and token diff against ``original``, and the annotated words it mentions."""
    is_original = name == ORIGINAL
    return VariantOutput(
        name=name,
        skipped=skip,
        text=gen.text,
        tokens=list(gen.tokens),
        token_ids=list(gen.token_ids),
        stop_reason=gen.stop_reason,
        similarity=similarity(original.token_ids, gen.token_ids),
        common_prefix=common_prefix(original.token_ids, gen.token_ids),
        diff=[]
        if is_original
        else token_diff(original.token_ids, gen.token_ids, original.tokens, gen.tokens),
        hallucination=(
            count_hallucinations(gen.text, annotations, original=original.text)
            if annotations is not None
            else None
        ),
        ran=ran,
    )


def compare_variants(
    original: Generation,
    plan: Mapping[str, tuple[int, ...]],
    generated: Mapping[tuple[int, ...], Generation],
    annotations: Annotations | None,
) -> list[VariantOutput]:
    """One item's variants compared with its ``original``: the original first, then one per ``plan`` entry
    (variant name -> skip set) with its generation from ``generated`` (skip set -> generation); an empty skip set
    reuses the original (``ran=False``)."""
    variants = [compare_variant(ORIGINAL, (), original, original, annotations, ran=True)]
    for name, skip in plan.items():
        gen = generated.get(skip, original)
        variants.append(compare_variant(name, skip, gen, original, annotations, ran=bool(skip)))
    return variants


def summarize_variants(results: Sequence[SkipResult]) -> list[VariantSummary]:
    """Per variant name: items where it ran, mean similarity and shared prefix, and hallucination totals."""
    names: list[str] = []
    for result in results:
        for v in result.variants:
            if v.name not in names:
                names.append(v.name)
    out = []
    for name in names:
        ran = [r.variant(name) for r in results if name in {v.name for v in r.variants}]
        ran = [v for v in ran if v.ran]
        counts = [v.hallucination for v in ran if v.hallucination is not None]
        out.append(
            VariantSummary(
                name=name,
                n_items=len(ran),
                mean_similarity=sum(v.similarity for v in ran) / len(ran) if ran else float("nan"),
                mean_common_prefix=sum(v.common_prefix for v in ran) / len(ran) if ran else float("nan"),
                n_hallucinated=sum(c.n_hallucinated for c in counts),
                n_correct=sum(c.n_correct for c in counts),
                n_corrected=sum(len(c.corrected) for c in counts),
                n_introduced=sum(len(c.introduced) for c in counts),
            )
        )
    return out


def merge_reports(
    reports: Sequence[SkipReport], extra_settings: Mapping[str, Any] | None = None
) -> SkipReport:
    """One report from the reports of consecutive chunks of items: their results in order, the summaries
    recomputed over all items, and the first report's settings updated with ``extra_settings``."""
    if not reports:
        raise SettingsError("merge_reports needs at least one report")
    results = [r for report in reports for r in report.results]
    settings = {**reports[0].settings, **(extra_settings or {})}
    return SkipReport(results, summarize_variants(results), settings)
