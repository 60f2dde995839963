"""The toy LVLM's architecture: a real Hugging Face LLaVA (CLIP tower + projector + Llama decoder), a word-level
tokenizer and a processor, built from the world's vocabulary.

The model is an ordinary ``LlavaForConditionalGeneration`` saved with ``save_pretrained``: ``evolens.load`` reads
it as it reads llava-1.5. Sizes are in :class:`ToyArchitecture`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from evolens.toy.world import IMAGE_SIZE, vocabulary

SPECIAL = ("<unk>", "<s>", "</s>", "<pad>", "<image>", "USER:", "ASSISTANT:")
#: The chat template: ``USER: <image> question ASSISTANT: answer</s>`` (llava-1.5's form).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: "
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image> {% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %} "
    "{% elif message['role'] == 'assistant' %}ASSISTANT: "
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}</s> "
    "{% endif %}{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


@dataclass(frozen=True)
class ToyArchitecture:
    """Sizes of the toy LVLM.

    Attributes:
        vision_hidden, vision_intermediate, vision_layers, vision_heads: The CLIP tower.
        patch_size: Pixels per patch side (64 / 16 = a 4×4 grid: 16 image tokens).
        text_hidden, text_intermediate, text_layers, text_heads: The Llama decoder.
        max_positions: Longest sequence the decoder accepts.
    """

    vision_hidden: int = 128
    vision_intermediate: int = 512
    vision_layers: int = 3
    vision_heads: int = 4
    patch_size: int = 16
    text_hidden: int = 128
    text_intermediate: int = 512
    text_layers: int = 8
    text_heads: int = 4
    max_positions: int = 128

    @property
    def n_image_tokens(self) -> int:
        return (IMAGE_SIZE // self.patch_size) ** 2

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def build_tokenizer() -> Any:
    """A word-level fast tokenizer over the world's words: lower-cases and splits off punctuation, so "What color
    is the heart?" reads as the training questions do; decodes with single spaces, punctuation attached."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate([*SPECIAL, *vocabulary()])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        padding_side="left",
    )
    fast.add_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL[4:]], special_tokens=True)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_processor(arch: ToyArchitecture | None = None) -> Any:
    """The LLaVA processor: CLIP normalisation of 64×64 images (no resize or crop needed), ``<image>`` expanded
    to the tower's 16 patch tokens."""
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    arch = arch or ToyArchitecture()
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=build_tokenizer(),
        patch_size=arch.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )


def build_model(tokenizer: Any, arch: ToyArchitecture | None = None) -> Any:
    """A freshly initialised ``LlavaForConditionalGeneration`` of the toy's sizes (weights from the global seed)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    arch = arch or ToyArchitecture()
    ids = tokenizer.convert_tokens_to_ids
    text = LlamaConfig(
        hidden_size=arch.text_hidden,
        intermediate_size=arch.text_intermediate,
        num_hidden_layers=arch.text_layers,
        num_attention_heads=arch.text_heads,
        num_key_value_heads=arch.text_heads,
        vocab_size=len(tokenizer),
        max_position_embeddings=arch.max_positions,
        bos_token_id=ids("<s>"),
        eos_token_id=ids("</s>"),
        pad_token_id=ids("<pad>"),
        tie_word_embeddings=False,
    )
    vision = CLIPVisionConfig(
        hidden_size=arch.vision_hidden,
        intermediate_size=arch.vision_intermediate,
        num_hidden_layers=arch.vision_layers,
        num_attention_heads=arch.vision_heads,
        image_size=IMAGE_SIZE,
        patch_size=arch.patch_size,
        projection_dim=arch.vision_hidden,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=ids("<image>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )
    model = LlavaForConditionalGeneration(config)
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = ids("<s>"), ids("</s>"), ids("<pad>")
    gen.do_sample = False
    gen.max_new_tokens = 48
    return model
