"""How :meth:`~evolens.api.LVLM.trace` follows generations: :class:`TraceOptions`, a frozen dataclass passed whole
(how a model loads is :class:`~evolens.api.lvlm.LoadOptions`, beside :func:`~evolens.api.load`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

from evolens.api.decoding import Decoding
from evolens.capture.compiled import CompileOptions
from evolens.capture.generate import GenerationSettings
from evolens.errors import SettingsError, check_positive_int
from evolens.lens.logit_lens import check_lens_mode, lens_dtype_of, metrics_dtype_of
from evolens.metrics.compute import dtype_name

#: Decoding options accepted flat by :meth:`LVLM.trace` and :meth:`TraceOptions.from_flat`.
_DECODING = tuple(GenerationSettings.__dataclass_fields__)


@dataclass(frozen=True)
class TraceOptions:
    """How :meth:`LVLM.trace` follows generations (defaults in brackets). One object, passed whole from the command
    line to the runner and the API; a run records the fields that change results (:meth:`run_config`).

    Attributes:
        generation: Decoding: ``max_new_tokens`` [128], greedy unless ``do_sample``, sampling controls, ``seed``
            [0] (:class:`~evolens.capture.generate.GenerationSettings`).
        lens: ``"logit"`` (norm then head) or ``"paper"`` (the paper code's variant) ["logit"].
        lens_dtype: The lens's fast mode: the language head's GEMM in ``"bfloat16"`` (or ``"float16"``), norm,
            softmax and metrics in float32; about 2-3x faster on CPUs with bf16 units, errors in README
            "Benchmarks" (recorded in the trace's manifest) [None: exact].
        metrics_dtype: ``"float64"``: the language head, softmax and every metric in float64 (kept and stored in
            float64), so that ``lens="paper"`` equals the paper's heatmap function evaluated in float64 to 1e-9;
            the norm stays the model's own (README "Definitions"). Recorded in the trace's manifest and, when not
            the default, in the run's configuration; cannot combine with ``lens_dtype`` ["float32"].
        topk: Top tokens kept per (layer, step) [10].
        track: Extra tokens (strings or ids) whose probability and rank are kept [None].
        prompt_positions: Keep every prompt position's states too [False].
        keep_hidden_states: Keep the ``[n_layers + 1, n_steps, d_model]`` states [True].
        storage_dtype: dtype of kept states (None: the model's, which keeps the lens exact) [None].
        storage_device: Where kept states live ["cpu"]. The states are captured and analysed on the model's device
            either way; they leave it once per generated batch, and not at all when not kept.
        chunk_steps: Steps per lens chunk (None: from ``max_chunk_bytes``) [None].
        max_chunk_bytes: Memory budget of one lens chunk [None: 512 MiB on a CPU; on a GPU half its free memory,
            at most 8 GiB].
        batch_size: Items per generate call [8].
        raw_prompt: Send the prompt as is, without the chat template [False].
        system_prompt: A system turn for chat templates that accept one [None].
        decoding: A decoding strategy that reads the lens while generating (:mod:`evolens.decoding`, e.g.
            ``evolens.decoding.Dola()``); it decodes greedily, so it refuses ``do_sample`` [None: plain decoding].
        compile: Decode with a static KV cache and a compiled decoding step (CUDA graphs on a GPU; a family that
            cannot compile decodes eagerly, with a warning); the states are the same up to float rounding, as
            with another batch size, so a run does not record it [None: eager decoding].
    """

    generation: GenerationSettings = field(default_factory=GenerationSettings)
    lens: str = "logit"
    lens_dtype: str | torch.dtype | None = None
    metrics_dtype: str | torch.dtype = "float32"
    topk: int = 10
    track: tuple[str | int, ...] | None = None
    prompt_positions: bool = False
    keep_hidden_states: bool = True
    storage_dtype: torch.dtype | None = None
    storage_device: str | torch.device = "cpu"
    chunk_steps: int | None = None
    max_chunk_bytes: int | None = None
    batch_size: int = 8
    raw_prompt: bool = False
    system_prompt: str | None = None
    decoding: Decoding | None = None
    compile: CompileOptions | None = None

    def __post_init__(self) -> None:
        check_lens_mode(self.lens)
        if self.decoding is not None and self.generation.do_sample:
            raise SettingsError(
                f"decoding strategy {self.decoding.name!r} chooses tokens greedily; it cannot combine with "
                "do_sample (drop one of them)"
            )
        if (
            metrics_dtype_of(self.metrics_dtype) == torch.float64
            and lens_dtype_of(self.lens_dtype) is not None
        ):
            raise SettingsError(
                f"lens_dtype={dtype_name(lens_dtype_of(self.lens_dtype))!r} (the fast lens) cannot combine with "
                "metrics_dtype='float64': the one rounds the logits to 8 significant bits, the other is for exact "
                "numbers; drop one of them"
            )
        check_positive_int("batch_size", self.batch_size)
        check_positive_int("topk", self.topk)
        if self.track is not None and not isinstance(self.track, tuple):
            object.__setattr__(self, "track", tuple(self.track))

    @classmethod
    def from_flat(cls, base: TraceOptions | None = None, **options: Any) -> TraceOptions:
        """``base`` (default: the defaults) with ``options`` given by name — decoding ones (``max_new_tokens`` ...)
        included; an unknown name raises :class:`~evolens.errors.SettingsError`."""
        base = base or cls()
        own = set(cls.__dataclass_fields__) - {"generation"}
        unknown = set(options) - own - set(_DECODING)
        if unknown:
            raise SettingsError(
                f"unknown trace option(s) {sorted(unknown)}; known: {sorted(own | set(_DECODING))}"
            )
        decoding = {k: options.pop(k) for k in list(options) if k in _DECODING}
        generation = replace(base.generation, **decoding) if decoding else base.generation
        return replace(base, generation=generation, **options)

    def run_config(self) -> dict[str, Any]:
        """The options that change a run's results, as ``run.json → config.trace`` records them.

        ``metrics_dtype`` is recorded only when it is not the default (float32), and ``decoding`` only when a
        strategy is set, so that a run directory written before these options existed resumes with the default
        options (its configuration has no such key)."""
        wide = metrics_dtype_of(self.metrics_dtype) != torch.float32
        return {
            **self.generation.to_dict(),
            "lens": self.lens,
            "lens_dtype": dtype_name(lens_dtype_of(self.lens_dtype)),
            "topk": self.topk,
            "track": list(self.track) if self.track is not None else None,
            "raw_prompt": self.raw_prompt,
            "system_prompt": self.system_prompt,
            **({"metrics_dtype": dtype_name(metrics_dtype_of(self.metrics_dtype))} if wide else {}),
            **({"decoding": self.decoding.to_dict()} if self.decoding is not None else {}),
        }
