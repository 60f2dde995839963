"""Tiny SigLIP-based checkpoints: Gemma 3, PaliGemma, Idefics3 and SmolVLM."""

from __future__ import annotations

from typing import Any

from torch import nn

from evolens.models.processors import image_only_processor_class
from evolens.testing.configs import siglip_vision_config, text_kwargs, vision_kwargs
from evolens.testing.tokenizer import gemma_template, idefics3_template, word_tokenizer

GEMMA_SPECIAL = ("<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>")


def gemma3_tokenizer() -> Any:
    special = (*GEMMA_SPECIAL, "<start_of_image>", "<end_of_image>", "<image_soft_token>")
    return word_tokenizer(
        special,
        bos_token="<bos>",
        eos_token="<eos>",
        chat_template=gemma_template("<start_of_image>"),
        named_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
    )


def gemma3_text_kwargs(tokenizer: Any, n_layers: int) -> dict[str, Any]:
    ids = tokenizer.convert_tokens_to_ids
    kwargs = text_kwargs(len(tokenizer), n_layers, bos=ids("<bos>"), eos=ids("<eos>"), pad=ids("<pad>"))
    kwargs["eos_token_id"] = [ids("<eos>"), ids("<end_of_turn>")]
    # Every other layer slides over a short window, as Gemma 3 alternates local and global attention.
    return {
        **kwargs,
        "query_pre_attn_scalar": kwargs["head_dim"],
        "sliding_window": 8,
        "layer_types": ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n_layers)],
        "final_logit_softcapping": 1.0,  # small enough that applying it or not shows in the logits
    }


def build_gemma3(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny Gemma 3: SigLIP tower pooled to 4 soft tokens, Gemma 3 decoder (sliding + global, soft-capping)."""
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessorPil,
        Gemma3Processor,
        Gemma3TextConfig,
    )

    tokenizer = gemma3_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    config = Gemma3Config(
        text_config=Gemma3TextConfig(**gemma3_text_kwargs(tokenizer, n_layers)),
        vision_config=siglip_vision_config(vision_use_head=False),
        mm_tokens_per_image=4,
        boi_token_index=ids("<start_of_image>"),
        eoi_token_index=ids("<end_of_image>"),
        image_token_index=ids("<image_soft_token>"),
        tie_word_embeddings=True,
    )
    image_processor = Gemma3ImageProcessorPil(size={"height": 32, "width": 32}, do_pan_and_scan=False)
    processor = Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_length=4,
        chat_template=gemma_template("<start_of_image>"),
    )
    return Gemma3ForConditionalGeneration(config), processor


def build_paligemma(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny PaliGemma 2: SigLIP tower (16 patches), linear projector, Gemma 2 decoder; no chat template."""
    from transformers import (
        Gemma2Config,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessorPil,
    )

    # PaliGemma's tokenizer does not add BOS itself: the processor writes "<image>...<bos>prompt\n".
    tokenizer = word_tokenizer(GEMMA_SPECIAL, add_bos=False, bos_token="<bos>", eos_token="<eos>")
    image_processor = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    setattr(image_processor, "image_seq_length", 16)  # noqa: B010  (PaliGemmaProcessor reads it)
    processor = PaliGemmaProcessor(
        image_processor=image_processor, tokenizer=tokenizer
    )  # adds <image>, <locXXXX>...
    ids = tokenizer.convert_tokens_to_ids
    text = Gemma2Config(
        **text_kwargs(len(tokenizer), n_layers, bos=ids("<bos>"), eos=ids("<eos>"), pad=ids("<pad>")),
        query_pre_attn_scalar=8,
        sliding_window=8,
        final_logit_softcapping=1.0,  # PaliGemmaForConditionalGeneration applies it
    )
    config = PaliGemmaConfig(
        vision_config=siglip_vision_config(projection_dim=text.hidden_size),
        text_config=text,
        image_token_index=processor.image_token_id,
        vocab_size=len(tokenizer),
        projection_dim=text.hidden_size,
        hidden_size=text.hidden_size,
        tie_word_embeddings=True,
    )
    return PaliGemmaForConditionalGeneration(config), processor


def _idefics3_tokenizer(bos: str) -> Any:
    special = (bos, "<end_of_utterance>", "<image>", "<fake_token_around_image>", "<global-img>")
    rows = tuple(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7))
    return word_tokenizer(
        (*special, *rows),
        add_bos=False,
        bos_token=bos,
        eos_token="<end_of_utterance>",
        chat_template=idefics3_template(bos),
        named_tokens={
            "image_token": "<image>",
            "fake_image_token": "<fake_token_around_image>",
            "global_image_token": "<global-img>",
            "end_of_utterance_token": "<end_of_utterance>",
        },
    )


def _idefics3_parts(
    tokenizer: Any, n_layers: int, vision_config_class: Any, image_processor_class: Any
) -> tuple[Any, Any, Any]:
    from transformers import LlamaConfig

    ids = tokenizer.convert_tokens_to_ids
    bos = ids(tokenizer.bos_token)
    text = LlamaConfig(**text_kwargs(len(tokenizer), n_layers, bos=bos, eos=ids("<end_of_utterance>")))
    vision = vision_config_class(**vision_kwargs(), image_size=32, patch_size=8)
    # 32-pixel tiles of 4x4 patches, pixel-shuffled by 2: 4 image tokens per tile, up to 2x2 tiles + a global one.
    image_processor = image_processor_class(
        size={"longest_edge": 64}, max_image_size={"longest_edge": 32}, do_image_splitting=True
    )
    return text, vision, image_processor


