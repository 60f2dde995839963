"""Tiny LLaVA-style checkpoints: a vision tower, a projector and a Llama-like decoder (LLaVA-1.5, -NeXT,
-OneVision, VipLLaVA and the video LLaVAs; other makers' models built the same way are in
:mod:`evolens.testing.tiny_llava_like`)."""

from __future__ import annotations

from typing import Any

from torch import nn

from evolens.models.processors import image_only_processor_class
from evolens.testing.configs import (
    clip_vision_config,
    llama_text_config,
    siglip_vision_config,
    text_kwargs,
)
from evolens.testing.tokenizer import (
    LLAVA_TEMPLATE,
    chatml_template,
    chatml_tokenizer,
    mistral_template,
    special_ids,
    word_tokenizer,
)


def build_llava(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny LLaVA-1.5 (llava-hf layout): CLIP tower, 2-layer MLP projector, Llama decoder."""
    from transformers import LlavaForConditionalGeneration

    tokenizer = word_tokenizer(["<image>"])
    config, processor = llava_config(tokenizer, llama_text_config(len(tokenizer), n_layers=n_layers))
    return LlavaForConditionalGeneration(config), processor


def llava_config(tokenizer: Any, text_config: Any) -> tuple[Any, Any]:
    """The tiny LLaVA-1.5's config (tiny CLIP tower, ``text_config`` decoder) and its processor around
    ``tokenizer`` (which holds ``<image>``); the benchmarks give it decoders of real sizes."""
    from transformers import CLIPImageProcessorPil, LlavaConfig, LlavaProcessor

    config = LlavaConfig(
        vision_config=clip_vision_config(),
        text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_TEMPLATE,
    )
    return config, processor


def build_llava_next(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny LLaVA-NeXT (Mistral flavour): any-resolution tiling on a 32-pixel grid, ``[INST]`` prompts."""
    from transformers import (
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessorPil,
        LlavaNextProcessor,
        MistralConfig,
    )

    tokenizer = word_tokenizer(["<image>", "[INST]", "[/INST]"])
    pinpoints = [[32, 64], [64, 32], [64, 64]]
    config = LlavaNextConfig(
        vision_config=clip_vision_config(),
        text_config=MistralConfig(**text_kwargs(len(tokenizer), n_layers), sliding_window=None),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_grid_pinpoints=pinpoints
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=mistral_template("<image>\n", bos=""),
    )
    return LlavaNextForConditionalGeneration(config), processor


def build_llava_onevision(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny LLaVA-OneVision: SigLIP tower, any-resolution tiles, Qwen2 decoder, ChatML."""
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessorPil,
        LlavaOnevisionProcessor,
        Qwen2Config,
    )

    tokenizer = chatml_tokenizer(("<image>", "<video>"), "<image>\n")
    ids = tokenizer.convert_tokens_to_ids
    pinpoints = [[32, 32], [32, 64], [64, 32], [64, 64]]
    config = LlavaOnevisionConfig(
        vision_config=siglip_vision_config(vision_use_head=False),
        text_config=Qwen2Config(**text_kwargs(len(tokenizer), n_layers, **special_ids(tokenizer))),
        image_token_index=ids("<image>"),
        video_token_index=ids("<video>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        vision_aspect_ratio="anyres_max_9",
    )
    image_processor = LlavaOnevisionImageProcessorPil(
        size={"height": 32, "width": 32}, image_grid_pinpoints=pinpoints
    )
    processor = image_only_processor_class(LlavaOnevisionProcessor)(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=None,
        num_image_tokens=16,
        vision_feature_select_strategy="full",
        chat_template=chatml_template("<image>\n"),
        vision_aspect_ratio="anyres_max_9",
    )
    return LlavaOnevisionForConditionalGeneration(config), processor


def build_vipllava(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny ViP-LLaVA: features of several CLIP layers concatenated, layer-normed and projected."""
    from transformers import (
        CLIPImageProcessorPil,
        LlavaProcessor,
        VipLlavaConfig,
        VipLlavaForConditionalGeneration,
    )

    tokenizer = word_tokenizer(["<image>"])
    config = VipLlavaConfig(
        vision_config=clip_vision_config(),
        text_config=llama_text_config(len(tokenizer), n_layers=n_layers),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=[-2, -1],
    )
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_TEMPLATE,
    )
    return VipLlavaForConditionalGeneration(config), processor


def build_llava_next_video(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny LLaVA-NeXT-Video on images: LLaVA-NeXT tiling, Vicuna prompts (video processor left out)."""
    from transformers import (
        LlavaNextImageProcessorPil,
        LlavaNextVideoConfig,
        LlavaNextVideoForConditionalGeneration,
        LlavaNextVideoProcessor,
    )

    tokenizer = word_tokenizer(["<image>", "<video>"])
    ids = tokenizer.convert_tokens_to_ids
    pinpoints = [[32, 64], [64, 32], [64, 64]]
    config = LlavaNextVideoConfig(
        vision_config=clip_vision_config(),
        text_config=llama_text_config(len(tokenizer), n_layers=n_layers),
        image_token_index=ids("<image>"),
        video_token_index=ids("<video>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_grid_pinpoints=pinpoints
    )
    processor = image_only_processor_class(LlavaNextVideoProcessor)(
        video_processor=None,
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=LLAVA_TEMPLATE,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    return LlavaNextVideoForConditionalGeneration(config), processor


def build_video_llava(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny Video-LLaVA on images: CLIP image tower (the video tower stays unused), Vicuna prompts."""
    from transformers import (
        VideoLlavaConfig,
        VideoLlavaForConditionalGeneration,
        VideoLlavaImageProcessor,
        VideoLlavaProcessor,
    )

    tokenizer = word_tokenizer(["<image>", "<video>"])
    ids = tokenizer.convert_tokens_to_ids
    config = VideoLlavaConfig(
        vision_config=clip_vision_config(),
        text_config=llama_text_config(len(tokenizer), n_layers=n_layers),
        image_token_index=ids("<image>"),
        video_token_index=ids("<video>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=16,
        video_seq_length=16,
    )
    image_processor = VideoLlavaImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    processor = image_only_processor_class(VideoLlavaProcessor)(
        image_processor=image_processor,
        video_processor=None,
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_TEMPLATE,
    )
    return VideoLlavaForConditionalGeneration(config), processor
