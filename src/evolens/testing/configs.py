"""Small shared pieces of the tiny configs: a text decoder and vision towers a few kilobytes big."""

from __future__ import annotations

from typing import Any

HIDDEN = 32  # width of every tiny text decoder
HEADS = 4
KV_HEADS = 2
HEAD_DIM = HIDDEN // HEADS


def text_kwargs(
    vocab_size: int, n_layers: int, *, bos: int = 1, eos: int = 2, pad: int = 3
) -> dict[str, Any]:
    """Keyword arguments shared by the Llama-like text configs (Llama, Mistral, Qwen2, Gemma...)."""
    return {
        "hidden_size": HIDDEN,
        "intermediate_size": 2 * HIDDEN,
        "num_hidden_layers": n_layers,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": HEAD_DIM,
        "vocab_size": vocab_size,
        "max_position_embeddings": 512,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": pad,
        "tie_word_embeddings": False,
    }


def llama_text_config(
    vocab_size: int, *, n_layers: int = 4, bos: int = 1, eos: int = 2, pad: int = 3, **extra: Any
) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(**{**text_kwargs(vocab_size, n_layers, bos=bos, eos=eos, pad=pad), **extra})


def clip_vision_config(image_size: int = 32, patch_size: int = 8) -> Any:
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=32,
    )


def siglip_vision_config(image_size: int = 32, patch_size: int = 8, **extra: Any) -> Any:
    from transformers import SiglipVisionConfig

    return SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
        **extra,
    )


def vision_kwargs() -> dict[str, Any]:
    """Width, depth and heads of a tiny vision tower (for configs that take them as keywords)."""
    return {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
