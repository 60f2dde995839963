"""Random-weight LLaVA-1.5 checkpoints of any size for the benchmarks (no download).

The layout is llava-hf's (CLIP tower, 2-layer projector, Llama decoder), as in ``evolens.testing``'s tiny LLaVA,
with the decoder's width, depth and vocabulary chosen by the caller. ``LLAVA_7B`` is LLaVA-1.5-7B's decoder.
"""

from __future__ import annotations

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
