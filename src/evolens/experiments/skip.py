"""Generation with decoder layers replaced by the identity (paper §4.2, Fig. 5).

Two methods:

* ``"hook"`` (default, correct for every family): a forward hook on each skipped layer returns the layer's input
  as its output. The layer still runs — its KV cache is filled as usual, so the cache, padded batches and per-layer
  attention types are untouched (on a model whose later layers share an earlier layer's keys and values, Gemma 4
  with ``num_kv_shared_layers``, they still read what the skipped layer computed from its input). No compute is
  saved. The hook is registered before the capture hooks, so a trace taken inside sees state ``l`` equal to state
  ``l - 1``.
* ``"rebuild"``: the decoder's layer list is rebuilt without the skipped layers, with everything the decoder finds
  by position renumbered (cache slots, ``layer_types``, Mllama's cross-attention layer list; see
  :mod:`evolens.experiments.rebuild`), all restored on exit. This saves the skipped layers' compute; no per-layer
  states can be traced inside (the stack is shorter). Families with position-bound features a renumbering cannot
  carry are refused with :class:`~evolens.errors.SettingsError` giving the reason (Gemma 4's per-layer
  embeddings and per-position head sizes; Qwen3-VL's DeepStack layers; Mllama with a cross-attention layer
  first; a hybrid decoder left with no attention layer), read from the model's configs. As a second guard each
  (model, skip set, kind of input) is checked once against the hook method before use: a short cached greedy
  generation must agree token for token, last states within tolerance.

Layer numbers are 1-based decoder layers ``1..L`` (see :mod:`evolens.analysis.layers`).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from evolens.analysis.compare import (
    Annotations,
    DiffOp,
    HallucinationCount,
    common_prefix,
    count_hallucinations,
    similarity,
    token_diff,
)
from evolens.analysis.io import clean_json, read_result, write_result
from evolens.analysis.layers import PRESETS, ItemLayers, item_layers, skip_presets
from evolens.analysis.params import DetectorParams
from evolens.analysis.trace_analysis import analyze_trace
from evolens.capture.generate import GenerationSettings, eos_token_ids, generate_with_capture
from evolens.capture.hooks import _hidden_from
from evolens.errors import PromptError, SettingsError, check_positive_int
from evolens.experiments.items import pair_items
from evolens.experiments.rebuild import rebuild_refusal, rebuilt_stack
from evolens.models.inputs import load_image

if TYPE_CHECKING:
    from evolens.api import LVLM

logger = logging.getLogger(__name__)

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
    with _skip_context(lvlm, layers, method) as (skip, _):
        yield skip


@contextmanager
def _skip_context(
    lvlm: LVLM, layers: Iterable[int], method: str, verify_inputs: Any = None
) -> Iterator[tuple[tuple[int, ...], nn.ModuleList]]:
    """Yields the checked skip set and the layer list that runs (to record on)."""
    if method not in ("hook", "rebuild"):
        raise SettingsError(f"unknown skip method {method!r}; use 'hook' or 'rebuild'")
    roles = lvlm.loaded.roles
    skip = check_skip_layers(layers, roles.n_layers)
    if not skip:
        yield skip, roles.decoder_layers
    elif method == "hook":
        with identity_hooks(roles.decoder_layers, skip):
            yield skip, roles.decoder_layers
    else:
        reason = rebuild_unsupported(lvlm, skip)
        if reason is not None:
            raise SettingsError(
                f"method='rebuild' cannot skip layers {list(skip)} on family {lvlm.family!r}: {reason}; use "
                "method='hook'"
            )
        verify_rebuild(lvlm, skip, inputs=verify_inputs)
        with rebuilt_stack(lvlm.model, roles.decoder_layers, skip) as shorter:
            yield skip, shorter


def rebuild_unsupported(lvlm: LVLM, layers: Iterable[int]) -> str | None:
    """``None`` when ``method="rebuild"`` can skip ``layers`` (1-based) on ``lvlm``, else the reason it cannot.

    Read from the model's configs (:data:`evolens.experiments.rebuild.REBUILD_BLOCKERS`); nothing is run.
    """
    roles = lvlm.loaded.roles
    return rebuild_refusal(lvlm.model, roles.decoder_layers, check_skip_layers(layers, roles.n_layers))


# ---------------------------------------------------------------------------- hook method
@contextmanager
def identity_hooks(layers: nn.ModuleList, skip: Sequence[int]) -> Iterator[None]:
    """Forward hooks making decoder layers ``skip`` (1-based) return their input; removed on exit.

    A pre-hook keeps a copy of the layer's input hidden states (so an in-place update inside the layer cannot
    leak into it); the forward hook returns it in the output's structure (a tensor, or the first element of a
    tuple). Register this before any recording hook so recordings see the identity.
    """
    handles: list[torch.utils.hooks.RemovableHandle] = []
    stash: dict[int, torch.Tensor] = {}

    def make_pre(key: int) -> Any:
        def pre(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            hidden = args[0] if args else kwargs.get("hidden_states")
            stash[key] = _hidden_from(hidden).clone()

        return pre

    def make_post(key: int) -> Any:
        def post(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Any:
            hidden = stash.pop(key)
            if isinstance(output, torch.Tensor):
                return hidden
            if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
                return (hidden, *output[1:])
            raise SettingsError(
                f"cannot replace the output of {type(module).__name__} ({type(output).__name__}); the hook method "
                "supports layers returning a tensor or a tuple starting with the hidden states"
            )

        return post

    try:
        for layer in skip:
            module = layers[layer - 1]
            handles.append(module.register_forward_pre_hook(make_pre(layer), with_kwargs=True))
            handles.append(module.register_forward_hook(make_post(layer), with_kwargs=True))
        yield
    finally:
        for handle in handles:
            handle.remove()
        stash.clear()


# ---------------------------------------------------------------------------- rebuild method
# model -> (skip set, input keys) checked; the input keys tell the code paths apart (with or without an image)
_VERIFIED: weakref.WeakKeyDictionary[nn.Module, set[tuple[tuple[int, ...], tuple[str, ...]]]] = (
    weakref.WeakKeyDictionary()
)
VERIFY_TEXTS = ("The image shows a", "a")


def verify_rebuild(lvlm: LVLM, skip: Sequence[int], *, inputs: Any = None, n_tokens: int = 3) -> None:
    """Check once per (model, skip set, input keys) that the rebuilt stack generates what the hook method does.

    ``inputs`` (a processor batch; default: a left-padded batch of two short text prompts) is generated greedily
    for ``n_tokens`` tokens with the KV cache both ways; the tokens must be equal and the last layer's states
    close. A batch with other keys (pixel values: the image path) is checked again.

    Raises:
        SettingsError: the rebuilt stack is not equivalent for this model; use ``method="hook"``.
    """
    skip = tuple(skip)
    if inputs is None:
        inputs = lvlm.tokenizer(list(VERIFY_TEXTS), return_tensors="pt", padding=True)
    key = (skip, tuple(sorted(k for k, v in inputs.items() if v is not None)))
    done = _VERIFIED.setdefault(lvlm.model, set())
    if key in done:
        return
    settings = GenerationSettings(max_new_tokens=n_tokens)
    layers = lvlm.loaded.roles.decoder_layers
    with identity_hooks(layers, skip):
        reference = _generate_ids(lvlm, inputs, settings, layers)
    try:
        with rebuilt_stack(lvlm.model, layers, skip) as shorter:
            rebuilt = _generate_ids(lvlm, inputs, settings, shorter)
    except Exception as err:  # any failure of the rebuilt stack means: not supported here
        raise SettingsError(
            f"the rebuilt stack fails on family {lvlm.family!r} ({type(err).__name__}: {err}); use method='hook'"
        ) from err
    tol = 1e-4 if lvlm.loaded.dtype in (torch.float32, torch.float64) else 5e-2
    for ref, new in zip(reference, rebuilt, strict=True):
        same_tokens = torch.equal(ref.generated_ids, new.generated_ids)
        n = min(ref.hidden_states.shape[1], new.hidden_states.shape[1])
        a, b = ref.hidden_states[-1, :n].float(), new.hidden_states[-1, :n].float()
        scale = float(a.abs().max().clamp_min(1.0))
        if not same_tokens or float((a - b).abs().max()) > tol * scale:
            raise SettingsError(
                f"the rebuilt stack of family {lvlm.family!r} does not reproduce the hook method when skipping "
                f"layers {list(skip)}; use method='hook'"
            )
    done.add(key)


def _generate_ids(lvlm: LVLM, inputs: Any, settings: GenerationSettings, layers: nn.ModuleList) -> list[Any]:
    roles = lvlm.loaded.roles
    return generate_with_capture(
        lvlm.model,
        layers,
        inputs,
        settings,
        eos_ids=eos_token_ids(lvlm.model, lvlm.tokenizer),
        pad_id=int(lvlm.tokenizer.pad_token_id),
        image_token_id=roles.image_token_id,
        suppress_ids=roles.suppressed_token_ids,
    )


# ---------------------------------------------------------------------------- generation
GENERATION_OPTIONS = (
    "max_new_tokens",
    "do_sample",
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
    "seed",
)
PROMPT_OPTIONS = ("raw_prompt", "system_prompt", "batch_size")


@dataclass(frozen=True)
class Generation:
    """One generated text, without per-layer states.

    Attributes:
        text: The text (special tokens removed).
        tokens: Display strings of the generated tokens, the final EOS left out.
        token_ids: Their ids.
        stop_reason: ``"eos"`` or ``"max_new_tokens"``.
    """

    text: str
    tokens: list[str]
    token_ids: list[int]
    stop_reason: str


def generate_skipped(
    lvlm: LVLM,
    images: Any,
    prompts: str | Sequence[str],
    layers: Iterable[int] = (),
    *,
    method: SkipMethod = "hook",
    batch_size: int = 8,
    raw_prompt: bool = False,
    system_prompt: str | None = None,
    **generation: Any,
) -> list[Generation]:
    """Generate with decoder ``layers`` (1-based) replaced by the identity; no states are kept.

    Items are paired and batched (left-padded) exactly as :meth:`evolens.LVLM.trace` does, and decoded with the
    same :class:`~evolens.capture.generate.GenerationSettings`, so ``layers=()`` reproduces a trace's tokens.

    Args:
        lvlm: The model.
        images: One image (or ``None``) or one per prompt.
        prompts: One prompt or one per image.
        layers: Decoder layers to skip, 1-based.
        method: ``"hook"`` or ``"rebuild"`` (module docstring).
        batch_size: Items per generate call.
        raw_prompt: Send prompts without the chat template.
        system_prompt: A system turn for chat templates that accept one.
        **generation: ``max_new_tokens``, ``do_sample``, ``temperature``, ``top_p``, ``top_k``,
            ``repetition_penalty``, ``seed``.
    """
    from evolens.api import token_pieces

    unknown = set(generation) - set(GENERATION_OPTIONS)
    if unknown:
        raise SettingsError(
            f"unknown generation option(s) {sorted(unknown)}; known: {list(GENERATION_OPTIONS)}"
        )
    check_positive_int("batch_size", batch_size)
    settings = GenerationSettings(**generation)
    image_list, prompt_list = pair_items(images, prompts)
    if not lvlm.is_vlm and any(i is not None for i in image_list):
        raise PromptError(f"{lvlm.loaded.source} is a text-only model; it takes no image (image=None)")
    loaded = [load_image(i)[0] if i is not None else None for i in image_list]
    rendered = [
        p if raw_prompt else lvlm.render_prompt(p, image=img is not None, system=system_prompt)
        for p, img in zip(prompt_list, loaded, strict=True)
    ]
    skip = check_skip_layers(layers, lvlm.n_layers)
    results: dict[int, Generation] = {}
    tokenizer = lvlm.tokenizer
    eos = set(eos_token_ids(lvlm.model, tokenizer))
    for has_image in (True, False):
        group = [i for i, img in enumerate(loaded) if (img is not None) == has_image]
        for start in range(0, len(group), batch_size):
            chunk = group[start : start + batch_size]
            pil = [loaded[i] for i in chunk if loaded[i] is not None]
            inputs = lvlm.encode([rendered[i] for i in chunk], pil or None)
            with _skip_context(lvlm, skip, method, verify_inputs=inputs) as (_, running):
                captured = _generate_ids(lvlm, inputs, settings, running)
            for index, item in zip(chunk, captured, strict=True):
                ids = [int(t) for t in item.generated_ids.tolist()]
                if item.stop_reason == "eos" and ids and ids[-1] in eos:
                    ids = ids[:-1]
                results[index] = Generation(
                    text=tokenizer.decode(ids, skip_special_tokens=True),
                    tokens=token_pieces(tokenizer, ids),
                    token_ids=ids,
                    stop_reason=item.stop_reason,
                )
    return [results[i] for i in range(len(image_list))]


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
    roles_n = lvlm.n_layers
    params = params or DetectorParams()
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        raise SettingsError(f"unknown skip preset(s) {unknown}; use {list(PRESETS)}")
    extra = {str(name): check_skip_layers(skip, roles_n) for name, skip in (layers or {}).items()}
    names = [*presets, *extra]
    if ORIGINAL in names or len(set(names)) != len(names):
        raise SettingsError(f"variant names must be unique and not {ORIGINAL!r}; got {names}")
    given: ItemLayers | None = None
    if critical is not None or mutation is not None:
        if critical is None:
            raise SettingsError("mutation layers need the critical layer too (critical=...)")
        given = ItemLayers(roles_n, critical, tuple(sorted(set(mutation or ()))), source="given")
    if not names:
        raise SettingsError("nothing to run: give presets and/or layers")
    allowed = (
        set(GENERATION_OPTIONS)
        | set(PROMPT_OPTIONS)
        | {
            "lens",
            "topk",
            "track",
            "storage_dtype",
            "storage_device",
            "chunk_steps",
            "max_chunk_bytes",
            "prompt_positions",
            "keep_hidden_states",
        }
    )
    unknown_opts = set(trace_options) - allowed
    if unknown_opts:
        raise SettingsError(f"unknown option(s) {sorted(unknown_opts)} for run_skip")
    image_list, prompt_list = pair_items(images, prompts)
    n_items = len(prompt_list)
    ids = [str(i) for i in (item_ids if item_ids is not None else range(n_items))]
    if len(ids) != n_items or len(set(ids)) != n_items:
        raise PromptError("item_ids must be unique and one per item")
    if annotations is None or isinstance(annotations, Annotations):
        ann_list: list[Annotations | None] = [annotations] * n_items
    else:
        ann_list = list(annotations)
        if len(ann_list) != n_items:
            raise SettingsError(f"got {len(ann_list)} annotations for {n_items} items")

    options = dict(trace_options)
    options.setdefault("keep_hidden_states", False)
    baselines = lvlm.trace(images=image_list, prompts=prompt_list, item_ids=ids, **options)
    gen_options = {k: v for k, v in trace_options.items() if k in GENERATION_OPTIONS or k in PROMPT_OPTIONS}

    item_layer_list: list[ItemLayers | None] = []
    plans: list[dict[str, tuple[int, ...]]] = []
    for trace in baselines:
        il: ItemLayers | None
        if presets:
            il = (
                given
                if given is not None
                else item_layers(analyze_trace(trace, params), min_fraction=mutation_min_fraction)
            )
            plan = skip_presets(il, presets, keep_last=keep_last)
        else:
            il, plan = given, {}
        plan.update(extra)
        item_layer_list.append(il)
        plans.append(plan)

    groups: dict[tuple[int, ...], list[int]] = {}
    for index, plan in enumerate(plans):
        for skip in plan.values():
            if skip:
                groups.setdefault(skip, []).append(index)
    outputs: dict[tuple[int, tuple[int, ...]], Generation] = {}
    iterator: Iterable[tuple[tuple[int, ...], list[int]]] = groups.items()
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(list(groups.items()), desc="skip variants", unit="set")
    for skip, members in iterator:
        generated = generate_skipped(
            lvlm,
            [image_list[i] for i in members],
            [prompt_list[i] for i in members],
            skip,
            method=method,
            **gen_options,
        )
        for index, gen in zip(members, generated, strict=True):
            outputs[(index, skip)] = gen

    results: list[SkipResult] = []
    for index, trace in enumerate(baselines):
        original = _trace_generation(trace)
        ann = ann_list[index]
        variants = [_variant(ORIGINAL, (), original, original, ann, ran=True)]
        for name, skip in plans[index].items():
            gen = outputs.get((index, skip), original)
            variants.append(_variant(name, skip, gen, original, ann, ran=bool(skip)))
        image = image_list[index]
        results.append(
            SkipResult(
                item_id=ids[index],
                prompt=prompt_list[index],
                image=trace.image.source
                if trace.image is not None
                else None
                if image is None
                else str(image),
                n_layers=roles_n,
                method=method,
                layers=item_layer_list[index],
                variants=variants,
                annotations=ann,
            )
        )
    settings = {
        "model": lvlm.loaded.source,
        "method": method,
        "presets": list(presets),
        "layers": {k: list(v) for k, v in extra.items()},
        "critical": critical,
        "mutation": list(mutation) if mutation is not None else None,
        "keep_last": keep_last,
        "mutation_min_fraction": mutation_min_fraction,
        "generation": baselines[0].generation.to_dict(),
        "lens": baselines[0].lens_mode,
        "params": params.to_dict(),
    }
    return SkipReport(results, summarize_variants(results), settings)


def _trace_generation(trace: Any) -> Generation:
    ids = [int(t) for t in trace.generated_ids.tolist()]
    tokens = list(trace.tokens)
    if trace.stop_reason == "eos" and ids:
        ids, tokens = ids[:-1], tokens[:-1]
    return Generation(trace.text, tokens, ids, trace.stop_reason)


def _variant(
    name: str,
    skip: tuple[int, ...],
    gen: Generation,
    original: Generation,
    annotations: Annotations | None,
    *,
    ran: bool,
) -> VariantOutput:
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
