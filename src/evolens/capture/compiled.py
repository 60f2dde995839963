"""Decoding with a static KV cache and a compiled decoding step (CUDA graphs on a GPU), the states recorded from
the compiled forward's own outputs.

Eager decoding is launch-bound on a GPU: a 7B model's step launches ~1,500 kernels, one Python call each, and the
GPU waits for them. Hugging Face's ``generate`` can decode with a static cache and a ``torch.compile``-d forward
(``cache_implementation="static"``); with ``mode="reduce-overhead"`` inductor records the step as CUDA graphs.
Recording hooks that write into a buffer from Python would break that graph, so here they are traced into it
(:func:`~evolens.capture.hooks.collect_compiled`): the compiled step returns the ``[L + 1, batch, d_model]`` states
beside its output, and one copy per step puts them in the capture buffer. The prefill (the prompt, variable
length) runs eagerly, recorded by the same hooks as ever; so do a decoding rule's extra passes.

``generate`` stays Hugging Face's own: its processors, stopping and padding of finished rows are unchanged, and the
compiled step only replaces the forward call of each decoding step (through the model's ``get_compiled_call``, for
the duration of one ``generate``). Families whose model class does not declare ``_can_compile_fullgraph`` decode
eagerly, and so does anything Hugging Face itself will not compile (a quantizer that refuses it, CPU offload).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

from evolens.capture.hooks import ResidualRecording, collect_compiled
from evolens.errors import SettingsError, check_positive_int

logger = logging.getLogger(__name__)

CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
COMPILE_MODES: tuple[str, ...] = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class CompileOptions:
    """How a trace decodes with a static KV cache and a compiled decoding step (``TraceOptions.compile``).

    Attributes:
        backend: ``torch.compile`` backend: ``"inductor"`` (generates kernels; on a GPU with ``mode
            ="reduce-overhead"`` it replays each step as CUDA graphs) or ``"eager"`` (traces the graph and runs
            it op by op: no speed-up, no numerical change; for checks).
        mode: Inductor's mode (ignored by other backends): ``"reduce-overhead"`` (CUDA graphs), ``"default"``,
            ``"max-autotune"`` or ``"max-autotune-no-cudagraphs"``.
        cache_bucket: The static cache's length is the prompt plus ``max_new_tokens`` rounded up to a multiple
            of this, so that batches whose prompts differ a little reuse one compiled step instead of compiling
            another (each new length is a new graph).
    """

    backend: str = "inductor"
    mode: CompileMode = "reduce-overhead"
    cache_bucket: int = 256

    def __post_init__(self) -> None:
        if not isinstance(self.backend, str) or not self.backend:
            raise SettingsError(f"compile backend must be a name such as 'inductor', got {self.backend!r}")
        if self.mode not in COMPILE_MODES:
            raise SettingsError(f"compile mode must be one of {list(COMPILE_MODES)}, got {self.mode!r}")
        check_positive_int("cache_bucket", self.cache_bucket)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompileOptions:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def compile_unsupported(model: nn.Module) -> str | None:
    """Why ``model`` cannot decode with a compiled step here, or ``None`` if it can: its class must declare
    ``_can_compile_fullgraph`` (Hugging Face's mark of a family whose forward compiles as one graph with a static
    cache)."""
    if not getattr(model, "_can_compile_fullgraph", False):
        return (
            f"{type(model).__name__} does not declare that its forward compiles as one graph "
            "(_can_compile_fullgraph); it decodes eagerly"
        )
    return None


def cache_length(prompt_len: int, max_new_tokens: int, bucket: int) -> int:
    """The static cache's length: ``prompt_len + max_new_tokens`` rounded up to a multiple of ``bucket``."""
    needed = prompt_len + max_new_tokens
    return -(-needed // bucket) * bucket


def static_generation_config(
    config: Any, options: CompileOptions, *, prompt_len: int, max_new_tokens: int
) -> Any:
    """``config`` (a ``GenerationConfig``, updated in place and returned) set to decode with a static cache of
    :func:`cache_length` and a compiled forward on any device (Hugging Face compiles only on accelerators unless
    asked)."""
    from transformers import CompileConfig

    compile_config = CompileConfig(fullgraph=True, dynamic=False, backend=options.backend, mode=options.mode)
    # Hugging Face's switch for compiling on any device (it compiles on accelerators only otherwise)
    setattr(compile_config, "_compile_all_devices", True)  # noqa: B010
    config.update(
        cache_implementation="static",
        max_cache_len=cache_length(prompt_len, max_new_tokens, options.cache_bucket),
        compile_config=compile_config,
        disable_compile=False,
    )
    return config


_COMPILED_STEPS: dict[CompileOptions, Callable[..., tuple[Any, torch.Tensor]]] = {}


def compiled_step(options: CompileOptions) -> Callable[..., tuple[Any, torch.Tensor]]:
    """``torch.compile`` of :func:`~evolens.capture.hooks.collect_compiled` under ``options`` (one per options, so
    that traces after the first reuse its graphs)."""
    step = _COMPILED_STEPS.get(options)
    if step is None:
        mode = options.mode if options.backend == "inductor" else None
        step = torch.compile(
            collect_compiled, backend=options.backend, mode=mode, fullgraph=True, dynamic=False
        )
        _COMPILED_STEPS[options] = step
    return step


class RecordedStep:
    """The forward call Hugging Face's ``generate`` makes at each decoding step: the compiled step, whose states go
    into the recording with one copy, counted in ``calls`` (0 after a ``generate`` that did not compile: Hugging
    Face's own criteria refused, e.g. CPU offload or a quantizer that cannot compile)."""

    def __init__(self, model: nn.Module, rec: ResidualRecording, options: CompileOptions) -> None:
        self.model, self.rec = model, rec
        self.step = compiled_step(options)
        self.calls = 0

    def __call__(self, **kwargs: Any) -> Any:
        # a new step: CUDA graphs may reuse the memory of the last step's outputs (both were copied out already)
        torch.compiler.cudagraph_mark_step_begin()
        output, states = self.step(self.model, self.rec.n_boundaries, kwargs)
        self.rec.record_call(states)
        self.calls += 1
        return output


@contextmanager
def compiled_decoding(
    model: nn.Module, rec: ResidualRecording, options: CompileOptions
) -> Iterator[RecordedStep]:
    """Within the block, the decoding steps of ``model.generate`` (with a generation config from
    :func:`static_generation_config`) run the compiled step and record into ``rec``; restored on exit."""
    step = RecordedStep(model, rec, options)
    own = vars(model).get("get_compiled_call")  # an instance attribute someone set before us, if any
    # an instance attribute shadows the class's method for this model only
    setattr(model, "get_compiled_call", lambda compile_config=None: step)  # noqa: B010
    try:
        yield step
    finally:
        if own is not None:
            setattr(model, "get_compiled_call", own)  # noqa: B010
        else:
            delattr(model, "get_compiled_call")
