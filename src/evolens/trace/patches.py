"""The image-token lens of a trace: its image-token positions decoded at every layer
(:class:`~evolens.metrics.patches.PatchLens`), from a :class:`~evolens.trace.lensed.LensedTrace` (the lens needs
the model's norm and head) whose trace kept its prompt positions."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from evolens.errors import SettingsError
from evolens.metrics.patches import PatchLens, check_patch_family, patch_grid, patch_lens_tensors
from evolens.trace.core import Trace
from evolens.trace.lensed import LensedTrace
from evolens.trace.vocab import vocab_strings


def check_patch_trace(trace: Trace) -> None:
    """Refuse a trace the image-token lens cannot read: a cross-attention family, no image token, or no prompt
    states.

    Raises:
        SettingsError: With what to do instead.
    """
    check_patch_family(trace.model.family)
    if trace.image_token_positions.numel() == 0:
        raise SettingsError(f"trace {trace.item_id!r} has no image token (text-only input?)")
    if trace.prompt_hidden_states is None:
        raise SettingsError(
            f"trace {trace.item_id!r} was saved without prompt positions: trace again with "
            "prompt_positions=True (evolens trace --prompt-positions) and keep the hidden states"
        )


def image_token_lens(
    lensed: LensedTrace,
    word_ids: Sequence[int] | torch.Tensor = (),
    words: Sequence[str] | None = None,
    *,
    k: int = 5,
    chunk_positions: int | None = None,
    max_chunk_bytes: int | None = None,
) -> PatchLens:
    """Decode every image-token position of ``lensed.trace`` at every layer.

    Args:
        lensed: The trace with its lens (``lvlm.attach(trace)``); the trace kept its prompt positions.
        word_ids: Tokens whose probability is kept at every (layer, image token), e.g. ``lvlm.token_ids(["dog"])``.
        words: How to name them (default: their display strings).
        k: Top tokens kept per (layer, image token).
        chunk_positions: Image tokens per lens chunk (``None``: from ``max_chunk_bytes``, 512 MiB by default).
        max_chunk_bytes: Memory budget of one chunk.

    Raises:
        SettingsError: See :func:`check_patch_trace`; ``words`` and ``word_ids`` of different lengths.
    """
    trace = lensed.trace
    check_patch_trace(trace)
    assert trace.prompt_hidden_states is not None  # checked above
    ids = torch.as_tensor(list(word_ids) if not isinstance(word_ids, torch.Tensor) else word_ids)
    ids = ids.long().flatten()
    positions = trace.image_token_positions.long()
    top_ids, top_probs, word_probs = patch_lens_tensors(
        trace.prompt_hidden_states,
        lensed.lens,
        positions,
        ids,
        k=k,
        chunk_positions=chunk_positions,
        max_chunk_bytes=max_chunk_bytes,
    )
    wanted = set(top_ids.unique().tolist()) | set(ids.tolist())  # only what this result mentions
    if lensed.tokenizer is not None:
        vocab = vocab_strings(lensed.tokenizer, wanted)
    else:
        vocab = {i: trace.vocab.get(i, f"<{i}>") for i in wanted}
    names = list(words) if words is not None else [vocab[int(i)] for i in ids.tolist()]
    if len(names) != ids.numel():
        raise SettingsError(f"{len(names)} words for {ids.numel()} token ids")
    return PatchLens(
        positions=positions,
        topk_ids=top_ids,
        topk_probs=top_probs,
        word_ids=ids,
        words=names,
        word_probs=word_probs,
        grid=patch_grid(trace.model.family, int(positions.numel())),
        vocab=vocab,
        lens_mode=lensed.lens.mode,
        item_id=trace.item_id,
    )
