"""Forward hooks that record the residual stream at every decoder layer boundary.

For a stack of L decoder layers the recorder keeps L + 1 states per forward call: the input of layer 0 (the
embeddings as the decoder receives them: image features merged, Gemma's scaling applied) and the output of every
layer — all *before* the final norm. A layer the decoder skips in a forward call (Mllama's cross-attention layers
without an image) passes the stream through: its output state is its input. Hooks live only inside
:func:`record_residual_stream`; they are removed on exit, also when the body raises.

Under ``torch.compile`` (a compiled decoding step, :mod:`evolens.capture.compiled`) the same hooks are traced into
the graph: instead of writing into the buffer from Python, which would break the graph, they hand the last position's
states to the step that is being compiled (:func:`collect_compiled`), which returns them as one tensor.

The states go into one preallocated buffer ``[L + 1, capacity, batch, 1, d_model]``, written with one copy per
boundary per forward call and no other per-call tensor work, so that recording costs about as much as the copies
themselves on an accelerator (where eager decoding is launch-bound) and on a CPU. The buffer lives on the model's
device when it fits in a share of that device's free memory (:func:`buffer_placement`), else in pinned host memory
(the *spill*: each copy then leaves the device as it is made, asynchronously).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from evolens.errors import CaptureError, SettingsError

logger = logging.getLogger(__name__)

Placement = Literal["auto", "device", "host"]
PLACEMENTS: tuple[str, ...] = ("auto", "device", "host")
DEVICE_BUFFER_SHARE = (
    0.25  # "auto" keeps the buffer on the accelerator if it takes at most this share of free memory
)


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


@contextmanager
def identity_layers(layers: nn.ModuleList, rows_of: Mapping[int, torch.Tensor | None]) -> Iterator[None]:
    """Within the block, decoder layer ``l`` (1-based, a key of ``rows_of``) returns its input instead of its output
    for the batch rows ``rows_of[l]`` marks (a ``[batch]`` bool tensor; ``None``: every row); removed on exit.

    A pre-hook keeps a copy of the layer's input hidden states (so an in-place update inside the layer cannot leak
    into it); the forward hook returns it, mixed row by row with the output, in the output's structure (a tensor, or
    a tuple starting with the hidden states). Register this before any recording hook so recordings see the
    identity.

    Raises:
        CaptureError: A layer's output is neither a tensor nor such a tuple.
    """
    handles: list[torch.utils.hooks.RemovableHandle] = []
    stash: dict[int, torch.Tensor] = {}

    def make_pre(layer: int) -> Any:
        def pre(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            hidden = args[0] if args else kwargs.get("hidden_states")
            stash[layer] = _hidden_from(hidden).clone()

        return pre

    def make_post(layer: int) -> Any:
        def post(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
            before, rows = stash.pop(layer), rows_of[layer]
            if isinstance(output, torch.Tensor):
                after: torch.Tensor = output
            elif isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
                after = output[0]
            else:
                raise CaptureError(
                    f"cannot replace the output of {type(module).__name__} ({type(output).__name__}); a layer must "
                    "return a tensor or a tuple starting with the hidden states"
                )
            mixed = before if rows is None else torch.where(rows[:, None, None], before, after)
            return mixed if isinstance(output, torch.Tensor) else (mixed, *output[1:])

        return post

    try:
        for layer in rows_of:
            handles.append(layers[layer - 1].register_forward_pre_hook(make_pre(layer), with_kwargs=True))
            handles.append(layers[layer - 1].register_forward_hook(make_post(layer)))
        yield
    finally:
        for handle in handles:
            handle.remove()
        stash.clear()


def free_device_bytes(device: torch.device) -> int | None:
    """Free memory of a CUDA device in bytes (``None`` for other devices: unknown)."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def buffer_placement(
    device: torch.device, n_bytes: int, placement: Placement = "auto", max_device_bytes: int | None = None
) -> torch.device:
    """Where a capture buffer of ``n_bytes`` for states on ``device`` lives.

    A CPU model's buffer is in (ordinary) CPU memory. On an accelerator, ``"device"`` keeps it there, ``"host"``
    puts it in pinned CPU memory, and ``"auto"`` keeps it on the device when ``n_bytes`` is at most
    ``max_device_bytes`` (default: :data:`DEVICE_BUFFER_SHARE` of the device's free memory; unknown free memory
    counts as enough) and spills to the host otherwise.
    """
    if device.type == "cpu" or placement == "device":
        return device
    if placement == "host":
        return torch.device("cpu")
    limit = max_device_bytes
    if limit is None:
        free = free_device_bytes(device)
        limit = n_bytes if free is None else int(free * DEVICE_BUFFER_SHARE)
    if n_bytes <= limit:
        return device
    logger.info(
        "the capture buffer (%.2f GiB) exceeds the device budget (%.2f GiB): states spill to pinned host memory",
        n_bytes / 2**30,
        limit / 2**30,
    )
    return torch.device("cpu")


