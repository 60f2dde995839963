"""The Python API: :func:`load` a model, then :meth:`LVLM.trace` generations through every layer.

This stage sits above models, capture, lens, metrics and trace; it only composes them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import torch

from evolens.api.batch import BatchItems, build_traces, capture_batch
from evolens.api.options import TraceOptions
from evolens.capture.hooks import record_residual_stream
from evolens.errors import AdapterError, PromptError, SettingsError
from evolens.lens.base import Lens
from evolens.lens.logit_lens import LogitLens, lens_dtype_of, metrics_dtype_of
from evolens.models.inputs import (
    ImageInfo,
    ImageInput,
    adds_special_tokens,
    check_prompt,
    load_image,
    render_prompt,
    unknown_words,
)
from evolens.models.loading import LoadedModel, load_model
from evolens.trace import LensedTrace, ModelInfo, Trace

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadOptions:
    """How a run loads its model (see :func:`evolens.load`).

    Attributes:
        device: ``"auto"`` (under ``torchrun``: this rank's GPU), ``"cpu"``, ``"cuda:1"`` ...
        dtype: ``"auto"``, ``"float32"``, ``"bfloat16"``, ``"float16"``.
        device_map: ``"auto"`` spreads one model over this node's GPUs (one process per node).
        attn_implementation: ``"eager"``, ``"sdpa"`` ... (None: the model's default).
        allow_pickle: Accept pickle-only checkpoints (unsafe: unpickling runs code).
        trust_remote_code: Run code shipped with the checkpoint.
    """

    device: str | None = field(
        default="auto", metadata={"help": "auto, cpu, cuda, cuda:1 ... (auto under torchrun: the rank's GPU)"}
    )
    dtype: str | None = field(default="auto", metadata={"help": "auto, float32, bfloat16, float16"})
    device_map: str | None = field(
        default=None, metadata={"help": "'auto' spreads a large model over this node's GPUs"}
    )
    attn_implementation: str | None = field(
        default=None, metadata={"help": "eager, sdpa ... (default: the model's)"}
    )
    allow_pickle: bool = field(default=False, metadata={"help": "Accept pickle-only checkpoints (unsafe)"})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run code shipped with the checkpoint"})

    def open(self, source: str | Path, *, device: str | None = None) -> LVLM:
        """:func:`~evolens.api.load` ``source`` with these options (``device``, when given, over :attr:`device`)."""
        return load(
            source,
            device=device if device is not None else self.device,
            dtype=self.dtype,
            device_map=self.device_map,
            attn_implementation=self.attn_implementation,
            allow_pickle=self.allow_pickle,
            trust_remote_code=self.trust_remote_code,
        )


class LVLM:
    """A loaded model ready to be traced. Build it with :func:`evolens.load`.

    Attributes:
        loaded: The model, processor, family and resolved roles.
    """

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self._vocab: dict[int, str] = {}  # token id -> display string, decoded once per LVLM

    # ------------------------------------------------------------------ facts
    @property
    def model(self) -> Any:
        """The Hugging Face model."""
        return self.loaded.model

    @property
    def processor(self) -> Any:
        return self.loaded.processor

    @property
    def tokenizer(self) -> Any:
        return self.loaded.tokenizer

    @property
    def family(self) -> str:
        return self.loaded.family.name

    @property
    def n_layers(self) -> int:
        return self.loaded.roles.n_layers

    @property
    def is_vlm(self) -> bool:
        return self.loaded.family.kind == "vlm"

    def __repr__(self) -> str:
        r = self.loaded.roles
        return (
            f"LVLM({self.loaded.source!r}, family={self.family!r}, n_layers={r.n_layers}, d_model={r.d_model}, "
            f"vocab_size={r.vocab_size}, device={self.loaded.device}, dtype={self.loaded.dtype})"
        )

    def lens(self, mode: str = "logit") -> LogitLens:
        """The model's logit lens (``"logit"``: norm then head; ``"paper"``: the paper code's placement)."""
        return LogitLens.from_roles(self.loaded.roles, mode)

    def attach(self, trace: Trace) -> LensedTrace:
        """``trace`` with this model's lens and tokenizer attached: full logits, any token id's probability, other
        lens modes (see :class:`~evolens.trace.lensed.LensedTrace`). The trace must come from this model.

        Raises:
            SettingsError: The trace has another number of layers.
        """
        return LensedTrace(trace, self.lens(), self.tokenizer)

    def model_info(self) -> ModelInfo:
        r = self.loaded.roles
        return ModelInfo(
            source=self.loaded.source,
            family=self.family,
            model_type=str(self.model.config.model_type),
            n_layers=r.n_layers,
            d_model=r.d_model,
            vocab_size=r.vocab_size,
            dtype=str(self.loaded.dtype).removeprefix("torch."),
            weights_hash=self.loaded.weights_hash,
        )

    def render_prompt(self, prompt: str, *, image: bool | None = None, system: str | None = None) -> str:
        """The prompt string as the model will see it (chat template applied), before tokenization."""
        has_image = self.is_vlm if image is None else image
        return render_prompt(
            self.loaded.family, self.processor, check_prompt(prompt), has_image=has_image, system=system
        )

    def token_ids(self, words: Sequence[str | int]) -> list[int]:
        """Token ids for ``words``: ints pass through; a string maps to the first token of its encoding.

        A string is encoded both bare and with a leading space (as it appears mid-sentence); the shorter encoding
        is used, so ``"red"`` finds the token the model emits for " red".
        """
        ids: list[int] = []
        for word in words:
            if isinstance(word, int) and not isinstance(word, bool):
                ids.append(word)
                continue
            if not isinstance(word, str) or not word.strip():
                raise SettingsError(f"tracked tokens must be ints or non-empty strings, got {word!r}")
            options = [
                self.tokenizer.encode(w, add_special_tokens=False) for w in (word, " " + word.lstrip())
            ]
            options = [o for o in options if o]
            if not options:
                raise SettingsError(f"{word!r} encodes to no token")
            best = min(options, key=len)
            if len(best) > 1:
                logger.warning("%r spans %d tokens; tracking its first token only", word, len(best))
            ids.append(best[0])
        return ids

    # ------------------------------------------------------------------ trace
    @overload
    def trace(
        self,
        image: ImageInput | None = ...,
        prompt: str | None = ...,
        *,
        images: None = ...,
        prompts: None = ...,
        options: TraceOptions | None = ...,
        item_ids: Sequence[str] | None = ...,
        **overrides: Any,
    ) -> Trace: ...

    @overload
    def trace(
        self,
        image: None = ...,
        prompt: None = ...,
        *,
        images: Sequence[ImageInput | None] | None = ...,
        prompts: Sequence[str] | str,
        options: TraceOptions | None = ...,
        item_ids: Sequence[str] | None = ...,
        **overrides: Any,
    ) -> list[Trace]: ...

    def trace(
        self,
        image: ImageInput | None = None,
        prompt: str | None = None,
        *,
        images: Sequence[ImageInput | None] | None = None,
        prompts: Sequence[str] | str | None = None,
        options: TraceOptions | None = None,
        item_ids: Sequence[str] | None = None,
        **overrides: Any,
    ) -> Trace | list[Trace]:
        """Generate and follow every generated token through every decoder layer.

        One item: ``trace(image, prompt)`` returns a :class:`Trace`. A batch: ``trace(images=[...],
        prompts=[...])`` (or one ``prompts`` string for every image; ``prompts`` alone for text-only items)
        returns a list, in order; items run in left-padded batches of ``batch_size`` and give the same results as
        one at a time.

        Args:
            image: A path, a PIL image, or ``None`` for text-only input.
            prompt: The instruction or question (a chat template is applied unless ``raw_prompt``).
            images: Batch mode: one image (or ``None``) per item.
            prompts: Batch mode: one prompt per item, or one string for all.
            options: A :class:`TraceOptions` (default: its defaults).
            item_ids: Names of the items [``"0"``, ``"1"``...].
            **overrides: Fields of :class:`TraceOptions` by name, over ``options`` — decoding
                (``max_new_tokens=128``, greedy unless ``do_sample``, ``seed=0``), ``lens="logit"`` or ``"paper"``,
                ``topk=10``, ``track`` (extra tokens whose probability and rank are kept), ``prompt_positions``,
                storage and chunking, ``batch_size``, ``raw_prompt``, ``system_prompt``.
        """
        opts = TraceOptions.from_flat(options, **overrides) if overrides else options or TraceOptions()
        if images is None and prompts is None:
            if prompt is None:
                raise PromptError("give a prompt: trace(image, prompt) or trace(images=[...], prompts=[...])")
            return self._trace_items([image], [prompt], opts, item_ids)[0]
        if image is not None or prompt is not None:
            raise PromptError("give either image/prompt or images/prompts, not both")
        if prompts is None:
            raise PromptError("images=[...] needs prompts=[...] (or one prompts string for every image)")
        image_list: list[ImageInput | None]
        if isinstance(prompts, str):
            image_list = list(images) if images is not None else [None]
            prompt_list = [prompts] * len(image_list)
        else:
            prompt_list = list(prompts)
            image_list = list(images) if images is not None else [None] * len(prompt_list)
        if len(prompt_list) != len(image_list):
            raise PromptError(
                f"got {len(image_list)} images but {len(prompt_list)} prompts; they pair up one to one"
            )
        if not image_list:
            raise PromptError("the batch is empty")
        return self._trace_items(image_list, prompt_list, opts, item_ids)

    def _trace_items(
        self,
        image_list: list[ImageInput | None],
        prompt_list: list[str],
        options: TraceOptions,
        item_ids: Sequence[str] | None,
    ) -> list[Trace]:
        for p in prompt_list:
            check_prompt(p)
        _warn_unknown_words(self.tokenizer, prompt_list)
        if not self.is_vlm and any(i is not None for i in image_list):
            raise PromptError(
                f"{self.loaded.source} is a text-only model ({self.family}); it takes no image (image=None)"
            )
        if self.loaded.family.needs_image and any(i is None for i in image_list):
            raise PromptError(
                f"family {self.family!r} needs an image with every prompt (its processor refuses text-only input)"
            )
        the_lens = (
            self.lens(options.lens)
            .with_matmul_dtype(lens_dtype_of(options.lens_dtype))
            .with_logits_dtype(metrics_dtype_of(options.metrics_dtype))
        )
        tracked = self.token_ids(options.track) if options.track else []
        ids = list(item_ids) if item_ids is not None else [str(i) for i in range(len(image_list))]
        if len(ids) != len(image_list) or len(set(ids)) != len(ids):
            raise PromptError("item_ids must be unique and one per item")
        loaded = [load_image(i) if i is not None else None for i in image_list]
        rendered = self._rendered(prompt_list, loaded, options)
        info = self.model_info()
        results: dict[int, Trace] = {}
        # Items with and without an image go to the processor separately (processors do not mix them).
        for has_image in (True, False):
            group = [i for i, img in enumerate(loaded) if (img is not None) == has_image]
            for start in range(0, len(group), options.batch_size):
                chunk = group[start : start + options.batch_size]
                traces = self._trace_batch(
                    [rendered[i] for i in chunk],
                    [loaded[i] for i in chunk],
                    [prompt_list[i] for i in chunk],
                    [ids[i] for i in chunk],
                    options=options,
                    lens=the_lens,
                    tracked=tracked,
                    info=info,
                )
                results.update(zip(chunk, traces, strict=True))
        return [results[i] for i in range(len(image_list))]

    def _rendered(
        self, prompts: Sequence[str], images: Sequence[Any | None], options: TraceOptions
    ) -> list[str]:
        """The prompts as the processor gets them: as given with ``raw_prompt``, else through the chat template
        (with an image turn for the items that have an image, and the options' system prompt)."""
        if options.raw_prompt:
            return list(prompts)
        return [
            self.render_prompt(p, image=img is not None, system=options.system_prompt)
            for p, img in zip(prompts, images, strict=True)
        ]

    def encode(self, rendered: Sequence[str], images: Sequence[Any] | None) -> Any:
        """Processor (or tokenizer) output for rendered prompts and PIL images, left-padded, as tensors."""
        special = adds_special_tokens(self.processor, rendered[0])
        if not self.is_vlm:
            return self.tokenizer(
                list(rendered), return_tensors="pt", padding=True, add_special_tokens=special
            )
        kwargs: dict[str, Any] = {
            "text": list(rendered),
            "return_tensors": "pt",
            "padding": True,
            "add_special_tokens": special,
            **self.loaded.family.processor_kwargs,
        }
        if images:
            # One list per prompt: the unambiguous batch layout (a flat list is one prompt's images for some
            # processors, e.g. Gemma 3 and SmolVLM).
            kwargs["images"] = [[image] for image in images]
        batch = self.processor(**kwargs)
        # Training targets some processors add (PaliGemma's ``labels``) must not reach generate().
        batch.pop("labels", None)
        return batch

    def _trace_batch(
        self,
        rendered: list[str],
        images: list[tuple[Any, ImageInfo] | None],
        prompts: list[str],
        item_ids: list[str],
        *,
        options: TraceOptions,
        lens: Lens,
        tracked: list[int],
        info: ModelInfo,
    ) -> list[Trace]:
        pil = [img[0] for img in images if img is not None]
        decoding = options.decoding
        if decoding is not None and decoding.contrast:
            # each item's contrast row follows the items, with the same image (a strategy may distort it)
            contrast = self._rendered([decoding.contrast_prompt(p) for p in prompts], images, options)
            inputs = decoding.contrast_inputs(
                self.encode(rendered + contrast, (pil + pil) or None), len(prompts)
            )
        else:
            inputs = self.encode(rendered, pil or None)
        captured, all_metrics = capture_batch(self.loaded, inputs, options, lens, tracked)
        batch = BatchItems(rendered, images, prompts, item_ids)
        return build_traces(batch, captured, all_metrics, self.tokenizer, options, info, self._vocab)

    # ----------------------------------------------------------------- checks
    def check_lens(self, text: str = "The image shows") -> float:
        """Largest |lens logit - model logit| at the last layer on a short text-only forward pass.

        The default lens applied to the last layer's pre-norm state must reproduce the model's own logits;
        :func:`load` calls this and refuses a family whose roles do not pass.
        """
        ids = self.tokenizer(text, return_tensors="pt").input_ids
        if ids.shape[1] == 0:
            raise AdapterError("the tokenizer encodes the check text to nothing")
        device = self.loaded.device
        with record_residual_stream(self.loaded.roles.decoder_layers) as rec, torch.inference_mode():
            out = self.model(input_ids=ids.to(device), use_cache=False)
        states = rec.states()[:, 0]  # [L + 1, 1, d]
        lens_logits = self.lens("logit").logits(states)[-1, 0]
        model_logits = out.logits[0, -1].float().to(lens_logits.device)
        return float((lens_logits - model_logits).abs().max())


def _warn_unknown_words(tokenizer: Any, prompts: Sequence[str]) -> None:
    """Warn once when prompts hold words the model's vocabulary lacks (they reach it as its unknown token)."""
    unknown: dict[str, None] = {}
    for prompt in dict.fromkeys(prompts):
        unknown.update(dict.fromkeys(unknown_words(tokenizer, prompt)))
    if unknown:
        words = list(unknown)
        shown = ", ".join(repr(w) for w in words[:10]) + (
            f" and {len(words) - 10} more" if len(words) > 10 else ""
        )
        logger.warning(
            "%d word(s) of the prompt are not in the model's vocabulary and reach it as %r: %s",
            len(words),
            tokenizer.unk_token,
            shown,
        )


def _tolerance(dtype: torch.dtype) -> float:
    return 1e-3 if dtype in (torch.float32, torch.float64) else 5e-2


def load(
    source: str | Path,
    *,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = "auto",
    family: str | None = None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    revision: str | None = None,
    local_files_only: bool = False,
    device_map: str | dict[str, Any] | None = None,
    attn_implementation: str | None = None,
    verify: bool = True,
) -> LVLM:
    """Load a vision-language model (or a causal LM, for text-only comparisons) for tracing.

    Args:
        source: A local directory written by ``save_pretrained`` or a hub id (``"llava-hf/llava-1.5-7b-hf"``).
        device: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda:0"``...
        dtype: ``"auto"`` (float32 on CPU, bfloat16 on CUDA), ``"float16"``, ``"bfloat16"``, ``"float32"``.
        family: Force a registered family (default: chosen from ``config.model_type``).
        allow_pickle: Accept pickle-only checkpoints (``*.bin``); off by default because unpickling runs code.
        trust_remote_code: Let transformers run code shipped with the checkpoint; off by default.
        revision, local_files_only: Hub options.
        device_map: ``"auto"`` spreads a large model over the available GPUs.
        attn_implementation: ``"eager"``, ``"sdpa"``...
        verify: Check on a short forward pass that the lens at the last layer reproduces the model's logits.

    Example:
        >>> import evolens
        >>> lvlm = evolens.load("llava-hf/llava-1.5-7b-hf")  # doctest: +SKIP
    """
    loaded = load_model(
        source,
        device=device,
        dtype=dtype,
        family=family,
        allow_pickle=allow_pickle,
        trust_remote_code=trust_remote_code,
        revision=revision,
        local_files_only=local_files_only,
        device_map=device_map,
        attn_implementation=attn_implementation,
    )
    lvlm = LVLM(loaded)
    if verify:
        err = lvlm.check_lens()
        tol = _tolerance(loaded.dtype)
        if not err <= tol:
            raise AdapterError(
                f"the logit lens of family {loaded.family.name!r} does not reproduce {source}'s logits at the last "
                f"layer (max |difference| {err:.3g} > {tol}); its roles are wrong for this model"
            )
    return lvlm
