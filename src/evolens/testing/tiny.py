"""Tiny random checkpoints of every supported family, built from configs with local tokenizers and processors.

Nothing is downloaded: tokenizers are word-level ``tokenizers`` objects over a small English vocabulary plus each
family's special tokens, image processors are the PIL variants, and chat templates are written here in the
families' own formats. ``save_tiny(family, dir)`` writes a directory that ``evolens.load(dir)`` reads exactly as
it would read a real checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

WORDS = (
    "a an the this that is are of in on at to and with image picture photo describe please detail what "
    "color shape how many there left right top bottom red blue green yellow black white circle square heart "
    "moon star triangle dog cat boy girl man woman ball field grass tree house sky water beach sand playing "
    "standing running sitting one two three yes no . , ? ! : USER: ASSISTANT: user assistant system"
).split()

LLAVA_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'][0]['text'] }} "
    "{% elif message['role'] == 'user' %}USER: "
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image> {% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %} "
    "{% else %}ASSISTANT: {{ message['content'][0]['text'] }}</s> {% endif %}"
    "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def word_tokenizer(
    special: Sequence[str] = (),
    *,
    extra_words: Sequence[str] = (),
    chat_template: str | None = None,
    add_bos: bool = True,
) -> Any:
    """A word-level fast tokenizer: ``<unk> <s> </s> <pad>``, then ``special``, then the words.

    Encoding prepends ``<s>`` (as Llama's tokenizer does) unless ``add_bos`` is false; decoding joins words
    with single spaces.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    base = ["<unk>", "<s>", "</s>", "<pad>", *special]
    words = [w for w in (*WORDS, *extra_words) if w not in base]
    vocab = {w: i for i, w in enumerate(dict.fromkeys([*base, *words]))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", vocab["<s>"])]
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        additional_special_tokens=list(special),
    )
    if chat_template is not None:
        fast.chat_template = chat_template
    return fast


def _llama_text_config(vocab_size: int, *, n_layers: int = 4, hidden: int = 32, **extra: Any) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=vocab_size,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
        tie_word_embeddings=False,
        **extra,
    )


def _clip_vision_config(image_size: int = 32, patch_size: int = 8) -> Any:
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


def build_llava(n_layers: int = 4) -> tuple[torch.nn.Module, Any]:
    """A tiny LLaVA-1.5 (llava-hf layout): CLIP tower, 2-layer MLP projector, Llama decoder."""
    from transformers import CLIPImageProcessorPil, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    tokenizer = word_tokenizer(["<image>"])
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    config = LlavaConfig(
        vision_config=_clip_vision_config(),
        text_config=_llama_text_config(len(tokenizer), n_layers=n_layers),
        image_token_index=image_token_id,
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
    return LlavaForConditionalGeneration(config), processor


def build_llama(n_layers: int = 4) -> tuple[torch.nn.Module, Any]:
    """A tiny Llama causal LM with a chat template."""
    from transformers import LlamaForCausalLM

    template = (
        "{% for m in messages %}{% if m['role'] == 'user' %}USER: {{ m['content'] }} "
        "{% elif m['role'] == 'system' %}{{ m['content'] }} {% else %}ASSISTANT: {{ m['content'] }}</s> {% endif %}"
        "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
    )
    tokenizer = word_tokenizer(chat_template=template)
    return LlamaForCausalLM(_llama_text_config(len(tokenizer), n_layers=n_layers)), tokenizer


TINY_BUILDERS: dict[str, Callable[..., tuple[torch.nn.Module, Any]]] = {
    "llava": build_llava,
    "llama": build_llama,
}


def build_tiny(family: str, *, seed: int = 0, **kwargs: Any) -> tuple[torch.nn.Module, Any]:
    """A tiny random model of ``family`` and its processor (or tokenizer), weights drawn under ``seed``."""
    try:
        builder = TINY_BUILDERS[family]
    except KeyError:
        raise KeyError(f"no tiny builder for {family!r}; have {sorted(TINY_BUILDERS)}") from None
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model, processor = builder(**kwargs)
    return model.eval(), processor


def save_tiny(family: str, directory: str | Path, *, seed: int = 0, **kwargs: Any) -> Path:
    """Build a tiny ``family`` model and write it (safetensors) with its processor to ``directory``."""
    model, processor = build_tiny(family, seed=seed, **kwargs)
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)  # type: ignore[operator]
    processor.save_pretrained(path)
    return path
