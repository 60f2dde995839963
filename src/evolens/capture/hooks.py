"""Forward hooks that record the residual stream at every decoder layer boundary.

For a stack of L decoder layers the recorder keeps L + 1 states per forward call: the input of layer 0 (the
embeddings as the decoder receives them: image features merged, Gemma's scaling applied) and the output of every
layer — all *before* the final norm. A layer the decoder skips in a forward call (Mllama's cross-attention layers
without an image) passes the stream through: its output state is its input. Hooks live only inside :func:`record_residual_stream`; they are removed on
exit, also when the body raises.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from evolens.errors import CaptureError


def _hidden_from(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    for attr in ("hidden_states", "last_hidden_state"):
        hidden = getattr(value, attr, None)
        if isinstance(hidden, torch.Tensor):
            return hidden
    raise CaptureError(f"cannot find the hidden states in a decoder layer's {type(value).__name__} output")


@dataclass
class ResidualRecording:
    """What the hooks saw, one entry per forward call.

    Attributes:
        last: ``last[i][c]`` is the state at boundary ``i`` (0 = input of layer 0, i = output of layer i) for
            the last position of forward call ``c``: shape ``[batch, d_model]``.
        prompt: With ``keep_prompt``, the states of every position of the first call (the prompt):
            ``prompt[i]`` has shape ``[batch, prompt_len, d_model]``; else ``None``.
    """

    n_boundaries: int
    keep_prompt: bool
    last: list[list[torch.Tensor]] = field(default_factory=list)
    prompt: list[torch.Tensor] | None = None

    def __post_init__(self) -> None:
        self.last = [[] for _ in range(self.n_boundaries)]

    @property
    def n_calls(self) -> int:
        """Number of complete forward calls seen (checked consistent across boundaries)."""
        counts = {len(states) for states in self.last}
        if len(counts) != 1:
            raise CaptureError(
                f"decoder layers ran an unequal number of times ({sorted(counts)}); the model skipped or repeated "
                "layers during generation, so per-layer states cannot be aligned"
            )
        return counts.pop()

    def _record(self, boundary: int, hidden: torch.Tensor) -> None:
        if hidden.dim() != 3:
            raise CaptureError(
                f"expected hidden states [batch, positions, d_model], got shape {tuple(hidden.shape)}"
            )
        if boundary == 0:
            self.finish_call()
        else:
            self._pass_through(boundary)
        # every position is copied only where it is kept (the prompt's call, with keep_prompt): the prompt's
        # forward call holds [batch, prompt_len, d_model] per boundary, a large copy nobody asked for otherwise
        keep_full = self.keep_prompt and len(self.last[boundary]) == 0
        self._append(
            boundary, hidden[:, -1, :].detach().clone(), hidden.detach().clone() if keep_full else None
        )

    def _append(self, boundary: int, last: torch.Tensor, full: torch.Tensor | None) -> None:
        first_call = len(self.last[boundary]) == 0
        self.last[boundary].append(last)
        if self.keep_prompt and first_call:
            if self.prompt is None:
                self.prompt = [torch.empty(0)] * self.n_boundaries
            self.prompt[boundary] = full if full is not None else torch.empty(0)

    def _pass_through(self, upto: int) -> None:
        # A decoder may skip a layer in a forward call (Mllama skips its cross-attention layers when there is no
        # image): the residual stream then passes through unchanged, so the skipped layer's output is its input.
        n_calls = len(self.last[0])
        for boundary in range(1, upto):
            if len(self.last[boundary]) < n_calls:
                full = self.prompt[boundary - 1] if self.keep_prompt and self.prompt is not None else None
                self._append(boundary, self.last[boundary - 1][-1], full)

    def finish_call(self) -> None:
        """Complete the current forward call: layers at its end that did not run pass the stream through."""
        if self.last[0]:
            self._pass_through(self.n_boundaries)


@contextmanager
def record_residual_stream(
    layers: nn.ModuleList, *, keep_prompt: bool = False
) -> Iterator[ResidualRecording]:
    """Record the L + 1 pre-norm residual states of every forward call through ``layers``.

    Hooks registered earlier (for example a layer-skip hook that returns the layer's input) run first, so the
    recording sees their effect.
    """
    recording = ResidualRecording(n_boundaries=len(layers) + 1, keep_prompt=keep_prompt)
    handles: list[torch.utils.hooks.RemovableHandle] = []

    def pre_hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        hidden = args[0] if args else kwargs.get("hidden_states")
        recording._record(0, _hidden_from(hidden))

    def make_hook(boundary: int) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            recording._record(boundary, _hidden_from(output))

        return hook

    try:
        handles.append(layers[0].register_forward_pre_hook(pre_hook, with_kwargs=True))
        for index, layer in enumerate(layers):
            handles.append(layer.register_forward_hook(make_hook(index + 1)))
        yield recording
    finally:
        for handle in handles:
            handle.remove()
        recording.finish_call()
