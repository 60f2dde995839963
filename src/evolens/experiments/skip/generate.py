"""Generation with decoder layers skipped, without per-layer states (paper §4.2, Fig. 5)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from evolens.api import TraceOptions, token_pieces
from evolens.capture.generate import eos_token_ids
from evolens.errors import PromptError
from evolens.experiments.items import pair_items
from evolens.experiments.skip.methods import SkipMethod, check_skip_layers, generate_on, skip_context
from evolens.models.inputs import load_image

if TYPE_CHECKING:
    from evolens.api import LVLM


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
    options: TraceOptions | None = None,
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
        options: What of :class:`~evolens.api.TraceOptions` a generation without states uses: the decoding
            settings, ``batch_size``, ``raw_prompt`` and ``system_prompt`` (default: the defaults).
    """
    options = options or TraceOptions()
    settings, batch_size = options.generation, options.batch_size
    image_list, prompt_list = pair_items(images, prompts)
    if not lvlm.is_vlm and any(i is not None for i in image_list):
        raise PromptError(f"{lvlm.loaded.source} is a text-only model; it takes no image (image=None)")
    loaded = [load_image(i)[0] if i is not None else None for i in image_list]
    rendered = [
        p
        if options.raw_prompt
        else lvlm.render_prompt(p, image=img is not None, system=options.system_prompt)
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
            with skip_context(lvlm, skip, method, verify_inputs=inputs) as (_, running):
                captured = generate_on(lvlm, inputs, settings, running)
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


def generate_variants(
    lvlm: LVLM,
    images: Sequence[Any],
    prompts: Sequence[str],
    plans: Sequence[Mapping[str, tuple[int, ...]]],
    method: SkipMethod = "hook",
    *,
    progress: bool = False,
    options: TraceOptions | None = None,
) -> list[dict[tuple[int, ...], Generation]]:
    """Generate each item's variants: per item (``images[i]``, ``prompts[i]``), skip set -> its generation.

    The items sharing a skip set are generated together (one :func:`generate_skipped` call per distinct set, in
    ``batch_size`` batches); empty skip sets are not generated. ``options`` as for :func:`generate_skipped`.
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, plan in enumerate(plans):
        for skip in plan.values():
            if skip:
                groups.setdefault(skip, []).append(index)
    outputs: list[dict[tuple[int, ...], Generation]] = [{} for _ in plans]
    iterator: Iterable[tuple[tuple[int, ...], list[int]]] = groups.items()
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(list(groups.items()), desc="skip variants", unit="set")
    for skip, members in iterator:
        generated = generate_skipped(
            lvlm,
            [images[i] for i in members],
            [prompts[i] for i in members],
            skip,
            method=method,
            options=options,
        )
        for index, gen in zip(members, generated, strict=True):
            outputs[index][skip] = gen
    return outputs


def trace_generation(trace: Any) -> Generation:
    """The generation a :class:`~evolens.trace.Trace` holds, its final EOS left out (as :func:`generate_skipped`
    leaves it out)."""
    ids = [int(t) for t in trace.generated_ids.tolist()]
    tokens = list(trace.tokens)
    if trace.stop_reason == "eos" and ids:
        ids, tokens = ids[:-1], tokens[:-1]
    return Generation(trace.text, tokens, ids, trace.stop_reason)
