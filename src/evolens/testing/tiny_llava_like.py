"""Tiny checkpoints of other makers' models built like LLaVA (vision tower, projector, decoder): Mistral 3, InternVL,
Aya Vision, LightOnOCR, DeepSeek-VL, Janus and Ovis2."""

from __future__ import annotations

from typing import Any

from torch import nn

from evolens.models.processors import image_only_processor_class
from evolens.testing.configs import (
    llama_text_config,
    siglip_vision_config,
    text_kwargs,
    vision_kwargs,
)
from evolens.testing.tokenizer import (
    COHERE_TURN_TOKENS,
    chatml_template,
    chatml_tokenizer,
    cohere_template,
    mistral_template,
    special_ids,
    word_tokenizer,
)


def build_mistral3(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny Mistral 3 (Mistral Small 3.1): Pixtral tower with 2D RoPE, patch merger, Mistral decoder."""
    from transformers import (
        Mistral3Config,
        Mistral3ForConditionalGeneration,
        MistralConfig,
        PixtralImageProcessorPil,
        PixtralProcessor,
        PixtralVisionConfig,
    )

    tokenizer = word_tokenizer(["[INST]", "[/INST]", "[IMG]", "[IMG_BREAK]", "[IMG_END]"], add_bos=False)
    config = Mistral3Config(
        vision_config=PixtralVisionConfig(**vision_kwargs(), image_size=64, patch_size=8),
        text_config=MistralConfig(**text_kwargs(len(tokenizer), n_layers), sliding_window=None),
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"),
        spatial_merge_size=2,
        vision_feature_layer=-1,
        tie_word_embeddings=False,
    )
    image_processor = PixtralImageProcessorPil(
        size={"longest_edge": 64}, patch_size={"height": 8, "width": 8}
    )
    processor = PixtralProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=8,
        spatial_merge_size=2,
        chat_template=mistral_template("[IMG]", bos="<s>"),
    )
    return Mistral3ForConditionalGeneration(config), processor


def build_internvl(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny InternVL 3 (-hf layout): InternViT tiles, pixel shuffle, MLP projector, Qwen2 decoder."""
    from transformers import (
        GotOcr2ImageProcessorPil,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVisionConfig,
        Qwen2Config,
    )

    tokenizer = chatml_tokenizer(
        ("<img>", "</img>", "<IMG_CONTEXT>", "<video>"),
        "<IMG_CONTEXT>\n",
        start_image_token="<img>",
        end_image_token="</img>",
        context_image_token="<IMG_CONTEXT>",
        video_token="<video>",
    )
    config = InternVLConfig(
        vision_config=InternVLVisionConfig(**vision_kwargs(), image_size=[32, 32], patch_size=[8, 8]),
        text_config=Qwen2Config(**text_kwargs(len(tokenizer), n_layers, **special_ids(tokenizer))),
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=4,
        downsample_ratio=0.5,
    )
    image_processor = GotOcr2ImageProcessorPil(
        size={"height": 32, "width": 32}, crop_to_patches=True, min_patches=1, max_patches=3
    )
    processor = image_only_processor_class(InternVLProcessor)(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=None,
        image_seq_length=4,
        chat_template=chatml_template("<IMG_CONTEXT>\n"),
    )
    return InternVLForConditionalGeneration(config), processor


def build_aya_vision(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny Aya Vision: SigLIP tiles, pixel-shuffle adapter, Cohere 2 decoder, Cohere turn tokens."""
    from transformers import (
        AyaVisionConfig,
        AyaVisionForConditionalGeneration,
        AyaVisionProcessor,
        Cohere2Config,
        GotOcr2ImageProcessorPil,
    )

    image_tokens = ("<image>", "<|START_OF_IMG|>", "<|END_OF_IMG|>", "<|IMG_PATCH|>", "<|IMG_LINE_BREAK|>")
    tokenizer = word_tokenizer(
        (*COHERE_TURN_TOKENS, *image_tokens),
        extra_words=("TILE_GLOBAL", *(f"TILE_{i}" for i in range(1, 5))),
        add_bos=False,
        bos_token="<BOS_TOKEN>",
        eos_token="<|END_OF_TURN_TOKEN|>",
        chat_template=cohere_template("<image>"),
    )
    ids = tokenizer.convert_tokens_to_ids
    text = Cohere2Config(
        **text_kwargs(len(tokenizer), n_layers, **special_ids(tokenizer)),
        sliding_window=8,
        layer_types=["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n_layers)],
        logit_scale=0.5,
    )
    config = AyaVisionConfig(
        vision_config=siglip_vision_config(vision_use_head=False),
        text_config=text,
        downsample_factor=2,
        image_token_index=ids("<|IMG_PATCH|>"),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )
    image_processor = GotOcr2ImageProcessorPil(
        size={"height": 32, "width": 32}, crop_to_patches=True, min_patches=1, max_patches=3
    )
    processor = AyaVisionProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=8,
        img_size=32,
        downsample_factor=2,
        chat_template=cohere_template("<image>"),
    )
    return AyaVisionForConditionalGeneration(config), processor


def build_lighton_ocr(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny LightOnOCR: Pixtral tower with 2D RoPE, patch merger, Qwen3 decoder, ChatML."""
    from transformers import (
        LightOnOcrConfig,
        LightOnOcrForConditionalGeneration,
        LightOnOcrProcessor,
        PixtralImageProcessorPil,
        PixtralVisionConfig,
        Qwen3Config,
    )

    image_tokens = ("<|image_pad|>", "<|vision_pad|>", "<|vision_end|>")
    tokenizer = chatml_tokenizer(
        image_tokens,
        "<|image_pad|>",
        image_token="<|image_pad|>",
        image_break_token="<|vision_pad|>",
        image_end_token="<|vision_end|>",
    )
    config = LightOnOcrConfig(
        vision_config=PixtralVisionConfig(**vision_kwargs(), image_size=64, patch_size=8),
        text_config=Qwen3Config(**text_kwargs(len(tokenizer), n_layers, **special_ids(tokenizer))),
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        spatial_merge_size=2,
        tie_word_embeddings=False,
    )
    image_processor = PixtralImageProcessorPil(
        size={"longest_edge": 64}, patch_size={"height": 8, "width": 8}
    )
    processor = LightOnOcrProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=8,
        spatial_merge_size=2,
        chat_template=chatml_template("<|image_pad|>"),
    )
    return LightOnOcrForConditionalGeneration(config), processor


def deepseek_template(image: str = "<image_placeholder>") -> str:
    """DeepSeek-VL's ``User: ...\\n\\nAssistant:`` turns."""
    return (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'][0]['text'] }}\n\n"
        "{% elif m['role'] == 'user' %}User: "
        "{% for c in m['content'] %}{% if c['type'] == 'image' %}" + image + "{% endif %}{% endfor %}"
        "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
        "{{ '\\n\\n' }}{% else %}Assistant: {{ m['content'][0]['text'] }}<｜end▁of▁sentence｜>{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}Assistant:{% endif %}"
    )


def build_deepseek_vl(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny DeepSeek-VL: SigLIP tower, MLP aligner, Llama decoder, ``User: ... Assistant:`` prompts."""
    from transformers import (
        DeepseekVLConfig,
        DeepseekVLForConditionalGeneration,
        DeepseekVLImageProcessorPil,
        DeepseekVLProcessor,
    )

    special = ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<image_placeholder>")
    tokenizer = word_tokenizer(
        special,
        bos_token="<｜begin▁of▁sentence｜>",
        eos_token="<｜end▁of▁sentence｜>",
        named_tokens={"image_token": "<image_placeholder>"},
    )
    config = DeepseekVLConfig(
        vision_config=siglip_vision_config(vision_use_head=False),
        text_config=llama_text_config(len(tokenizer), n_layers=n_layers, **special_ids(tokenizer)),
        image_token_id=tokenizer.convert_tokens_to_ids("<image_placeholder>"),
        tie_word_embeddings=False,
    )
    image_processor = DeepseekVLImageProcessorPil(size={"height": 32, "width": 32})
    processor = DeepseekVLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=deepseek_template(),
        num_image_tokens=16,
    )
    return DeepseekVLForConditionalGeneration(config), processor


def build_janus(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny Janus (understanding path): SigLIP-style tower, aligner, Llama decoder; a tiny VQ-VAE rides along."""
    from transformers import (
        JanusConfig,
        JanusForConditionalGeneration,
        JanusImageProcessorPil,
        JanusProcessor,
    )

    special = ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<image_placeholder>", "<begin_of_image>")
    tokenizer = word_tokenizer(
        (*special, "<end_of_image>"),
        bos_token="<｜begin▁of▁sentence｜>",
        eos_token="<｜end▁of▁sentence｜>",
        named_tokens={
            "image_token": "<image_placeholder>",
            "boi_token": "<begin_of_image>",
            "eoi_token": "<end_of_image>",
        },
    )
    config = JanusConfig(
        text_config=llama_text_config(len(tokenizer), n_layers=n_layers, **special_ids(tokenizer)),
        vision_config={
            **vision_kwargs(),
            "image_size": 32,
            "patch_size": 8,
            "projection_dim": 32,
            "num_image_tokens": 16,
            "depth": 1,
        },
        vq_config={
            "embed_dim": 8,
            "num_embeddings": 16,
            "latent_channels": 32,
            "base_channels": 32,  # GroupNorm needs multiples of 32
            "channel_multiplier": [1, 1],
            "num_res_blocks": 1,
            "num_patches": 4,
            "projection_dim": 32,
            "image_token_embed_dim": 32,
        },
        image_token_id=tokenizer.convert_tokens_to_ids("<image_placeholder>"),
        tie_word_embeddings=False,
    )
    image_processor = JanusImageProcessorPil(size={"height": 32, "width": 32})
    processor = JanusProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=deepseek_template(),
        num_image_tokens=16,
    )
    return JanusForConditionalGeneration(config), processor


def build_ovis2(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny Ovis2: a visual tokenizer (soft tokens over a 64-entry visual vocabulary) and a Qwen2 decoder."""
    from transformers import (
        Ovis2Config,
        Ovis2ForConditionalGeneration,
        Ovis2ImageProcessorPil,
        Ovis2Processor,
        Qwen2Config,
    )

    indicators = ("<IMG_START>", "<IMG_GRID>", "<IMG_COL>", "<IMG_ROW>", "<IMG_END>")
    tokenizer = chatml_tokenizer(("<image>", "<IMG_ATOM>", *indicators), "<image>\n")
    ids = tokenizer.convert_tokens_to_ids
    config = Ovis2Config(
        vision_config={
            **vision_kwargs(),
            "image_size": 32,
            "patch_size": 8,
            "vocab_size": 64,
            "hidden_stride": 2,
            "num_visual_indicator_tokens": len(indicators),
        },
        text_config=Qwen2Config(**text_kwargs(len(tokenizer), n_layers, **special_ids(tokenizer))),
        image_token_id=ids("<IMG_ATOM>"),
        visual_indicator_token_ids=[ids(t) for t in indicators],
        vocab_size=len(tokenizer),
        hidden_size=32,
        tie_word_embeddings=False,
    )
    image_processor = Ovis2ImageProcessorPil(
        size={"height": 32, "width": 32}, crop_to_patches=True, min_patches=1, max_patches=3
    )
    processor = Ovis2Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=chatml_template("<image>\n"),
        image_seq_length=4,
    )
    return Ovis2ForConditionalGeneration(config), processor
