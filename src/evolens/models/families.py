"""The families evolens ships, described as data. Each is checked by a test on a tiny saved checkpoint."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from evolens.models.registry import Family, register_family


def _paligemma_prompt(processor: Any, prompt: str, n_images: int) -> str:
    # PaliGemma has no chat template: one "<image>" per image, then the prompt; the processor expands the image
    # token, puts BOS after it and appends "\n" itself.
    return str(getattr(processor, "image_token", "<image>")) * n_images + prompt


BUILTIN_FAMILIES: tuple[Family, ...] = (
    Family(
        name="llava",
        model_types=("llava",),
        description="LLaVA-1.5 and other llava-hf checkpoints (CLIP/SigLIP tower + projector + Llama/Vicuna/Mistral)",
    ),
    Family(
        name="llava_next",
        model_types=("llava_next",),
        description="LLaVA-NeXT (LLaVA-1.6) with any-resolution tiling",
    ),
    Family(
        name="llava_onevision",
        model_types=("llava_onevision",),
        image_token_attrs=("image_token_index", "image_token_id"),
        extra_image_token_attrs=("video_token_index",),
        description="LLaVA-OneVision (SigLIP any-resolution tiles + Qwen2)",
    ),
    Family(
        name="mistral3",
        model_types=("mistral3",),
        description="Mistral 3 / Mistral Small 3.1 (Pixtral tower + patch merger + Mistral); processor needs torchvision",
    ),
    Family(
        name="internvl",
        model_types=("internvl",),
        description="InternVL 2.5 / 3 in the -hf layout (InternViT tiles + pixel shuffle + Qwen2/Llama)",
    ),
    Family(
        name="aya_vision",
        model_types=("aya_vision",),
        logit_config_attrs=(),  # AyaVisionForConditionalGeneration does not apply Cohere 2's logit_scale
        description="Aya Vision (SigLIP tiles + pixel-shuffle adapter + Cohere 2; the wrapper ignores logit_scale)",
    ),
    Family(
        name="vipllava",
        model_types=("vipllava",),
        description="ViP-LLaVA (features of several CLIP layers + Vicuna)",
    ),
    Family(
        name="llava_next_video",
        model_types=("llava_next_video",),
        image_token_attrs=("image_token_index", "image_token_id"),
        extra_image_token_attrs=("video_token_index",),
        description="LLaVA-NeXT-Video, traced on images",
    ),
    Family(
        name="video_llava",
        model_types=("video_llava",),
        image_token_attrs=("image_token_index", "image_token_id"),
        extra_image_token_attrs=("video_token_index",),
        description="Video-LLaVA, traced on images",
    ),
    Family(
        name="idefics2",
        model_types=("idefics2",),
        description="Idefics2 (SigLIP + perceiver resampler + Mistral); decoder at model.text_model",
    ),
    Family(
        name="lighton_ocr",
        model_types=("lighton_ocr",),
        description="LightOnOCR (Pixtral tower + patch merger + Qwen3)",
    ),
    Family(
        name="deepseek_vl",
        model_types=("deepseek_vl",),
        description="DeepSeek-VL (SigLIP + aligner + DeepSeek LLM)",
    ),
    Family(
        name="janus",
        model_types=("janus",),
        description="Janus / Janus-Pro, understanding path (SigLIP + aligner + DeepSeek LLM)",
    ),
    Family(
        name="ovis2",
        model_types=("ovis2",),
        extra_image_token_attrs=("visual_indicator_token_ids",),
        description="Ovis2 (visual tokenizer with a visual vocabulary + Qwen2)",
    ),
    Family(
        name="qwen2_vl",
        model_types=("qwen2_vl",),
        extra_image_token_attrs=("video_token_id", "vision_start_token_id", "vision_end_token_id"),
        processor_kwargs=MappingProxyType({"return_mm_token_type_ids": True}),
        description="Qwen2-VL (native-resolution ViT, M-RoPE; needs mm_token_type_ids)",
    ),
    Family(
        name="qwen2_5_vl",
        model_types=("qwen2_5_vl",),
        extra_image_token_attrs=("video_token_id", "vision_start_token_id", "vision_end_token_id"),
        processor_kwargs=MappingProxyType({"return_mm_token_type_ids": True}),
        description="Qwen2.5-VL (windowed ViT, M-RoPE; without mm_token_type_ids its positions are silently wrong)",
    ),
    Family(
        name="qwen3_vl",
        model_types=("qwen3_vl",),
        extra_image_token_attrs=("video_token_id", "vision_start_token_id", "vision_end_token_id"),
        processor_kwargs=MappingProxyType({"return_mm_token_type_ids": True}),
        description=(
            "Qwen3-VL (DeepStack, interleaved M-RoPE). Captured states precede the DeepStack injection of visual "
            "features after the first layers; this affects image positions only"
        ),
    ),
    Family(
        name="qwen3_vl_moe",
        model_types=("qwen3_vl_moe",),
        extra_image_token_attrs=("video_token_id", "vision_start_token_id", "vision_end_token_id"),
        processor_kwargs=MappingProxyType({"return_mm_token_type_ids": True}),
        description="Qwen3-VL MoE (as qwen3_vl, mixture-of-experts decoder; states precede DeepStack injection)",
    ),
    Family(
        name="qwen3_5",
        model_types=("qwen3_5",),
        extra_image_token_attrs=("video_token_id", "vision_start_token_id", "vision_end_token_id"),
        processor_kwargs=MappingProxyType({"return_mm_token_type_ids": True}),
        description="Qwen3.5 (natively multimodal; hybrid gated delta-net / full-attention decoder)",
    ),
    Family(
        name="glm4v",
        model_types=("glm4v",),
        extra_image_token_attrs=(
            "video_token_id",
            "image_start_token_id",
            "image_end_token_id",
            "video_start_token_id",
            "video_end_token_id",
        ),
        processor_kwargs=MappingProxyType({"return_mm_token_type_ids": True}),
        description="GLM-4.1V / GLM-4.5V-style (patch-merging ViT + GLM-4 decoder with M-RoPE)",
    ),
    Family(
        name="paddleocr_vl",
        model_types=("paddleocr_vl",),
        extra_image_token_attrs=("video_token_id", "vision_start_token_id", "vision_end_token_id"),
        processor_kwargs=MappingProxyType({"return_mm_token_type_ids": True}),
        description="PaddleOCR-VL (NaViT-style tower + ERNIE-4.5 with M-RoPE; needs mm_token_type_ids)",
    ),
    Family(
        name="gemma3",
        model_types=("gemma3",),
        image_token_attrs=("image_token_index", "image_token_id"),
        extra_image_token_attrs=("boi_token_index", "eoi_token_index"),
        logit_config_attrs=(),  # Gemma3ForConditionalGeneration does not soft-cap (Gemma3ForCausalLM does)
        description=(
            "Gemma 3 (SigLIP + Gemma 3 decoder; (1 + w) norms and scaled embeddings, via the model's own "
            "modules; the wrapper does not soft-cap)"
        ),
    ),
    Family(
        name="gemma4",
        model_types=("gemma4",),
        extra_image_token_attrs=("boi_token_id", "eoi_token_id", "video_token_id"),
        description="Gemma 4 (pooled vision soft tokens, per-layer embeddings; the wrapper soft-caps the logits)",
    ),
    Family(
        name="idefics3",
        model_types=("idefics3",),
        description="Idefics3 (SigLIP tiles + pixel shuffle + Llama 3); decoder at model.text_model",
    ),
    Family(
        name="smolvlm",
        model_types=("smolvlm",),
        description="SmolVLM / SmolVLM2 (Idefics3 architecture, SmolLM2 decoder at model.text_model)",
    ),
    Family(
        name="paligemma",
        model_types=("paligemma",),
        image_token_attrs=("image_token_index", "image_token_id"),
        prompt_builder=_paligemma_prompt,
        needs_image=True,
        description=(
            "PaliGemma 1/2 (SigLIP + Gemma / Gemma 2; the wrapper applies Gemma 2's soft-capping); no chat "
            "template, an image with every prompt"
        ),
    ),
    Family(
        name="mllama",
        model_types=("mllama",),
        description="Llama 3.2 Vision (Mllama): image features enter through cross-attention decoder layers",
    ),
    # Causal LMs, for text-only comparisons.
    Family(
        name="llama",
        model_types=("llama",),
        kind="text",
        description="Llama / Vicuna causal LMs",
    ),
    Family(
        name="mistral",
        model_types=("mistral",),
        kind="text",
        description="Mistral / Ministral causal LMs (sliding-window attention)",
    ),
    Family(
        name="qwen2",
        model_types=("qwen2",),
        kind="text",
        description="Qwen2 / Qwen2.5 causal LMs",
    ),
    Family(
        name="qwen3",
        model_types=("qwen3",),
        kind="text",
        description="Qwen3 dense causal LMs",
    ),
    Family(
        name="gemma",
        model_types=("gemma",),
        kind="text",
        description="Gemma causal LMs ((1 + w) norms, scaled embeddings)",
    ),
    Family(
        name="gemma2",
        model_types=("gemma2",),
        kind="text",
        description="Gemma 2 causal LMs (final-logit soft-capping reproduced by the lens)",
    ),
    Family(
        name="gemma3_text",
        model_types=("gemma3_text",),
        kind="text",
        description="Gemma 3 text-only causal LMs (1B, or a Gemma 3 decoder alone)",
    ),
    Family(
        name="phi3",
        model_types=("phi3",),
        kind="text",
        description="Phi-3 / Phi-3.5 / Phi-4-mini causal LMs",
    ),
    Family(
        name="phi",
        model_types=("phi",),
        kind="text",
        norm_attr="final_layernorm",
        description="Phi-1 / Phi-1.5 / Phi-2 causal LMs (final norm at model.final_layernorm)",
    ),
    Family(
        name="granite",
        model_types=("granite",),
        kind="text",
        description="Granite 3 causal LMs (logits divided by logits_scaling, reproduced by the lens)",
    ),
    Family(
        name="cohere",
        model_types=("cohere",),
        kind="text",
        description="Cohere Command R causal LMs (logits times logit_scale, reproduced by the lens)",
    ),
    Family(
        name="olmo2",
        model_types=("olmo2",),
        kind="text",
        description="OLMo 2 causal LMs",
    ),
)

for _family in BUILTIN_FAMILIES:
    register_family(_family)
