"""Tiny causal LMs for text-only comparisons, each with its family's chat format (Phi-2 has none)."""

from __future__ import annotations

from typing import Any

from torch import nn

from evolens.testing.configs import text_kwargs
from evolens.testing.tokenizer import (
    COHERE_TURN_TOKENS,
    VICUNA_TEXT_TEMPLATE,
    byte_level_tokenizer,
    chatml_template,
    cohere_template,
    gemma_template,
    mistral_template,
    word_tokenizer,
)


def _causal_lm(config_name: str, model_name: str, tokenizer: Any, n_layers: int, **extra: Any) -> nn.Module:
    import transformers

    ids = tokenizer.convert_tokens_to_ids
    kwargs = text_kwargs(
        len(tokenizer), n_layers, bos=ids(tokenizer.bos_token), eos=ids(tokenizer.eos_token), pad=ids("<pad>")
    )
    config = getattr(transformers, config_name)(**{**kwargs, **extra})
    model: nn.Module = getattr(transformers, model_name)(config)
    return model


def build_llama(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny Llama causal LM with a Vicuna chat template."""
    tokenizer = word_tokenizer(chat_template=VICUNA_TEXT_TEMPLATE)
    return _causal_lm("LlamaConfig", "LlamaForCausalLM", tokenizer, n_layers), tokenizer


def build_mistral(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny Mistral with a sliding window shorter than the prompts and ``[INST]`` turns."""
    tokenizer = word_tokenizer(["[INST]", "[/INST]"], chat_template=mistral_template(bos="<s>"))
    model = _causal_lm("MistralConfig", "MistralForCausalLM", tokenizer, n_layers, sliding_window=8)
    return model, tokenizer


def _chatml_tokenizer() -> Any:
    return word_tokenizer(
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        add_bos=False,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        chat_template=chatml_template(default_system="You are a helpful assistant."),
    )


def _qwen2_tokenizer() -> Any:
    # transformers loads a qwen2 checkpoint's tokenizer as Qwen2Tokenizer, which rebuilds a byte-level BPE from
    # the saved vocabulary and merges, so this one is a real (small) byte-level BPE.
    from transformers import Qwen2Tokenizer

    return byte_level_tokenizer(
        Qwen2Tokenizer,
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"],
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=chatml_template(default_system="You are a helpful assistant."),
    )


def build_qwen2(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny Qwen2 (biased q/k/v projections) with a byte-level BPE and ChatML turns."""
    tokenizer = _qwen2_tokenizer()
    return _causal_lm("Qwen2Config", "Qwen2ForCausalLM", tokenizer, n_layers), tokenizer


def build_qwen3(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny Qwen3 (q/k norms) with ChatML turns."""
    tokenizer = _chatml_tokenizer()
    return _causal_lm("Qwen3Config", "Qwen3ForCausalLM", tokenizer, n_layers), tokenizer


def _gemma_tokenizer() -> Any:
    return word_tokenizer(
        ["<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"],
        bos_token="<bos>",
        eos_token="<eos>",
        chat_template=gemma_template(bos=""),
    )


def build_gemma(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny Gemma: (1 + w) RMS norms and embeddings scaled by sqrt(d_model)."""
    tokenizer = _gemma_tokenizer()
    model = _causal_lm("GemmaConfig", "GemmaForCausalLM", tokenizer, n_layers, tie_word_embeddings=True)
    return model, tokenizer


def build_gemma2(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny Gemma 2: sliding/global layers, attention and final-logit soft-capping."""
    tokenizer = _gemma_tokenizer()
    model = _causal_lm(
        "Gemma2Config",
        "Gemma2ForCausalLM",
        tokenizer,
        n_layers,
        tie_word_embeddings=True,
        query_pre_attn_scalar=8,
        sliding_window=8,
        final_logit_softcapping=1.0,  # small enough that applying it or not shows
        attn_logit_softcapping=50.0,
    )
    return model, tokenizer


def build_gemma3_text(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny text-only Gemma 3 (``Gemma3ForCausalLM``)."""
    tokenizer = _gemma_tokenizer()
    model = _causal_lm(
        "Gemma3TextConfig",
        "Gemma3ForCausalLM",
        tokenizer,
        n_layers,
        tie_word_embeddings=True,
        query_pre_attn_scalar=8,
        sliding_window=8,
        layer_types=["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n_layers)],
        final_logit_softcapping=1.0,  # small enough that applying it or not shows
    )
    return model, tokenizer


def build_phi3(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny Phi-3 (fused qkv and gate/up projections) with ``<|user|> ... <|end|>`` turns."""
    template = (
        "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    )
    tokenizer = word_tokenizer(
        ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"],
        add_bos=False,
        bos_token="<s>",
        eos_token="<|end|>",
        chat_template=template,
    )
    return _causal_lm("Phi3Config", "Phi3ForCausalLM", tokenizer, n_layers), tokenizer


def build_phi(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny Phi-2: parallel attention/MLP blocks, LayerNorm named ``final_layernorm``; no chat template."""
    tokenizer = word_tokenizer(["<|endoftext|>"], add_bos=False, eos_token="<|endoftext|>")
    model = _causal_lm("PhiConfig", "PhiForCausalLM", tokenizer, n_layers, partial_rotary_factor=0.5)
    return model, tokenizer


def build_granite(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny Granite 3: embedding/residual/attention multipliers and logits divided by ``logits_scaling``."""
    template = (
        "{% for m in messages %}<|start_of_role|>{{ m['role'] }}<|end_of_role|>{{ m['content'] }}"
        "<|end_of_text|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|start_of_role|>assistant<|end_of_role|>{% endif %}"
    )
    tokenizer = word_tokenizer(
        ["<|end_of_text|>", "<|start_of_role|>", "<|end_of_role|>"],
        add_bos=False,
        bos_token="<|end_of_text|>",
        eos_token="<|end_of_text|>",
        chat_template=template,
    )
    model = _causal_lm(
        "GraniteConfig",
        "GraniteForCausalLM",
        tokenizer,
        n_layers,
        embedding_multiplier=2.0,
        residual_multiplier=0.5,
        attention_multiplier=0.25,
        logits_scaling=4.0,
    )
    return model, tokenizer


def build_cohere(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny Cohere (Command R): LayerNorm without bias, parallel blocks, logits times ``logit_scale``."""
    tokenizer = word_tokenizer(
        list(COHERE_TURN_TOKENS),
        add_bos=False,
        bos_token="<BOS_TOKEN>",
        eos_token="<|END_OF_TURN_TOKEN|>",
        chat_template=cohere_template(),
    )
    model = _causal_lm(
        "CohereConfig", "CohereForCausalLM", tokenizer, n_layers, logit_scale=0.5, tie_word_embeddings=True
    )
    return model, tokenizer


def build_olmo2(n_layers: int = 4) -> tuple[nn.Module, Any]:
    """A tiny OLMo 2 (norms after attention and MLP, q/k norms) with ``<|user|>`` turns."""
    template = (
        "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    )
    tokenizer = word_tokenizer(
        ["<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>"],
        add_bos=False,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        chat_template=template,
    )
    return _causal_lm("Olmo2Config", "Olmo2ForCausalLM", tokenizer, n_layers), tokenizer
