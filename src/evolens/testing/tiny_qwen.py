"""Tiny Qwen-VL-style checkpoints: a patch-merging vision tower, multimodal RoPE, ChatML prompts."""

from __future__ import annotations

from typing import Any

from torch import nn

from evolens.models.processors import image_only_processor_class
from evolens.testing.configs import HEAD_DIM, text_kwargs
from evolens.testing.tokenizer import chatml_template, word_tokenizer

QWEN_SPECIAL = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
QWEN_IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"


def qwen_tokenizer() -> Any:
    """Qwen's special tokens, no BOS, ``<|im_end|>`` as EOS and ``<|endoftext|>`` as padding."""
    return word_tokenizer(
        QWEN_SPECIAL,
        add_bos=False,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=chatml_template(QWEN_IMAGE, default_system="You are a helpful assistant."),
        named_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )


def _qwen_ids(tokenizer: Any) -> dict[str, Any]:
    ids = tokenizer.convert_tokens_to_ids
    return {
        "image_token_id": ids("<|image_pad|>"),
        "video_token_id": ids("<|video_pad|>"),
        "vision_start_token_id": ids("<|vision_start|>"),
        "vision_end_token_id": ids("<|vision_end|>"),
    }


def _qwen_text(tokenizer: Any, n_layers: int) -> dict[str, Any]:
    ids = tokenizer.convert_tokens_to_ids
    kwargs = text_kwargs(
        len(tokenizer), n_layers, bos=ids("<|endoftext|>"), eos=ids("<|im_end|>"), pad=ids("<|endoftext|>")
    )
    # M-RoPE splits the rotary half-dimension into (temporal, height, width) sections.
    kwargs["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": 10000.0,
        "mrope_section": [HEAD_DIM // 4, HEAD_DIM // 8, HEAD_DIM // 8],
    }
    return kwargs


def _qwen_processor(processor_class: type, tokenizer: Any) -> Any:
    from transformers import Qwen2VLImageProcessorPil

    image_processor = Qwen2VLImageProcessorPil(
        size={"shortest_edge": 16 * 16, "longest_edge": 32 * 32},
        patch_size=8,
        merge_size=2,
        temporal_patch_size=2,
    )
    cls = image_only_processor_class(processor_class)
    return cls(image_processor=image_processor, tokenizer=tokenizer, video_processor=None)


def build_qwen2_vl(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny Qwen2-VL: 8-pixel patches merged 2x2, M-RoPE, ChatML."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

    tokenizer = qwen_tokenizer()
    config = Qwen2VLConfig(
        text_config=_qwen_text(tokenizer, n_layers),
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": 32,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 8,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        **_qwen_ids(tokenizer),
    )
    return Qwen2VLForConditionalGeneration(config), _qwen_processor(Qwen2VLProcessor, tokenizer)


def build_qwen2_5_vl(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny Qwen2.5-VL: windowed vision attention, M-RoPE with absolute time, ChatML."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

    tokenizer = qwen_tokenizer()
    config = Qwen2_5_VLConfig(
        text_config=_qwen_text(tokenizer, n_layers),
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 32,
            "patch_size": 8,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 32,
            "fullatt_block_indexes": [1],
        },
        **_qwen_ids(tokenizer),
    )
    return Qwen2_5_VLForConditionalGeneration(config), _qwen_processor(Qwen2_5_VLProcessor, tokenizer)


def build_qwen3_vl(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny Qwen3-VL: interleaved M-RoPE and DeepStack (vision features added to the first decoder layers)."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor

    tokenizer = qwen_tokenizer()
    text = _qwen_text(tokenizer, n_layers)
    text["rope_parameters"] = {**text["rope_parameters"], "mrope_interleaved": True}
    config = Qwen3VLConfig(
        text_config=text,
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 32,
            "patch_size": 8,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "num_position_embeddings": 16,
            "deepstack_visual_indexes": [0, 1],
        },
        **_qwen_ids(tokenizer),
    )
    return Qwen3VLForConditionalGeneration(config), _qwen_processor(Qwen3VLProcessor, tokenizer)


def build_glm4v(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny GLM-4.1V: Qwen-style patch-merging tower, GLM-4 decoder with M-RoPE, ``[gMASK]<sop>`` prompts."""
    from transformers import (
        Glm4vConfig,
        Glm4vForConditionalGeneration,
        Glm4vImageProcessorPil,
        Glm4vProcessor,
    )

    from evolens.testing.tokenizer import glm4v_template

    special = ("<|endoftext|>", "[gMASK]", "<sop>", "<|user|>", "<|assistant|>", "<|system|>", "<|image|>")
    markers = (
        "<|begin_of_image|>",
        "<|end_of_image|>",
        "<|begin_of_video|>",
        "<|end_of_video|>",
        "<|video|>",
    )
    tokenizer = word_tokenizer(
        (*special, *markers),
        add_bos=False,
        bos_token="<|endoftext|>",
        eos_token="<|user|>",  # GLM stops when the model starts the next user turn
        pad_token="<|endoftext|>",
        chat_template=glm4v_template(),
        named_tokens={"image_token": "<|image|>", "video_token": "<|video|>"},
    )
    ids = tokenizer.convert_tokens_to_ids
    text = text_kwargs(
        len(tokenizer), n_layers, bos=ids("<|endoftext|>"), eos=ids("<|user|>"), pad=ids("<|endoftext|>")
    )
    # Half of each 16-wide head rotates (GLM's partial rotary factor), split into (temporal, height, width).
    text["head_dim"] = 16
    text["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": 10000.0,
        "partial_rotary_factor": 0.5,
        "mrope_section": [2, 1, 1],
    }
    config = Glm4vConfig(
        text_config=text,
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 32,
            "image_size": 32,
            "patch_size": 8,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids("<|image|>"),
        video_token_id=ids("<|video|>"),
        image_start_token_id=ids("<|begin_of_image|>"),
        image_end_token_id=ids("<|end_of_image|>"),
        video_start_token_id=ids("<|begin_of_video|>"),
        video_end_token_id=ids("<|end_of_video|>"),
    )
    # GLM counts pixels over the 2 temporal frames: 32x32 to 64x64 images.
    sizes: dict[str, Any] = {"patch_size": 8, "merge_size": 2, "temporal_patch_size": 2}
    image_processor = Glm4vImageProcessorPil(
        size={"shortest_edge": 2 * 32 * 32, "longest_edge": 2 * 64 * 64}, **sizes
    )
    processor = image_only_processor_class(Glm4vProcessor)(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=None,
        chat_template=glm4v_template(),
    )
    return Glm4vForConditionalGeneration(config), processor


def _qwen3_vision(depth: int = 2) -> dict[str, Any]:
    return {
        "depth": depth,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "out_hidden_size": 32,
        "patch_size": 8,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "num_position_embeddings": 16,
    }


def build_qwen3_vl_moe(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny Qwen3-VL-MoE: Qwen3-VL with a mixture-of-experts decoder (4 experts, 2 per token)."""
    from transformers import Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration, Qwen3VLProcessor

    tokenizer = qwen_tokenizer()
    text = _qwen_text(tokenizer, n_layers)
    text["rope_parameters"] = {**text["rope_parameters"], "mrope_interleaved": True}
    text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, decoder_sparse_step=1)
    config = Qwen3VLMoeConfig(
        text_config=text,
        vision_config={**_qwen3_vision(), "deepstack_visual_indexes": [0, 1]},
        **_qwen_ids(tokenizer),
    )
    return Qwen3VLMoeForConditionalGeneration(config), _qwen_processor(Qwen3VLProcessor, tokenizer)


def build_qwen3_5(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny Qwen3.5: hybrid decoder (gated delta-net linear attention, every 4th layer full attention)."""
    from transformers import (
        Qwen3_5Config,
        Qwen3_5ForConditionalGeneration,
        Qwen3_5Tokenizer,
        Qwen3VLProcessor,
    )

    from evolens.testing.tokenizer import byte_level_tokenizer

    # transformers always loads a qwen3_5 tokenizer as Qwen3_5Tokenizer (a byte-level BPE).
    tokenizer = byte_level_tokenizer(
        Qwen3_5Tokenizer,
        [*QWEN_SPECIAL, "<pad>"],
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=chatml_template(QWEN_IMAGE),
        named_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )
    text = _qwen_text(tokenizer, n_layers)
    text["head_dim"] = 16  # half of each 16-wide head rotates; M-RoPE splits its 4 frequencies (2, 1, 1)
    text["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": 10000.0,
        "partial_rotary_factor": 0.5,
        "mrope_section": [2, 1, 1],
        "mrope_interleaved": True,
    }
    text.update(
        linear_conv_kernel_dim=2,
        linear_key_head_dim=8,
        linear_value_head_dim=8,
        linear_num_key_heads=2,
        linear_num_value_heads=4,
        layer_types=["linear_attention" if (i + 1) % 4 else "full_attention" for i in range(n_layers)],
    )
    config = Qwen3_5Config(text_config=text, vision_config=_qwen3_vision(), **_qwen_ids(tokenizer))
    return Qwen3_5ForConditionalGeneration(config), _qwen_processor(Qwen3VLProcessor, tokenizer)


def build_paddleocr_vl(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny PaddleOCR-VL: NaViT-style tower with patch merging, ERNIE-4.5 decoder with M-RoPE."""
    from transformers import (
        PaddleOCRVLConfig,
        PaddleOCRVLForConditionalGeneration,
        PaddleOCRVLImageProcessorPil,
        PaddleOCRVLProcessor,
    )

    template = (
        "<|begin_of_sentence|>{% for m in messages %}{% if m['role'] == 'user' %}User: "
        "{% for c in m['content'] %}{% if c['type'] == 'image' %}<|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>"
        "{% endif %}{% endfor %}"
        "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{{ '\\n' }}"
        "{% endif %}{% endfor %}{% if add_generation_prompt %}Assistant: {% endif %}"
    )
    special = ("<|begin_of_sentence|>", "</s>", "<|IMAGE_START|>", "<|IMAGE_END|>", "<|IMAGE_PLACEHOLDER|>")
    tokenizer = word_tokenizer(
        (*special, "<|video_pad|>"),
        add_bos=False,
        bos_token="<|begin_of_sentence|>",
        eos_token="</s>",
        chat_template=template,
        named_tokens={"image_token": "<|IMAGE_PLACEHOLDER|>", "video_token": "<|video_pad|>"},
    )
    ids = tokenizer.convert_tokens_to_ids
    text = text_kwargs(
        len(tokenizer), n_layers, bos=ids("<|begin_of_sentence|>"), eos=ids("</s>"), pad=ids("<pad>")
    )
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]}
    config = PaddleOCRVLConfig(
        text_config=text,
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
        }
        | {"image_size": 32, "patch_size": 8, "spatial_merge_size": 2},
        image_token_id=ids("<|IMAGE_PLACEHOLDER|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|IMAGE_START|>"),
        vision_end_token_id=ids("<|IMAGE_END|>"),
        tie_word_embeddings=False,
    )
    sizes: dict[str, Any] = {"patch_size": 8, "merge_size": 2, "temporal_patch_size": 1}
    image_processor = PaddleOCRVLImageProcessorPil(
        size={"shortest_edge": 32 * 32, "longest_edge": 64 * 64}, **sizes
    )
    processor = PaddleOCRVLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=template
    )
    return PaddleOCRVLForConditionalGeneration(config), processor
