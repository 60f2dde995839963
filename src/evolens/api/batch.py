"""One generate call traced: the residual stream captured on the model's device, the lens's metrics computed
(on a GPU while the generation runs, on a side stream), and the :class:`~evolens.trace.Trace` s built."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from evolens.api.options import TraceOptions
from evolens.capture.generate import CapturedItem, eos_token_ids, generate_with_capture
from evolens.lens.base import Lens
from evolens.metrics.batch import STREAM_ROWS, MetricsStream, compute_batch_metrics
from evolens.metrics.compute import LayerMetrics
from evolens.models.inputs import ImageInfo
from evolens.models.loading import LoadedModel
from evolens.trace import ModelInfo, Trace, metrics_token_ids, vocab_strings


@dataclass(frozen=True)
class BatchItems:
    """The items of one generate call, in order: rendered prompts, images (PIL image and where it came from, or
    ``None``), the users' prompts and the items' ids."""

    rendered: list[str]
    images: list[tuple[Any, ImageInfo] | None]
    prompts: list[str]
    item_ids: list[str]


#: Tokens of left context a piece is decoded with (:func:`token_pieces`): more than any decoder looks back (a
#: character split over up to 4 byte tokens, a clean-up rule over a pair, SentencePiece's first-token space).
PIECE_CONTEXT = 8


def token_pieces(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """Display strings of generated ids that concatenate to their joint decoding (special tokens kept).

    Each piece is the growth of the decoded text when its token is added, so sub-word tokens and leading spaces
    come out as the reader sees them; where the decoded text before is not a prefix of the one after (rare
    byte-level merges), the token is decoded alone. The text is decoded from a window that starts at least
    :data:`PIECE_CONTEXT` tokens back (moved forward every :data:`PIECE_CONTEXT` tokens), not from the first
    token, so a trace's pieces cost time linear in its length (decoding every prefix was quadratic: 26 ms for
    512 tokens, 2 ms for 128, per item). The window moves only where its tokens decode as they do in the longer
    window (their text ends it) and to complete characters (no U+FFFD): never into a character spread over byte
    tokens, whose bytes decode as one group (an unfinished group decodes to U+FFFD, in either window).
    """
    pieces: list[str] = []
    start = 0  # first id of the decoded window
    previous = ""  # the window decoded up to the token before
    for end in range(1, len(ids) + 1):
        if end - 1 - start >= 2 * PIECE_CONTEXT:
            later = end - 1 - PIECE_CONTEXT
            text = tokenizer.decode(list(ids[later : end - 1]), skip_special_tokens=False)
            if "\ufffd" not in text and previous.endswith(text):
                start, previous = later, text
        current = tokenizer.decode(list(ids[start:end]), skip_special_tokens=False)
        if current.startswith(previous):
            pieces.append(current[len(previous) :])
        else:
            pieces.append(tokenizer.decode([ids[end - 1]], skip_special_tokens=False))
        previous = current
    return pieces


def analyse_during_generation(model: Any, lens: Lens) -> bool:
    """Whether a trace's analysis follows its generation (a model wholly on one CUDA device: a side stream fills
    the time the GPU waits for the eager decoding loop) or comes after it (a CPU, whose cores generation already
    uses; a model spread over devices)."""
    device = lens.device
    return device.type == "cuda" and all(p.device == device for p in model.parameters())


def _stored(
    states: torch.Tensor | None, device: str | torch.device, dtype: torch.dtype | None
) -> torch.Tensor | None:
    """Captured states as a trace keeps them: on ``device``, in ``dtype`` (``None``: as captured), contiguous."""
    if states is None:
        return None
    return states.to(device=device, dtype=dtype or states.dtype).contiguous()


def capture_batch(
    loaded: LoadedModel, inputs: Any, options: TraceOptions, lens: Lens, tracked: list[int]
) -> tuple[list[CapturedItem], list[LayerMetrics]]:
    """Generate from the encoded ``inputs`` while recording every layer's residual stream, and compute each item's
    metrics. States stay where they were captured (the model's device) for the analysis, then leave it once; on a
    GPU the analysis follows the generation on a side stream."""
    model, tokenizer, roles = loaded.model, loaded.tokenizer, loaded.roles
    stream = None
    rule = None if options.decoding is None else options.decoding.rule(lens)
    if rule is None and analyse_during_generation(model, lens):
        stream = MetricsStream(
            lens,
            k=options.topk,
            tracked_ids=tracked,
            chunk_steps=options.chunk_steps,
            max_chunk_bytes=options.max_chunk_bytes,
        )
    n_items = int(inputs["input_ids"].shape[0]) // (2 if rule is not None and rule.contrast else 1)
    captured = generate_with_capture(
        model,
        roles.decoder_layers,
        inputs,
        options.generation,
        eos_ids=eos_token_ids(model, tokenizer),
        pad_id=int(tokenizer.pad_token_id),
        image_token_id=roles.image_token_id,
        suppress_ids=roles.suppressed_token_ids,
        keep_prompt=options.prompt_positions,
        storage_device=None,
        listener=None if stream is None else stream.add,
        listen_every=max(1, STREAM_ROWS // n_items),
        rule=rule,
        compile_options=options.compile,
    )
    if stream is not None:
        return captured, stream.finish([item.generated_ids for item in captured])
    metrics = compute_batch_metrics(
        [item.hidden_states for item in captured],
        lens,
        [item.generated_ids for item in captured],
        k=options.topk,
        tracked_ids=tracked,
        chunk_steps=options.chunk_steps,
        max_chunk_bytes=options.max_chunk_bytes,
    )
    return captured, metrics


def _decoding_record(options: TraceOptions, item: CapturedItem) -> dict[str, Any] | None:
    """What a trace records of its decoding strategy: the strategy and the steps at which it chose another token
    than the final layer's arg-max (``[step, that arg-max]``); ``None`` for plain decoding."""
    if options.decoding is None:
        return None
    return {"strategy": options.decoding.to_dict(), "overridden": [list(p) for p in item.overridden]}


def build_traces(
    batch: BatchItems,
    captured: Sequence[CapturedItem],
    metrics: Sequence[LayerMetrics],
    tokenizer: Any,
    options: TraceOptions,
    info: ModelInfo,
    vocab_cache: dict[int, str],
) -> list[Trace]:
    """One :class:`~evolens.trace.Trace` per captured item (states kept as ``options`` says; token strings decoded
    once per tokenizer through ``vocab_cache``)."""
    traces = []
    for item, item_metrics, text_in, prompt, img, item_id in zip(
        captured, metrics, batch.rendered, batch.prompts, batch.images, batch.item_ids, strict=True
    ):
        stored = (
            _stored(item.hidden_states, options.storage_device, options.storage_dtype)
            if options.keep_hidden_states
            else None
        )
        gen_ids = item.generated_ids.tolist()
        traces.append(
            Trace(
                text=tokenizer.decode(gen_ids, skip_special_tokens=True),
                tokens=token_pieces(tokenizer, gen_ids),
                generated_ids=item.generated_ids,
                metrics=item_metrics,
                hidden_states=stored,
                prompt=prompt,
                rendered_prompt=text_in,
                prompt_ids=item.prompt_ids,
                prompt_tokens=tokenizer.convert_ids_to_tokens(item.prompt_ids.tolist()),
                image_token_positions=item.image_token_positions,
                prompt_hidden_states=_stored(
                    item.prompt_hidden_states, options.storage_device, options.storage_dtype
                ),
                image=img[1] if img is not None else None,
                stop_reason=item.stop_reason,
                generation=options.generation,
                model=info,
                vocab=vocab_strings(tokenizer, metrics_token_ids(item_metrics), vocab_cache),
                item_id=item_id,
                decoding=_decoding_record(options, item),
            )
        )
    return traces
