"""Random-weight LLaVA-1.5 checkpoints of any size for the benchmarks (no download).

The layout is llava-hf's (CLIP tower, 2-layer projector, Llama decoder), as in ``evolens.testing``'s tiny LLaVA,
with the decoder's width, depth and vocabulary chosen by the caller. ``LLAVA_7B`` is LLaVA-1.5-7B's decoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


@dataclass(frozen=True)
class Geometry:
    """Decoder sizes of a random LLaVA (the vision tower stays tiny: its cost is not what is measured)."""

    n_layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int | None = None  # None: the word tokenizer's own (a few hundred words)
    max_positions: int = 2048


MID = Geometry(n_layers=12, hidden=768, intermediate=2048, heads=12, kv_heads=12)
LLAVA_7B = Geometry(n_layers=32, hidden=4096, intermediate=11008, heads=32, kv_heads=32, vocab=32000)


def random_llava(
    geometry: Geometry, seed: int = 0, dtype: torch.dtype | None = None, device: str | torch.device = "cpu"
) -> tuple[Any, Any]:
    """A random LLaVA-1.5 of ``geometry`` and its processor, built directly in ``dtype`` on ``device``."""
    from transformers import LlavaForConditionalGeneration

    from evolens.testing import word_tokenizer
    from evolens.testing.configs import llama_text_config
    from evolens.testing.tiny_llava import llava_config

    tokenizer = word_tokenizer(["<image>"])
    if geometry.vocab is not None and geometry.vocab > len(tokenizer):
        # pad the vocabulary with filler words so every id the random head picks decodes
        tokenizer = word_tokenizer(
            ["<image>"], extra_words=[f"w{i}" for i in range(geometry.vocab - len(tokenizer))]
        )
    text = llama_text_config(
        len(tokenizer),
        n_layers=geometry.n_layers,
        hidden_size=geometry.hidden,
        intermediate_size=geometry.intermediate,
        num_attention_heads=geometry.heads,
        num_key_value_heads=geometry.kv_heads,
        head_dim=geometry.hidden // geometry.heads,
        max_position_embeddings=geometry.max_positions,
    )
    config, processor = llava_config(tokenizer, text)
    previous = torch.get_default_dtype()
    devices = [torch.device(device).index or 0] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.device(device):
        torch.manual_seed(seed)
        torch.set_default_dtype(dtype or previous)
        try:
            model = LlavaForConditionalGeneration(config)
        finally:
            torch.set_default_dtype(previous)
    model.generation_config.eos_token_id = None  # random weights: stop only at max_new_tokens where possible
    return model.eval(), processor


def save_random_llava(directory: str | Path, geometry: Geometry, seed: int = 0) -> Path:
    """Write a random LLaVA of ``geometry`` (safetensors) and its processor to ``directory``."""
    model, processor = random_llava(geometry, seed)
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def in_memory_lvlm(model: Any, processor: Any, source: str) -> Any:
    """An :class:`evolens.LVLM` around a model built in memory (no checkpoint written and read back)."""
    from evolens.api import LVLM
    from evolens.models.loading import LoadedModel
    from evolens.models.registry import family_for_model_type
    from evolens.models.roles import resolve_roles

    family = family_for_model_type(model.config.model_type)
    tokenizer = getattr(processor, "tokenizer", processor)
    tokenizer.padding_side = "left"
    model.requires_grad_(False)
    loaded = LoadedModel(
        model=model,
        processor=processor,
        family=family,
        roles=resolve_roles(model, family),
        source=source,
        local_dir=Path("."),
        weight_files=(),
        _weights_hash="random-weights",
    )
    return LVLM(loaded)


def test_image(size: int = 64) -> Any:
    """A deterministic RGB image."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))


@dataclass(frozen=True)
class PreparedGeneration:
    """One encoded batch and the generation settings evolens's ``trace`` uses, to time plain ``generate`` against
    generation with the capture hooks on exactly the same work (``prepare_generation``)."""

    lvlm: Any
    inputs: dict[str, Any]  # on the CPU, as generate_with_capture takes them
    on_device: dict[str, Any]  # the same on the model's device, moved once, outside the timings
    settings: Any
    config: Any
    eos: list[int]
    pad: int

    def generate(self) -> int:
        """Plain ``model.generate``, no hooks; returns the tokens generated over the batch."""
        ids = self.on_device["input_ids"]
        with torch.inference_mode():
            out = self.lvlm.model.generate(**self.on_device, generation_config=self.config)
        return int(out.sequences.shape[1] - ids.shape[1]) * int(ids.shape[0])

    def generate_compiled(self, options: Any) -> int:
        """Plain ``model.generate`` with Hugging Face's own static cache and compiled forward, set up as evolens's
        compiled trace sets it up (``options``: :class:`~evolens.capture.compiled.CompileOptions`); no hooks."""
        import copy

        from evolens.capture.compiled import cache_length, static_generation_config

        ids = self.on_device["input_ids"]
        length = cache_length(int(ids.shape[1]), self.settings.max_new_tokens, options.cache_bucket)
        config = static_generation_config(copy.deepcopy(self.config), options, cache_len=length)
        with torch.inference_mode():
            out = self.lvlm.model.generate(**self.on_device, generation_config=config)
        return int(out.sequences.shape[1] - ids.shape[1]) * int(ids.shape[0])

    def capture(
        self, storage_device: str | None = "cpu", compile_options: Any = None, placement: Any = "auto"
    ) -> list[Any]:
        """The same generation with evolens's residual-stream hooks; the states moved to ``storage_device`` once,
        or left where they were captured (``None``: on the model's device, as ``trace`` leaves them for its
        analysis); with ``compile_options`` the decoding steps run compiled; ``placement="host"`` forces the
        capture buffer into pinned host memory (the spill path)."""
        from evolens.capture.generate import generate_with_capture

        roles = self.lvlm.loaded.roles
        return generate_with_capture(
            self.lvlm.model,
            roles.decoder_layers,
            self.inputs,
            self.settings,
            eos_ids=self.eos,
            pad_id=self.pad,
            image_token_id=roles.image_token_id,
            suppress_ids=roles.suppressed_token_ids,
            storage_device=storage_device,
            compile_options=compile_options,
            placement=placement,
        )


def prepare_generation(lvlm: Any, images: Sequence[Any], prompt: str, n_tokens: int) -> PreparedGeneration:
    """Encode ``prompt`` once per image (a batch) with the settings of ``lvlm.trace(..., max_new_tokens=n_tokens)``."""
    from evolens.capture.generate import GenerationSettings, eos_token_ids, generation_config

    roles = lvlm.loaded.roles
    rendered = [lvlm.render_prompt(prompt, image=True)] * len(images)
    settings = GenerationSettings(max_new_tokens=n_tokens)
    eos = eos_token_ids(lvlm.model, lvlm.tokenizer)
    pad = int(lvlm.tokenizer.pad_token_id)
    config = generation_config(lvlm.model, settings, eos=eos, pad=pad, suppress=roles.suppressed_token_ids)
    inputs = lvlm.encode(rendered, list(images))
    device = next(lvlm.model.parameters()).device
    on_device = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    return PreparedGeneration(lvlm, inputs, on_device, settings, config, eos, pad)