class _CompiledStates:
    """The states a compiled forward call's hooks collect: boundary -> ``[batch, d_model]`` (``None`` when no
    compiled call is running). One module-level object, so a compiled step's graph guards on nothing that changes
    from one trace to the next."""

    items: dict[int, torch.Tensor] | None = None


_COMPILED = _CompiledStates()


def _collect(boundary: int, hidden: torch.Tensor) -> None:
    """A hook's work while dynamo traces it: keep the last position's state for the compiled step."""
    if _COMPILED.items is not None:
        _COMPILED.items[boundary] = hidden[:, -1]


def collect_compiled(model: nn.Module, n_boundaries: int, kwargs: dict[str, Any]) -> tuple[Any, torch.Tensor]:
    """One forward call of ``model`` meant to run under ``torch.compile``: its output and the ``[n_boundaries,
    batch, d_model]`` states the recording hooks (:func:`record_residual_stream`) saw at the last position. A
    layer that did not run passes the stream through, as in an eager call.

    Raises:
        CaptureError: No recording hook ran (the hooks are not installed, or the call is not being compiled).
    """
    _COMPILED.items = {}
    output = model(**kwargs)
    items, _COMPILED.items = _COMPILED.items, None
    if 0 not in items:
        raise CaptureError(
            "a compiled forward call recorded no states; it must run under torch.compile inside "
            "record_residual_stream"
        )
    rows = [items[0]]
    for boundary in range(1, n_boundaries):
        rows.append(items.get(boundary, rows[-1]))
    return output, torch.stack(rows)