def build_idefics3(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny Idefics3: SigLIP-style tower on 32-pixel tiles, pixel shuffle, Llama decoder."""
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
        Idefics3VisionConfig,
    )

    tokenizer = _idefics3_tokenizer("<|begin_of_text|>")
    text, vision, image_processor = _idefics3_parts(
        tokenizer, n_layers, Idefics3VisionConfig, Idefics3ImageProcessorPil
    )
    config = Idefics3Config(
        text_config=text,
        vision_config=vision,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        scale_factor=2,
    )
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=4,
        chat_template=idefics3_template("<|begin_of_text|>"),
    )
    return Idefics3ForConditionalGeneration(config), processor


def build_smolvlm(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny SmolVLM: Idefics3's architecture with SmolLM's ``<|im_start|>`` BOS."""
    from transformers import (
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessorPil,
        SmolVLMProcessor,
        SmolVLMVisionConfig,
    )

    tokenizer = _idefics3_tokenizer("<|im_start|>")
    text, vision, image_processor = _idefics3_parts(
        tokenizer, n_layers, SmolVLMVisionConfig, SmolVLMImageProcessorPil
    )
    config = SmolVLMConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        scale_factor=2,
    )
    processor = image_only_processor_class(SmolVLMProcessor)(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=None,
        image_seq_len=4,
        chat_template=idefics3_template("<|im_start|>"),
    )
    return SmolVLMForConditionalGeneration(config), processor


def build_idefics2(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny Idefics2: SigLIP-style tower, perceiver resampler to 4 latents, Mistral decoder."""
    from transformers import (
        Idefics2Config,
        Idefics2ForConditionalGeneration,
        Idefics2ImageProcessorPil,
        Idefics2Processor,
        MistralConfig,
    )

    special = ("<end_of_utterance>", "<image>", "<fake_token_around_image>")
    tokenizer = word_tokenizer(special, chat_template=idefics3_template(""))
    ids = tokenizer.convert_tokens_to_ids
    config = Idefics2Config(
        text_config=MistralConfig(
            **text_kwargs(len(tokenizer), n_layers, eos=ids("<end_of_utterance>")), sliding_window=None
        ),
        vision_config={**vision_kwargs(), "image_size": 32, "patch_size": 8},
        perceiver_config={
            "hidden_size": 32,
            "resampler_n_latents": 4,
            "resampler_depth": 1,
            "resampler_n_heads": 2,
            "resampler_head_dim": 16,
            "num_key_value_heads": 1,
        },
        image_token_id=ids("<image>"),
    )
    image_processor = Idefics2ImageProcessorPil(
        size={"shortest_edge": 32, "longest_edge": 32}, do_image_splitting=True
    )
    processor = Idefics2Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=4,
        chat_template=idefics3_template(""),
    )
    return Idefics2ForConditionalGeneration(config), processor


GEMMA4_TEMPLATE = (
    "<bos>{% for m in messages %}<|turn>"
    "{% if m['role'] == 'assistant' %}model{% else %}{{ m['role'] }}{% endif %}{{ '\\n' }}"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<|image|>{% endif %}{% endfor %}"
    "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% endif %}<turn|>{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<|turn>model{{ '\\n' }}{% endif %}"
)


def build_gemma4(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny Gemma 4: pooled vision soft tokens, per-layer embeddings (PLE), sliding/global layers, soft-capping."""
    from transformers import (
        Gemma4AudioFeatureExtractor,
        Gemma4Config,
        Gemma4ForConditionalGeneration,
        Gemma4ImageProcessorPil,
        Gemma4Processor,
        Gemma4TextConfig,
        Gemma4VisionConfig,
    )

    named = {
        "boi_token": "<|image>",
        "eoi_token": "<image|>",
        "image_token": "<|image|>",
        "boa_token": "<|audio>",
        "eoa_token": "<audio|>",
        "audio_token": "<|audio|>",
    }
    tokenizer = word_tokenizer(
        ("<bos>", "<eos>", "<|turn>", "<turn|>", *named.values(), "<|video|>"),
        add_bos=False,
        bos_token="<bos>",
        eos_token="<eos>",
        chat_template=GEMMA4_TEMPLATE,
        named_tokens=named,
    )
    ids = tokenizer.convert_tokens_to_ids
    text_ids = text_kwargs(len(tokenizer), n_layers, bos=ids("<bos>"), eos=ids("<eos>"), pad=ids("<pad>"))
    global_layers: dict[str, Any] = {"global_head_dim": 16}  # head width of the full-attention layers
    text = Gemma4TextConfig(
        **text_ids,
        **global_layers,
        sliding_window=8,
        layer_types=["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n_layers)],
        final_logit_softcapping=1.0,  # Gemma4ForConditionalGeneration applies it
        vocab_size_per_layer_input=len(tokenizer),
        hidden_size_per_layer_input=8,
    )
    vision = Gemma4VisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=16,
        patch_size=8,
        pooling_kernel_size=2,
        position_embedding_size=64,
    )
    config = Gemma4Config(
        text_config=text,
        vision_config=vision,
        audio_config=None,
        boi_token_id=ids("<|image>"),
        eoi_token_id=ids("<image|>"),
        image_token_id=ids("<|image|>"),
        video_token_id=ids("<|video|>"),
        boa_token_id=ids("<|audio>"),
        eoa_token_index=ids("<audio|>"),
        audio_token_id=ids("<|audio|>"),
    )
    sizes: dict[str, Any] = {
        "patch_size": 8,
        "max_soft_tokens": 70,
        "pooling_kernel_size": 2,
    }  # 70 is the least allowed
    image_processor = Gemma4ImageProcessorPil(**sizes)
    processor = image_only_processor_class(Gemma4Processor)(
        feature_extractor=Gemma4AudioFeatureExtractor(),
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=None,
        chat_template=GEMMA4_TEMPLATE,
        image_seq_length=70,
    )
    return Gemma4ForConditionalGeneration(config), processor
