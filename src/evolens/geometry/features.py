"""Collect the states a feature map is made of, from traces or from explicit tensors.

States are the *pre-norm* residual states of :attr:`evolens.Trace.hidden_states` (``[n_layers + 1, n_steps,
d_model]``; state 0 = the embeddings, state l = output of decoder layer l). Hugging Face's ``hidden_states[-1]``
has the final norm applied and sits on another scale than the other entries; evolens' last state does not, so all
layers are comparable. The paper drops the embedding state; so does evolens unless ``include_embedding=True``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from evolens.errors import InputError, SettingsError
from evolens.trace import Trace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UnitStates:
    """The states of a map's units at its layers.

    Attributes:
        states: ``[n_mapped_layers, n_units, d]`` float64 — layer first, as in a trace.
        layers: The state index of each row (``0..L`` or ``1..L``).
        n_layers: Decoder layers L of the model.
        tokens: The token of each unit (a generated token; the answer token of an image).
        steps: The generation step of each unit.
        items: The item (image) each unit belongs to.
        source: Provenance written into the map (model, prompts, images).
    """

    states: np.ndarray
    layers: tuple[int, ...]
    n_layers: int
    tokens: list[str]
    steps: list[int]
    items: list[str]
    source: dict[str, Any]


def _to_numpy(states: Any, what: str) -> np.ndarray:
    if isinstance(states, torch.Tensor):
        arr = states.detach().to("cpu", torch.float64).numpy()
    else:
        try:
            arr = np.asarray(states, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{what} must be a tensor or array of numbers: {exc}") from None
    if arr.ndim != 3:
        raise InputError(
            f"{what} must have shape [n_layers + 1, n_units, d_model] (state 0 = embeddings), got {tuple(arr.shape)}"
        )
    if arr.shape[0] < 2:
        raise InputError(f"{what} needs at least 2 states (embeddings + one layer), got {arr.shape[0]}")
    if not np.isfinite(arr).all():
        raise InputError(f"{what} contains NaN or infinite values")
    return arr


def _first_layer(include_embedding: bool) -> int:
    return 0 if include_embedding else 1


def _hidden(trace: Trace, index: int | None = None) -> torch.Tensor:
    if trace.hidden_states is None:
        which = "the trace" if index is None else f"trace {index} (item {trace.item_id!r})"
        raise InputError(
            f"{which} has no hidden states; trace with keep_hidden_states=True (the default) and save with "
            "hidden_states=True"
        )
    return trace.hidden_states


def single_image_states(
    source: Trace | torch.Tensor | np.ndarray,
    *,
    steps: Sequence[int] | None = None,
    tokens: Sequence[str] | None = None,
    include_embedding: bool = False,
) -> UnitStates:
    """Every generated token's state at every layer of one trace (paper eq. 5: ``[T x 32]`` points).

    Args:
        source: A :class:`~evolens.Trace` with hidden states, or a ``[n_layers + 1, n_steps, d_model]`` tensor laid
            out like :attr:`Trace.hidden_states`.
        steps: Which generation steps (tokens) to map; default all.
        tokens: Display strings of the steps of an explicit tensor (default ``"<step>"``); ignored for a trace.
        include_embedding: Map state 0 too (the paper does not).
    """
    if isinstance(source, Trace):
        arr = _to_numpy(_hidden(source), "trace.hidden_states")
        all_tokens = list(source.tokens)
        item = source.item_id
        meta: dict[str, Any] = {
            "model": source.model.to_dict(),
            "prompts": [source.prompt],
            "images": [None if source.image is None else source.image.source],
            "text": source.text,
        }
    else:
        arr = _to_numpy(source, "states")
        if tokens is not None and len(tokens) != arr.shape[1]:
            raise InputError(f"got {len(tokens)} tokens for {arr.shape[1]} steps")
        all_tokens = (
            [str(t) for t in tokens] if tokens is not None else [f"<{i}>" for i in range(arr.shape[1])]
        )
        item = "0"
        meta = {}
    n_steps = arr.shape[1]
    chosen = list(range(n_steps)) if steps is None else [int(s) for s in steps]
    if not chosen:
        raise SettingsError("steps is empty; choose at least one generated token")
    bad = [s for s in chosen if not 0 <= s < n_steps]
    if bad:
        raise SettingsError(f"steps {bad} are out of range; the trace has {n_steps} generated tokens")
    if len(set(chosen)) != len(chosen):
        raise SettingsError(f"steps must not repeat, got {chosen}")
    first = _first_layer(include_embedding)
    return UnitStates(
        states=np.ascontiguousarray(arr[first:, chosen]),
        layers=tuple(range(first, arr.shape[0])),
        n_layers=arr.shape[0] - 1,
        tokens=[all_tokens[s] for s in chosen],
        steps=chosen,
        items=[item] * len(chosen),
        source=meta,
    )


def _unique_labels(traces: Sequence[Trace]) -> list[str]:
    ids = [t.item_id for t in traces]
    if len(set(ids)) == len(ids):
        return ids
    sources = [None if t.image is None else t.image.source for t in traces]
    if all(s is not None for s in sources) and len(set(sources)) == len(sources):
        return [str(s) for s in sources]
    return [f"image {i}" for i in range(len(traces))]


def _answer_states(traces: list[Trace], step: int) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """``[n_layers + 1, n_images, d]`` states of the token at ``step`` of each trace, its strings and provenance."""
    if not all(isinstance(t, Trace) for t in traces):
        raise InputError("source must be a list of Traces or a [n_layers + 1, n_images, d_model] tensor")
    if len(traces) < 2:
        raise InputError(f"a map across images needs at least 2 traces, got {len(traces)}")
    shapes = {(t.n_layers, t.model.d_model) for t in traces}
    if len(shapes) > 1:
        raise InputError(
            f"the traces come from models of different shapes (n_layers, d_model): {sorted(shapes)}"
        )
    if len({t.model.weights_hash for t in traces}) > 1:
        log.warning("the traces come from different checkpoints; their features may not be comparable")
    prompts = list(dict.fromkeys(t.prompt for t in traces))
    if len(prompts) > 1:
        log.warning(
            "the traces answer %d different prompts; the paper maps one question at a time", len(prompts)
        )
    rows = []
    for i, t in enumerate(traces):
        hidden = _hidden(t, i)
        if step >= t.n_steps:
            raise SettingsError(
                f"step {step} is out of range for trace {i} (item {t.item_id!r}), which has "
                f"{t.n_steps} generated tokens"
            )
        rows.append(hidden[:, step].to("cpu", torch.float64))
    arr = _to_numpy(torch.stack(rows, dim=1), "the traces' hidden states")
    meta = {
        "model": traces[0].model.to_dict(),
        "prompts": prompts,
        "images": [None if t.image is None else t.image.source for t in traces],
    }
    return arr, [t.tokens[step] for t in traces], meta


def multi_image_states(
    source: Sequence[Trace] | torch.Tensor | np.ndarray,
    *,
    step: int = 0,
    labels: Sequence[str] | None = None,
    tokens: Sequence[str] | None = None,
    include_embedding: bool = False,
) -> UnitStates:
    """The answer token's state at every layer for every image (paper eq. 6: ``[N_I x 32]`` points).

    Args:
        source: Traces of one single-word question over many images (each with hidden states), or a
            ``[n_layers + 1, n_images, d_model]`` tensor (state 0 = embeddings).
        step: The generation step of the answer token (0: the first generated token, as in the paper).
        labels: A name per image; default the traces' item ids (or image sources, when item ids repeat).
        tokens: The answer token per image for an explicit tensor (default ``"?"``); ignored for traces.
        include_embedding: Map state 0 too (the paper does not).

    Raises:
        InputError: Fewer than 2 images, a trace without hidden states, traces of models of different shape.
        SettingsError: ``step`` out of range for some trace.
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise SettingsError(f"step must be a non-negative integer, got {step!r}")
    if isinstance(source, (torch.Tensor, np.ndarray)):
        arr = _to_numpy(source, "states")
        n_images = arr.shape[1]
        answers = [str(t) for t in tokens] if tokens is not None else ["?"] * n_images
        names = [str(s) for s in labels] if labels is not None else [f"image {i}" for i in range(n_images)]
        meta: dict[str, Any] = {}
    else:
        traces = list(source)
        arr, answers, meta = _answer_states(traces, step)
        n_images = len(traces)
        names = [str(s) for s in labels] if labels is not None else _unique_labels(traces)
    if n_images < 2:
        raise InputError(f"a map across images needs at least 2 images, got {n_images}")
    if len(names) != n_images or len(answers) != n_images:
        raise InputError(f"got {len(names)} labels and {len(answers)} tokens for {n_images} images")
    first = _first_layer(include_embedding)
    return UnitStates(
        states=np.ascontiguousarray(arr[first:]),
        layers=tuple(range(first, arr.shape[0])),
        n_layers=arr.shape[0] - 1,
        tokens=answers,
        steps=[step] * n_images,
        items=names,
        source=meta,
    )
