"""Generation with decoder layers replaced by the identity (paper §4.2, Fig. 5).

Two methods:

* ``"hook"`` (default, correct for every family): a forward hook on each skipped layer returns the layer's input
  as its output. The layer still runs — its KV cache is filled as usual and simply never read downstream — so
  the cache, padded batches and per-layer attention types are untouched. No compute is saved. The hook is
  registered before the capture hooks, so a trace taken inside sees state ``l`` equal to state ``l - 1``.
* ``"rebuild"``: the decoder's layer list is rebuilt without the skipped layers, and the kept layers' cache
  indices, ``num_hidden_layers`` and ``layer_types`` of the text config are renumbered to match, all restored on
  exit. This saves the skipped layers' compute; no per-layer states can be traced inside (the stack is shorter).
  Each (model, skip set) is checked once against the hook method before use (a short cached greedy generation
  must agree token for token, logits within tolerance); a family where it does not raises
  :class:`~evolens.errors.SettingsError` naming ``method="hook"``.

Layer numbers are 1-based decoder layers ``1..L`` (see :mod:`evolens.analysis.layers`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from evolens.analysis.compare import Annotations, DiffOp, HallucinationCount
from evolens.analysis.io import read_result, write_result
from evolens.analysis.layers import ItemLayers
from evolens.errors import SettingsError

if TYPE_CHECKING:
    from evolens.analysis.params import DetectorParams
    from evolens.api import LVLM

SkipMethod = Literal["hook", "rebuild"]
KIND = "evolens.skip_report"
DEFAULT_NAME = "skip.json"
ORIGINAL = "original"


def check_skip_layers(layers: Iterable[int], n_layers: int) -> tuple[int, ...]:
    """Sorted, de-duplicated 1-based layer numbers; refuses numbers out of ``[1, L]`` and skipping every layer."""
    out: set[int] = set()
    for layer in layers:
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise SettingsError(f"layers to skip must be integers, got {layer!r}")
        if not 1 <= layer <= n_layers:
            raise SettingsError(
                f"layer {layer} is out of range: decoder layers are numbered 1..{n_layers} (1-based; layer l "
                "produces state l)"
            )
        out.add(layer)
    if len(out) == n_layers:
        raise SettingsError(f"cannot skip every one of the {n_layers} decoder layers; keep at least one")
    return tuple(sorted(out))


@contextmanager
def skip_layers(
    lvlm: LVLM, layers: Iterable[int], *, method: SkipMethod = "hook"
) -> Iterator[tuple[int, ...]]:
    """Within the block, ``lvlm``'s decoder layers ``layers`` (1-based) act as the identity.

    With ``method="hook"`` ``lvlm.trace(...)`` and ``lvlm.model.generate(...)`` both work inside; with
    ``"rebuild"`` only generation does (see the module docstring). Everything is restored on exit, also on
    errors. Yields the checked skip set.
    """
    raise NotImplementedError


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
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VariantSummary:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class SkipReport:
    """The layer-skip experiment over several items.

    Attributes:
        results: One :class:`SkipResult` per item, in input order.
        summary: One :class:`VariantSummary` per variant (the original included).
        settings: How it ran: method, presets, keep_last, generation settings, detector parameters.
    """

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

    def save(self, path: str | Path) -> Path:
        """Write atomically (a ``.json`` file, or a directory that receives ``skip.json``)."""
        return write_result(path, KIND, self.to_dict(), DEFAULT_NAME)

    @classmethod
    def load(cls, path: str | Path) -> SkipReport:
        return cls.from_dict(read_result(path, KIND, DEFAULT_NAME))


def run_skip(
    lvlm: LVLM,
    images: Any,
    prompts: str | Sequence[str],
    *,
    presets: Sequence[str] = ("skip1", "skip2", "skip3"),
    layers: Mapping[str, Sequence[int]] | None = None,
    critical: int | None = None,
    mutation: Sequence[int] | None = None,
    annotations: Annotations | Sequence[Annotations | None] | None = None,
    params: DetectorParams | None = None,
    method: SkipMethod = "hook",
    keep_last: int | None = None,
    mutation_min_fraction: float = 0.1,
    item_ids: Sequence[str] | None = None,
    progress: bool = False,
    **trace_options: Any,
) -> SkipReport:
    """The layer-skip experiment of the paper (Fig. 5) on one or more items.

    For each item: the original generation (traced, so its critical and mutation layers can be detected), then
    one generation per variant with the same decoding settings.

    Args:
        lvlm: The model.
        images: One image (path, PIL image or ``None``) or a sequence, one per prompt.
        prompts: One prompt, or one per image.
        presets: Paper presets to run (``skip1`` critical->mutation, ``skip2`` mutation layers only, ``skip3``
            critical->last ``keep_last``), derived per item from its detected layers
            (:func:`~evolens.analysis.layers.item_layers`) unless ``critical``/``mutation`` are given.
        layers: Extra named skip sets (1-based layers), the same for every item, e.g. ``{"mid": [10, 11]}``.
        critical: Use this critical layer (state index) for every item instead of detecting it.
        mutation: Use these mutation layers for every item instead of detecting them.
        annotations: Ground-truth/hallucination words, one for all items or one (or ``None``) per item.
        params: Detector parameters for the detected layers.
        method: ``"hook"`` or ``"rebuild"`` (module docstring).
        keep_last: Layers ``skip3`` keeps at the end (default ``max(1, round(5 / 32 * L))``).
        mutation_min_fraction: See :func:`~evolens.analysis.layers.item_layers`.
        item_ids: Names of the items.
        progress: Show a progress bar.
        **trace_options: Decoding and prompt options of :meth:`evolens.LVLM.trace` (``max_new_tokens``...).

    Raises:
        SettingsError: layers out of range, a skip set with every layer, ``critical`` not before ``mutation``, an
            unknown preset or variant names that collide.
    """
    raise NotImplementedError