@dataclass
class ResidualRecording:
    """What the hooks saw: the last position's state at every boundary of every forward call.

    Attributes:
        n_boundaries: L + 1.
        keep_prompt: Also keep every position's states of the first call (the prompt).
        capacity: Forward calls the buffer holds when it is allocated (it doubles when more come).
        placement: Where the buffer goes (see :func:`buffer_placement`).
        max_device_bytes: Device budget of ``"auto"`` placement (``None``: a share of free memory).
        buffer: ``[n_boundaries, capacity, batch, 1, d_model]`` once the first call began, else ``None``.
        prompt: With ``keep_prompt``, ``prompt[i]`` is boundary ``i``'s ``[batch, prompt_len, d_model]`` states
            of the first call; else ``None``.
    """

    n_boundaries: int
    keep_prompt: bool = False
    capacity: int = 1
    placement: Placement = "auto"
    max_device_bytes: int | None = None
    buffer: torch.Tensor | None = None
    prompt: list[torch.Tensor] | None = None
    _calls: int = 0
    _next: int = 0  # the boundary the current call writes next
    _row: tuple[torch.Tensor, ...] = field(default=(), repr=False)  # the current call's [batch, 1, d] slots
    _spilled: bool = False
    _paused: bool = False

    def __post_init__(self) -> None:
        if self.placement not in PLACEMENTS:
            raise SettingsError(f"placement must be one of {list(PLACEMENTS)}, got {self.placement!r}")
        self.capacity = max(1, int(self.capacity))

    @property
    def n_calls(self) -> int:
        """Number of forward calls recorded."""
        return self._calls

    @property
    def device(self) -> torch.device | None:
        """Where the buffer lives (``None`` before the first call)."""
        return None if self.buffer is None else self.buffer.device

    def states(self) -> torch.Tensor:
        """``[n_boundaries, n_calls, batch, d_model]``: a view of the buffer (no copy).

        Raises:
            CaptureError: No forward call was recorded.
        """
        if self.buffer is None:
            raise CaptureError("no forward call went through the decoder layers; nothing was recorded")
        return self.buffer[:, : self._calls, :, 0]

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Within the block, forward calls through the layers are not recorded (a decoding rule's extra passes)."""
        self.finish_call()
        self._paused = True
        try:
            yield
        finally:
            self._paused = False

    def record_call(self, states: torch.Tensor) -> None:
        """Record a whole forward call at once: ``states`` ``[n_boundaries, batch, d_model]``, the last position's
        state at every boundary (a compiled step's, :func:`collect_compiled`), with one copy.

        Raises:
            CaptureError: ``states`` has another number of boundaries.
        """
        if self._paused:
            return
        if states.dim() != 3 or states.shape[0] != self.n_boundaries:
            raise CaptureError(
                f"expected states [{self.n_boundaries}, batch, d_model], got shape {tuple(states.shape)}"
            )
        self._begin_call(states[0][:, None])
        assert self.buffer is not None
        self.buffer[:, self._calls - 1, :, 0].copy_(states, non_blocking=True)
        self._next = self.n_boundaries

    def _record(self, boundary: int, hidden: torch.Tensor) -> None:
        if self._paused:
            return
        if hidden.dim() != 3:
            raise CaptureError(
                f"expected hidden states [batch, positions, d_model], got shape {tuple(hidden.shape)}"
            )
        if boundary == 0:
            self._begin_call(hidden)
        elif boundary != self._next:
            self._catch_up(boundary)
        # one copy per boundary and call; a decoding call's output is already [batch, 1, d_model]
        self._row[boundary].copy_(hidden if hidden.shape[1] == 1 else hidden[:, -1:], non_blocking=True)
        if self.prompt is not None and self._calls == 1:
            self.prompt[boundary] = hidden.detach().clone()
        self._next = boundary + 1

    def _begin_call(self, hidden: torch.Tensor) -> None:
        self.finish_call()
        if self.buffer is None:
            self._allocate(hidden)
        elif self._calls == self.capacity:
            self._grow()
        assert self.buffer is not None
        self._row = self.buffer[:, self._calls].unbind(0)
        self._calls += 1
        self._next = 0
        if self.keep_prompt and self._calls == 1:
            self.prompt = [torch.empty(0)] * self.n_boundaries

    def _allocate(self, hidden: torch.Tensor) -> None:
        batch, _, d_model = hidden.shape
        shape = (self.n_boundaries, self.capacity, batch, 1, d_model)
        n_bytes = self.n_boundaries * self.capacity * batch * d_model * hidden.element_size()
        where = buffer_placement(hidden.device, n_bytes, self.placement, self.max_device_bytes)
        self._spilled = where.type == "cpu" and hidden.device.type == "cuda"
        self.buffer = torch.empty(shape, dtype=hidden.dtype, device=where, pin_memory=self._spilled)

    def _grow(self) -> None:
        assert self.buffer is not None
        old = self.buffer
        self.capacity *= 2
        self.buffer = torch.empty(
            (old.shape[0], self.capacity, *old.shape[2:]),
            dtype=old.dtype,
            device=old.device,
            pin_memory=self._spilled,
        )
        self.buffer[:, : old.shape[1]].copy_(old)

    def _catch_up(self, boundary: int) -> None:
        """Boundaries before ``boundary`` that did not run in this call pass the stream through."""
        if not self._calls or boundary < self._next:
            raise CaptureError(
                f"decoder layer {boundary - 1} ran out of order (expected layer {self._next - 1} or later); the "
                "model skipped or repeated layers during generation, so per-layer states cannot be aligned"
            )
        if self._spilled:  # the row before may still be on its way from the device
            torch.cuda.synchronize()
        for skipped in range(self._next, boundary):
            # A decoder may skip a layer in a forward call (Mllama skips its cross-attention layers when there is
            # no image): the residual stream then passes through unchanged, so the skipped layer's output is its
            # input.
            self._row[skipped].copy_(self._row[skipped - 1])
            if self.prompt is not None and self._calls == 1:
                self.prompt[skipped] = self.prompt[skipped - 1]

    def finish_call(self) -> None:
        """Complete the current forward call: layers at its end that did not run pass the stream through."""
        if self._calls and self._next < self.n_boundaries:
            self._catch_up(self.n_boundaries)
            self._next = self.n_boundaries

    def finish(self) -> None:
        """Complete the last call; with a spilled buffer, wait until every asynchronous copy has landed."""
        # an inference-mode buffer (generation ran under torch.inference_mode) takes in-place writes only there
        with torch.inference_mode(self.buffer is not None and self.buffer.is_inference()):
            self.finish_call()
        if self._spilled:
            torch.cuda.synchronize()


@contextmanager
def record_residual_stream(
    layers: nn.ModuleList,
    *,
    keep_prompt: bool = False,
    capacity: int = 1,
    placement: Placement = "auto",
    max_device_bytes: int | None = None,
) -> Iterator[ResidualRecording]:
    """Record the L + 1 pre-norm residual states of every forward call through ``layers``.

    Hooks registered earlier (for example a layer-skip hook that returns the layer's input) run first, so the
    recording sees their effect.

    Args:
        layers: The text decoder's layers.
        keep_prompt: Also keep every position of the first call.
        capacity: Forward calls to preallocate for (``max_new_tokens`` for a generation; more still work).
        placement: ``"auto"``, ``"device"`` or ``"host"`` (see :func:`buffer_placement`).
        max_device_bytes: Device budget of ``"auto"`` placement (``None``: a share of free memory).
    """
    recording = ResidualRecording(
        n_boundaries=len(layers) + 1,
        keep_prompt=keep_prompt,
        capacity=capacity,
        placement=placement,
        max_device_bytes=max_device_bytes,
    )
    handles: list[torch.utils.hooks.RemovableHandle] = []
    record = recording._record

    def pre_hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        hidden = _hidden_from(args[0] if args else kwargs.get("hidden_states"))
        if torch.compiler.is_compiling():
            _collect(0, hidden)
        else:
            record(0, hidden)

    def make_hook(boundary: int) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            hidden = output if isinstance(output, torch.Tensor) else _hidden_from(output)
            if torch.compiler.is_compiling():
                _collect(boundary, hidden)
            else:
                record(boundary, hidden)

        return hook

    try:
        handles.append(layers[0].register_forward_pre_hook(pre_hook, with_kwargs=True))
        for index, layer in enumerate(layers):
            handles.append(layer.register_forward_hook(make_hook(index + 1)))
        yield recording
    finally:
        for handle in handles:
            handle.remove()
        recording.finish()
