"""Tiny checkpoints of families with their own architecture: Mllama (cross-attention), GLM-4V, Gemma 3n..."""

from __future__ import annotations

from typing import Any

from torch import nn

from evolens.testing.configs import text_kwargs
from evolens.testing.tokenizer import llama3_template, word_tokenizer

LLAMA3_SPECIAL = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|finetune_right_pad_id|>",
    "<|python_tag|>",
)


def build_mllama(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny Mllama (Llama 3.2 Vision): tiled ViT whose features enter through cross-attention layers 1 and 3."""
    from transformers import (
        MllamaConfig,
        MllamaForConditionalGeneration,
        MllamaImageProcessorPil,
        MllamaProcessor,
        MllamaTextConfig,
        MllamaVisionConfig,
    )

    tokenizer = word_tokenizer(
        (*LLAMA3_SPECIAL, "<|image|>"),
        add_bos=False,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|finetune_right_pad_id|>",
        chat_template=llama3_template(),
        named_tokens={"image_token": "<|image|>"},
    )
    ids = tokenizer.convert_tokens_to_ids
    text_ids = {
        "bos": ids("<|begin_of_text|>"),
        "eos": ids("<|eot_id|>"),
        "pad": ids("<|finetune_right_pad_id|>"),
    }
    text = text_kwargs(len(tokenizer), n_layers, **text_ids)
    del text["head_dim"]
    text["cross_attention_layers"] = list(range(1, n_layers, 2))
    vision = MllamaVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_global_layers=1,
        attention_heads=2,
        image_size=32,
        patch_size=8,
        max_num_tiles=2,
        intermediate_layers_indices=[0],
        vision_output_dim=64,
        supported_aspect_ratios=[[1, 1], [1, 2], [2, 1]],
    )
    config = MllamaConfig(
        vision_config=vision, text_config=MllamaTextConfig(**text), image_token_index=ids("<|image|>")
    )
    image_processor = MllamaImageProcessorPil(size={"height": 32, "width": 32}, max_image_tiles=2)
    processor = MllamaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=llama3_template()
    )
    return MllamaForConditionalGeneration(config), processor
