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
import weakref
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
    """Why ``model`` cannot decode with a compiled step here, or ``None`` if it can: compiling must not be disabled
    (``TORCH_COMPILE_DISABLE=1``, under which a whole-graph compile fails), and its class must declare
    ``_can_compile_fullgraph`` (Hugging Face's mark of a family whose forward compiles as one graph with a static
    cache)."""
    if torch._dynamo.config.disable:
        return "torch.compile is disabled (TORCH_COMPILE_DISABLE); decoding runs eagerly"
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


def static_generation_config(config: Any, options: CompileOptions, *, cache_len: int | None) -> Any:
    """``config`` (a ``GenerationConfig``, updated in place and returned) set to decode with a compiled forward on
    any device (Hugging Face compiles only on accelerators unless asked) and a static cache of ``cache_len``
    positions (:func:`cache_length`), or, with ``None``, the static cache the caller gives ``generate``."""
    from transformers import CompileConfig

    compile_config = CompileConfig(fullgraph=True, dynamic=False, backend=options.backend, mode=options.mode)
    # Hugging Face's switch for compiling on any device (it compiles on accelerators only otherwise)
    setattr(compile_config, "_compile_all_devices", True)  # noqa: B010
    # with a given cache, no setting to build one (the checkpoint's own may name one): Hugging Face refuses both
    config.update(
        compile_config=compile_config,
        disable_compile=False,
        cache_implementation=None if cache_len is None else "static",
        max_cache_len=cache_len,
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


CacheKey = tuple[int, int, torch.dtype, torch.device]

# (options, model class) whose step failed to compile in this process: later traces decode eagerly at once
_FAILED_COMPILES: set[tuple[CompileOptions, str]] = set()
# (options, model class, cache key) of the steps refused once dynamo's recompile limit was reached
_OVER_LIMIT: set[tuple[CompileOptions, str, CacheKey]] = set()

# model -> (key, cache): the static KV cache of the model's last compiled generate, kept for the next one
_KEPT_CACHES: weakref.WeakKeyDictionary[nn.Module, tuple[CacheKey, Any]] = weakref.WeakKeyDictionary()


def kept_cache(model: nn.Module, key: CacheKey) -> Any | None:
    """The static KV cache ``model``'s last compiled generate used, reset (zeroed in place), when it was made for
    ``key`` (batch rows, cache length, dtype, device); else ``None``.

    Hugging Face makes a new static cache at every ``generate``: zeroing new memory (on the CPU a tenth of the time
    of a compiled toy trace of two-token answers: 38 ms against 35 ms with the cache kept) and, on a GPU, new
    addresses for the tensors the CUDA graphs were recorded with (not yet measured: whether the graphs are then
    recorded again). Reusing the last cache keeps both away; it holds one cache per model between traces."""
    entry = _KEPT_CACHES.get(model)
    if entry is None or entry[0] != key:
        return None
    cache = entry[1]
    cache.reset()
    return cache


class RecordedStep:
    """The forward call Hugging Face's ``generate`` makes at each decoding step: the compiled step, whose states go
    into the recording with one copy, counted in ``calls`` (0 after a ``generate`` that did not compile: Hugging
    Face's own criteria refused, e.g. CPU offload or a quantizer that cannot compile). A step whose compiling fails
    runs eagerly (``failed``), with one warning per options and model class in a process; so does a step of a new
    shape once dynamo's recompile limit is reached (one warning per shape; the shapes compiled before keep their
    graphs).

    Attributes:
        generate_kwargs: What ``generate`` takes beside the inputs: the kept static cache, when there is one.
        cache: The static cache the decoding steps used (``None`` before the first).
    """

    def __init__(
        self,
        model: nn.Module,
        rec: ResidualRecording,
        options: CompileOptions,
        key: CacheKey,
        kept: Any | None = None,
    ) -> None:
        self.model, self.rec = model, rec
        self.step = compiled_step(options)
        self.calls = 0
        self.failure_key = (options, type(model).__name__)
        self.limit_key = (options, type(model).__name__, key)
        self.failed = self.failure_key in _FAILED_COMPILES or self.limit_key in _OVER_LIMIT
        self.generate_kwargs: dict[str, Any] = {} if kept is None else {"past_key_values": kept}
        self.cache: Any | None = None

    def __call__(self, **kwargs: Any) -> Any:
        if self.failed:
            return self.model(**kwargs)  # eager, recorded by the hooks
        # a new step: CUDA graphs may reuse the memory of the last step's outputs (both were copied out already)
        torch.compiler.cudagraph_mark_step_begin()
        try:
            output, states = self.step(self.model, self.rec.n_boundaries, kwargs)
        except (torch._dynamo.exc.BackendCompilerFailed, torch._dynamo.exc.Unsupported) as error:
            # nothing ran yet: the environment cannot compile (no C++ compiler for inductor on a CPU ...), or the
            # family's forward does not trace as one graph after all; the generation goes on eagerly
            logger.warning("compiling the decoding step failed (%s); decoding runs eagerly", _reason(error))
            self.failed = True
            _FAILED_COMPILES.add(self.failure_key)
            return self.model(**kwargs)
        except torch._dynamo.exc.FailOnRecompileLimitHit:
            # every model, batch size and cache length is one graph of the same function; past dynamo's limit a
            # new one is refused before anything ran, and this shape decodes eagerly
            logger.warning(
                "the decoding step reached torch.compile's recompile limit (%d graphs: one per model, batch size "
                "and cache length); this shape decodes eagerly (raise torch._dynamo.config.recompile_limit to "
                "compile more)",
                torch._dynamo.config.recompile_limit,
            )
            self.failed = True
            _OVER_LIMIT.add(self.limit_key)
            return self.model(**kwargs)
        self.rec.record_call(states)
        self.calls += 1
        self.cache = kwargs.get("past_key_values")
        return output


def _reason(error: BaseException) -> str:
    """One line on why compiling failed: the backend's own error (dynamo wraps it) or the first line of dynamo's."""
    inner = getattr(error, "inner_exception", None) or error.__cause__ or error
    lines = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {lines[0][:300]}" if lines else type(inner).__name__


@contextmanager
def compiled_decoding(
    model: nn.Module,
    rec: ResidualRecording,
    options: CompileOptions,
    config: Any,
    *,
    batch_rows: int,
    prompt_len: int,
    max_new_tokens: int,
) -> Iterator[RecordedStep]:
    """Within the block, the decoding steps of ``model.generate`` (with ``config``, set here by
    :func:`static_generation_config`, and the yielded step's ``generate_kwargs``: the kept cache, if any) run the
    compiled step and record into ``rec``; the model is restored on exit, and the static cache kept for the next
    call (:func:`kept_cache`)."""
    param = next(model.parameters())
    cache_len = cache_length(prompt_len, max_new_tokens, options.cache_bucket)
    key: CacheKey = (batch_rows, cache_len, param.dtype, param.device)
    kept = kept_cache(model, key)
    static_generation_config(config, options, cache_len=None if kept is not None else cache_len)
    step = RecordedStep(model, rec, options, key, kept)
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
        if step.cache is not None:
            _KEPT_CACHES[model] = (key, step.cache)
