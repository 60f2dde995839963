"""What a trace is, as data: :class:`TraceRecord` (its fields) and :class:`ModelInfo` (which model made it).

The directory format (:mod:`evolens.trace.fileformat`) writes and reads these fields; :class:`~evolens.trace.Trace`
adds the accessors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from evolens.capture.generate import GenerationSettings
from evolens.envelope import JsonRecord
from evolens.metrics.compute import LayerMetrics
from evolens.models.inputs import ImageInfo


@dataclass(frozen=True)
class ModelInfo(JsonRecord):
    """Which model produced a trace.

    Attributes:
        source: Path or hub id as given to :func:`evolens.load`.
        family: Registered family name.
        model_type: ``config.model_type``.
        n_layers: Decoder layers L.
        d_model: Residual stream width.
        vocab_size: Language head outputs.
        dtype: The model's dtype when traced (``"float32"``...).
        weights_hash: SHA-256 over the weight files (see ``evolens.models.loading.hash_weight_files``).
    """

    source: str
    family: str
    model_type: str
    n_layers: int
    d_model: int
    vocab_size: int
    dtype: str
    weights_hash: str


@dataclass
class TraceRecord:
    """The fields of a trace: one generation followed through every decoder layer, as tensors and strings.

    Layer axis: index 0 is the embedding state (the input of decoder layer 0), index ``l`` the output of decoder
    layer ``l``; all states are taken *before* the final norm. Step axis: one entry per generated token, the state
    at the position that predicts it.

    Attributes:
        text: The generated text (special tokens removed).
        tokens: ``n_steps`` display strings, one per generated token; they concatenate to the text.
        generated_ids: ``[n_steps]`` generated token ids.
        metrics: Every per-(layer, step) metric (see :class:`~evolens.metrics.compute.LayerMetrics`).
        hidden_states: ``[n_layers + 1, n_steps, d_model]`` pre-norm residual states, or ``None`` when not kept.
        prompt: The user's prompt.
        rendered_prompt: The prompt string given to the processor (chat template applied).
        prompt_ids: ``[n_prompt]`` the prompt's token ids as the model saw them (image placeholders expanded).
        prompt_tokens: ``n_prompt`` display strings of ``prompt_ids``.
        image_token_positions: ``[n_image_tokens]`` indices into ``prompt_ids`` of the image placeholders.
        prompt_hidden_states: ``[n_layers + 1, n_prompt, d_model]`` when asked for (``prompt_positions=True``).
        image: Where the image came from, or ``None`` for text-only input.
        stop_reason: ``"eos"`` or ``"max_new_tokens"``.
        generation: The decoding settings.
        model: Which model produced the trace.
        vocab: Id -> display string for every token id the metrics mention (so figures need no tokenizer).
        item_id: Name of the item within a run.
        decoding: The decoding strategy that read the lens while generating, as ``{"strategy": {name and
            hyper-parameters}, "overridden": [[step, token], ...]}`` (the steps at which it chose another token
            than the final layer's arg-max, with that arg-max), or ``None`` for plain decoding.
    """

    text: str
    tokens: list[str]
    generated_ids: torch.Tensor
    metrics: LayerMetrics
    hidden_states: torch.Tensor | None
    prompt: str
    rendered_prompt: str
    prompt_ids: torch.Tensor
    prompt_tokens: list[str]
    image_token_positions: torch.Tensor
    prompt_hidden_states: torch.Tensor | None
    image: ImageInfo | None
    stop_reason: str
    generation: GenerationSettings
    model: ModelInfo
    vocab: dict[int, str]
    item_id: str = "0"
    decoding: dict[str, Any] | None = None
