"""Generate while recording, for every generated token, the residual stream at the position that predicts it."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from evolens.capture.compiled import (
    CompileOptions,
    RecordedStep,
    compile_unsupported,
    compiled_decoding,
)
from evolens.capture.hooks import Placement, ResidualRecording, record_residual_stream
from evolens.capture.rules import RuleRecord, StepRule, StepSession, rule_processor
from evolens.errors import CaptureError, SettingsError, check_positive_int

logger = logging.getLogger(__name__)

StopReason = Literal["eos", "max_new_tokens"]


@dataclass(frozen=True)
class GenerationSettings:
    """How tokens are chosen. Greedy by default; sampling is reproducible under ``seed``.

    Attributes:
        max_new_tokens: Upper bound on generated tokens (>= 1).
        do_sample: Sample instead of taking the arg-max.
        temperature: Softmax temperature when sampling (> 0).
        top_p: Nucleus sampling mass (0 < top_p <= 1).
        top_k: Keep the k most probable tokens when sampling (0 = off).
        repetition_penalty: Hugging Face's repetition penalty (1 = off).
        seed: Seed of the sampling RNG (used only while generating; the global RNG is left as it was).
    """

    max_new_tokens: int = 128
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_positive_int("max_new_tokens", self.max_new_tokens)
        if not self.temperature > 0:
            raise SettingsError(f"temperature must be > 0, got {self.temperature!r}")
        if not 0 < self.top_p <= 1:
            raise SettingsError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise SettingsError(f"top_k must be an integer >= 0, got {self.top_k!r}")
        if not self.repetition_penalty > 0:
            raise SettingsError(f"repetition_penalty must be > 0, got {self.repetition_penalty!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GenerationSettings:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass
class CapturedItem:
    """The recording of one prompt's generation.

    Attributes:
        hidden_states: ``[n_layers + 1, n_steps, d_model]``; entry ``[0, t]`` is the input of decoder layer 0 and
            ``[l, t]`` the output of layer ``l``, all before the final norm, at the position that predicts
            generated token ``t``.
        generated_ids: ``[n_steps]`` the generated token ids (the EOS token included when one was produced).
        prompt_ids: ``[n_prompt]`` the prompt's token ids as the model saw them (image placeholders expanded,
            padding removed).
        prompt_hidden_states: ``[n_layers + 1, n_prompt, d_model]`` when prompt positions were kept, else ``None``.
        image_token_positions: ``[n_image_tokens]`` indices into ``prompt_ids`` of the image placeholder tokens.
        stop_reason: ``"eos"`` or ``"max_new_tokens"``.
        overridden: ``(step, token)`` of each step at which a decoding rule chose another token than the arg-max
            of the scores it was given (``token``: that arg-max); empty without a rule
            (:mod:`evolens.capture.rules`).
    """

    hidden_states: torch.Tensor
    generated_ids: torch.Tensor
    prompt_ids: torch.Tensor
    prompt_hidden_states: torch.Tensor | None
    image_token_positions: torch.Tensor
    stop_reason: StopReason
    overridden: list[tuple[int, int]] = field(default_factory=list)


def eos_token_ids(model: nn.Module, tokenizer: Any) -> tuple[int, ...]:
    """Every id that ends generation: the generation config's EOS id(s) and the tokenizer's."""
    ids: set[int] = set()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (gen_eos, getattr(tokenizer, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return tuple(sorted(ids))


def generation_config(
    model: nn.Module, settings: GenerationSettings, *, eos: Sequence[int], pad: int, suppress: Sequence[int]
) -> Any:
    """The ``GenerationConfig`` a trace generates with: the model's own, updated with ``settings`` (greedy unless
    sampling is asked for, one beam, no length floor), the ``eos`` ids, ``pad`` and the ``suppress``-ed ids; no
    hidden states or scores are returned (the hooks capture them). Plain ``generate`` with it is what a trace is
    compared against (``bench/``)."""
    from transformers import GenerationConfig

    base = getattr(model, "generation_config", None)
    config = copy.deepcopy(base) if base is not None else GenerationConfig()
    config.update(
        max_new_tokens=settings.max_new_tokens,
        max_length=None,
        min_new_tokens=None,
        min_length=0,
        do_sample=settings.do_sample,
        num_beams=1,
        temperature=settings.temperature if settings.do_sample else None,
        top_p=settings.top_p if settings.do_sample else None,
        top_k=settings.top_k if settings.do_sample else None,
        repetition_penalty=settings.repetition_penalty,
        eos_token_id=list(eos) if eos else None,
        pad_token_id=pad,
        suppress_tokens=list(suppress) or None,
        output_hidden_states=False,
        output_scores=False,
        output_logits=False,
        return_dict_in_generate=True,
    )
    return config


StepsListener = Callable[[torch.Tensor, torch.Tensor], None]


class _StepFeed:
    """A stopping criterion that never stops generation: it hands every ``every`` new steps' states and tokens to
    ``listener`` (Hugging Face calls its stopping criteria after each step, with the tokens so far)."""

    def __init__(self, rec: ResidualRecording, listener: StepsListener, prompt_len: int, every: int) -> None:
        self.rec, self.listener, self.prompt_len, self.every = rec, listener, prompt_len, every
        self.fed = 0
        self._never: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        n_steps = input_ids.shape[1] - self.prompt_len
        if n_steps - self.fed >= self.every:
            self.feed(input_ids, n_steps)
        if self._never is None or self._never.shape[0] != input_ids.shape[0]:
            self._never = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        return self._never

    def feed(self, input_ids: torch.Tensor, upto: int) -> None:
        """Hand steps ``[fed, upto)`` to the listener (their forward calls are complete)."""
        if upto <= self.fed:
            return
        self.rec.finish_call()  # layers the last call skipped pass the stream through before anyone reads it
        start = self.prompt_len
        self.listener(self.rec.states()[:, self.fed : upto], input_ids[:, start + self.fed : start + upto])
        self.fed = upto


def _to_model(inputs: Mapping[str, Any], device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    moved: dict[str, Any] = {}
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device)
            if value.is_floating_point():
                value = value.to(dtype)
        moved[key] = value
    return moved


def generate_with_capture(
    model: nn.Module,
    layers: nn.ModuleList,
    inputs: Mapping[str, Any],
    settings: GenerationSettings,
    *,
    eos_ids: Sequence[int],
    pad_id: int,
    image_token_id: int | None = None,
    suppress_ids: Sequence[int] = (),
    keep_prompt: bool = False,
    storage_dtype: torch.dtype | None = None,
    storage_device: str | torch.device | None = "cpu",
    placement: Placement = "auto",
    max_device_bytes: int | None = None,
    listener: StepsListener | None = None,
    listen_every: int = 16,
    rule: StepRule | None = None,
    compile_options: CompileOptions | None = None,
) -> list[CapturedItem]:
    """Run ``model.generate`` on a (left-padded) batch and return one :class:`CapturedItem` per row.

    Args:
        model: A Hugging Face generative model.
        layers: Its text decoder's layers (the residual stream is recorded around them).
        inputs: Processor output: ``input_ids``, ``attention_mask`` and any pixel/grid tensors.
        settings: Decoding settings.
        eos_ids: Ids that end an item's generation.
        pad_id: Padding id (left padding).
        image_token_id: Placeholder id whose prompt positions are reported.
        suppress_ids: Ids generation must never emit (image placeholders).
        keep_prompt: Also keep every prompt position's states (from the prefill call).
        storage_dtype: dtype of the kept states (``None``: the model's dtype, which keeps the lens exact).
        storage_device: Where the kept states live; ``None`` leaves them where they were captured, in the model's
            dtype (views into the capture buffer, on the model's device unless it spilled; see ``placement``),
            for an analysis that runs there before they move.
        placement: Where the capture buffer lives (:func:`~evolens.capture.hooks.buffer_placement`): ``"auto"``
            (the model's device when it fits, else pinned host memory), ``"device"`` or ``"host"``.
        max_device_bytes: Device budget of ``"auto"`` placement (``None``: a share of the free memory).
        listener: Called during generation with the states ``[n_layers + 1, n_new, batch, d_model]`` (a view of
            the capture buffer) and tokens ``[batch, n_new]`` (on the model's device) of every ``listen_every``
            new steps, and once more after it with the rest: an analysis can follow the generation (``None``:
            nothing is called).
        listen_every: Steps between two calls of ``listener``.
        rule: A decoding rule applied at every step (:mod:`evolens.capture.rules`); with a contrast rule the
            batch's second half are the contrast rows, and only the first half's items are returned.
        compile_options: Decode with a static KV cache and a compiled step (:mod:`evolens.capture.compiled`);
            a family that cannot compile decodes eagerly, with a warning (``None``: eager decoding).
    """
    batch, input_ids, attention_mask = _model_inputs(model, inputs)
    n_items = _item_rows(input_ids.shape[0], rule, listener)
    config = generation_config(model, settings, eos=eos_ids, pad=pad_id, suppress=suppress_ids)
    check_positive_int("listen_every", listen_every)
    sequences, rec, record = _generate_recording(
        model,
        layers,
        batch,
        config,
        settings,
        prompt_len=input_ids.shape[1],
        keep_prompt=keep_prompt,
        placement=placement,
        max_device_bytes=max_device_bytes,
        listener=listener,
        listen_every=listen_every,
        rule=rule,
        n_items=n_items,
        compile_options=compile_options,
    )
    return _captured_items(
        sequences[:n_items],
        rec,
        input_ids,
        attention_mask,
        record,
        eos_ids=eos_ids,
        image_token_id=image_token_id,
        keep_prompt=keep_prompt,
        storage_device=storage_device,
        storage_dtype=storage_dtype,
    )


def _item_rows(n_rows: int, rule: StepRule | None, listener: StepsListener | None) -> int:
    """How many of a batch's ``n_rows`` are items: half of them under a contrast rule (which needs an even batch,
    items then their contrast rows, and no listener), else all."""
    if rule is None or not rule.contrast:
        return n_rows
    if n_rows % 2 or listener is not None:
        raise CaptureError(
            "a contrast rule needs an even batch (items, then their contrast rows) and no listener"
        )
    return n_rows // 2


def _model_inputs(
    model: nn.Module, inputs: Mapping[str, Any]
) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """The processor's ``inputs`` on the model's device (floating tensors in its dtype), with the prompt's ids
    and its attention mask (all ones when ``inputs`` has none) as given."""
    input_ids = inputs["input_ids"]
    attention_mask = inputs.get("attention_mask")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    param = next(model.parameters())
    batch = _to_model(inputs, param.device, param.dtype)
    batch["attention_mask"] = attention_mask.to(param.device)
    return batch, input_ids, attention_mask


def _captured_items(
    sequences: torch.Tensor,
    rec: ResidualRecording,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    record: RuleRecord | None,
    *,
    eos_ids: Sequence[int],
    image_token_id: int | None,
    keep_prompt: bool,
    storage_device: str | torch.device | None,
    storage_dtype: torch.dtype | None,
) -> list[CapturedItem]:
    """One :class:`CapturedItem` per row of a finished generation: ``sequences`` (prompt and new tokens, on the
    host; the item rows only) matched to the recording ``rec``, which must hold one decoder call per generated
    token, with what a decoding rule changed (``record``, or ``None`` without one)."""
    new_tokens = sequences[:, input_ids.shape[1] :]
    n_calls = rec.n_calls
    if n_calls != new_tokens.shape[1]:
        raise CaptureError(
            f"the decoder ran {n_calls} times for {new_tokens.shape[1]} generated tokens; this model's generate() "
            "does not make one forward pass per token, so states cannot be matched to tokens"
        )
    # [n_boundaries, n_calls, batch, d_model]: one copy per call to the storage device (none when it is None)
    stacked = rec.states()
    if storage_device is not None:
        stacked = stacked.to(device=storage_device, dtype=storage_dtype or stacked.dtype)
    eos_set = torch.tensor(sorted(set(eos_ids)), dtype=torch.long)
    prompt = rec.prompt if keep_prompt else None
    items = [
        _row_item(
            row,
            new_tokens[row],
            input_ids[row].cpu(),
            attention_mask[row].bool().cpu(),
            stacked,
            prompt,
            eos_set=eos_set,
            image_token_id=image_token_id,
            storage_device=storage_device,
            storage_dtype=storage_dtype,
        )
        for row in range(sequences.shape[0])
    ]
    if record is not None:
        for row, item in enumerate(items):
            item.overridden = record.overridden(row, item.generated_ids.shape[0])
    return items


def _generate_recording(
    model: nn.Module,
    layers: nn.ModuleList,
    batch: dict[str, Any],
    config: Any,
    settings: GenerationSettings,
    *,
    prompt_len: int,
    keep_prompt: bool,
    placement: Placement,
    max_device_bytes: int | None,
    listener: StepsListener | None,
    listen_every: int,
    rule: StepRule | None,
    n_items: int,
    compile_options: CompileOptions | None = None,
) -> tuple[torch.Tensor, ResidualRecording, RuleRecord | None]:
    """Run ``model.generate`` once with the residual stream recorded around ``layers`` and return the sequences
    (prompt and new tokens, on the host) and the closed recording. Sampling draws from an RNG forked for the call
    and seeded with ``settings.seed``, so the caller's global RNG is left as it was; the ``listener``, if any, is
    fed by a stopping criterion during generation and once more after it with the steps left; the ``rule``, if
    any, by a logits processor (:func:`~evolens.capture.rules.rule_processor`), whose record is returned; with
    ``compile_options`` the decoding steps run compiled (:func:`_decoding_steps`)."""
    from transformers import LogitsProcessorList, StoppingCriteriaList

    param = next(model.parameters())
    devices = [param.device.index or 0] if param.device.type == "cuda" else []
    with (
        torch.random.fork_rng(devices=devices),
        record_residual_stream(
            layers,
            keep_prompt=keep_prompt,
            capacity=settings.max_new_tokens,
            placement=placement,
            max_device_bytes=max_device_bytes,
        ) as rec,
    ):
        torch.manual_seed(settings.seed)
        feed = None if listener is None else _StepFeed(rec, listener, prompt_len, listen_every)
        processors, record = LogitsProcessorList(), None
        if rule is not None:
            rule.start(StepSession(model, layers, batch, prompt_len, n_items, rec.paused))
            processor, record = rule_processor(rec, rule, n_items)
            processors.append(processor)
        steps = _decoding_steps(
            model, rec, config, compile_options, batch, prompt_len, settings.max_new_tokens
        )
        with torch.inference_mode(), steps as compiled:
            out = model.generate(  # type: ignore[operator]
                **batch,
                **(compiled.generate_kwargs if compiled is not None else {}),
                generation_config=config,
                stopping_criteria=None if feed is None else StoppingCriteriaList([feed]),
                logits_processor=processors,
            )
            if feed is not None:  # the rest (a count that disagrees with the tokens is refused by the caller)
                feed.feed(out.sequences, min(rec.n_calls, out.sequences.shape[1] - prompt_len))
    if compiled is not None and compiled.calls == 0 and not compiled.failed and rec.n_calls > 1:
        logger.warning(
            "generate did not compile the decoding steps (Hugging Face's criteria); they ran eagerly"
        )
    return out.sequences.cpu(), rec, record


_WARNED_EAGER: set[str] = set()


def _decoding_steps(
    model: nn.Module,
    rec: ResidualRecording,
    config: Any,
    options: CompileOptions | None,
    batch: Mapping[str, Any],
    prompt_len: int,
    max_new_tokens: int,
) -> AbstractContextManager[RecordedStep | None]:
    """The context the decoding steps run in: compiled ones recorded into ``rec`` (``config`` set for a static
    cache, :mod:`evolens.capture.compiled`) when ``options`` asks for them and the family can compile; else
    nothing (eager steps, recorded by the hooks)."""
    if options is None:
        return nullcontext()
    reason = compile_unsupported(model)
    if reason is not None:
        if type(model).__name__ not in _WARNED_EAGER:  # once per model class, not once per batch
            _WARNED_EAGER.add(type(model).__name__)
            logger.warning("%s", reason)
        return nullcontext()
    return compiled_decoding(
        model,
        rec,
        options,
        config,
        batch_rows=int(batch["input_ids"].shape[0]),
        prompt_len=prompt_len,
        max_new_tokens=max_new_tokens,
    )


def _stop_step(generated: torch.Tensor, eos_set: torch.Tensor) -> tuple[int, StopReason]:
    """How many of a row's ``generated`` tokens are its own and why it stopped: up to and including its first EOS
    id (the rest is padding after the row finished before the batch), else all of them."""
    is_eos = torch.isin(generated, eos_set) if len(eos_set) else torch.zeros_like(generated, dtype=torch.bool)
    if bool(is_eos.any()):
        return int(is_eos.nonzero()[0, 0]) + 1, "eos"
    return generated.shape[0], "max_new_tokens"


def _row_item(
    row: int,
    generated: torch.Tensor,
    row_ids: torch.Tensor,
    real: torch.Tensor,
    stacked: torch.Tensor,
    prompt: list[torch.Tensor] | None,
    *,
    eos_set: torch.Tensor,
    image_token_id: int | None,
    storage_device: str | torch.device | None,
    storage_dtype: torch.dtype | None,
) -> CapturedItem:
    """The :class:`CapturedItem` of batch row ``row``: its ``generated`` tokens up to its stop, its prompt without
    the left padding (``real`` marks the prompt's own positions in ``row_ids``), its slice of the ``stacked``
    states ``[n_boundaries, n_calls, batch, d_model]`` and, when ``prompt`` holds the prefill's states per
    boundary, its prompt positions' states."""
    n_steps, stop = _stop_step(generated, eos_set)
    prompt_ids = row_ids[real]
    n_pad = int((~real).sum())
    if bool(real[n_pad:].all()) is False:
        raise CaptureError(
            "prompts must be left-padded so the last position predicts the next token for every row"
        )
    prompt_states = None
    if prompt is not None:
        prompt_states = torch.stack([p[row, n_pad:] for p in prompt])
        if storage_device is not None:
            prompt_states = prompt_states.to(device=storage_device, dtype=storage_dtype or stacked.dtype)
    positions = (
        (prompt_ids == image_token_id).nonzero().flatten()
        if image_token_id is not None
        else torch.zeros(0, dtype=torch.long)
    )
    return CapturedItem(
        hidden_states=(
            stacked[:, :n_steps, row] if storage_device is None else stacked[:, :n_steps, row].contiguous()
        ),
        generated_ids=generated[:n_steps].clone(),
        prompt_ids=prompt_ids.clone(),
        prompt_hidden_states=prompt_states,
        image_token_positions=positions,
        stop_reason=stop,
    )
