"""A local word-level tokenizer and the chat templates of the tiny checkpoints (nothing is downloaded)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

WORDS = (
    "a an the this that is are of in on at to and with image picture photo describe please detail what "
    "color shape how many there left right top bottom red blue green yellow black white circle square heart "
    "moon star triangle dog cat boy girl man woman ball field grass tree house sky water beach sand playing "
    "standing running sitting one two three yes no . , ? ! : USER: ASSISTANT: user assistant system model "
    "You helpful User: Assistant:"
).split()

BASE_TOKENS = ("<unk>", "<s>", "</s>", "<pad>")


def word_tokenizer(
    special: Sequence[str] = (),
    *,
    extra_words: Sequence[str] = (),
    chat_template: str | None = None,
    add_bos: bool = True,
    bos_token: str = "<s>",
    eos_token: str = "</s>",
    pad_token: str = "<pad>",
    named_tokens: Mapping[str, str] | None = None,
) -> Any:
    """A word-level fast tokenizer: ``<unk> <s> </s> <pad>`` (ids 0-3), then ``special``, then the words.

    Args:
        special: Special tokens of the family (image placeholders, turn markers...), never split.
        extra_words: Words added after the shared English vocabulary.
        chat_template: Jinja chat template stored on the tokenizer.
        add_bos: Prepend ``bos_token`` when encoding (as Llama's tokenizer does).
        bos_token, eos_token, pad_token: The tokenizer's BOS/EOS/padding tokens (a base or special token).
        named_tokens: Extra named special tokens exposed as attributes, e.g. ``{"image_token": "<image>"}``
            gives ``tokenizer.image_token`` and ``tokenizer.image_token_id`` (processors read these).

    Decoding joins words with single spaces.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    base = [*BASE_TOKENS, *special]
    words = [w for w in (*WORDS, *extra_words) if w not in base]
    vocab = {w: i for i, w in enumerate(dict.fromkeys([*base, *words]))}
    for token in (bos_token, eos_token, pad_token, *(named_tokens or {}).values()):
        if token not in vocab:
            raise ValueError(f"{token!r} is not in the tokenizer's vocabulary; add it to `special`")
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos_token} $A",
            pair=f"{bos_token} $A {bos_token} $B",
            special_tokens=[(bos_token, vocab[bos_token])],
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos_token,
        eos_token=eos_token,
        unk_token="<unk>",
        pad_token=pad_token,
        extra_special_tokens=dict(named_tokens or {}),
    )
    # Special tokens are matched before whitespace splitting, so "<image><image>" is two tokens.
    fast.add_tokens([AddedToken(t, special=True, normalized=False) for t in special], special_tokens=True)
    if chat_template is not None:
        fast.chat_template = chat_template
    return fast


def _user_turn(image: str, *, image_first: bool = True) -> str:
    # The user turn's content: image placeholders then the text (or the other way round), Jinja.
    images = "{% for c in m['content'] %}{% if c['type'] == 'image' %}" + image + "{% endif %}{% endfor %}"
    texts = "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    return images + texts if image_first else texts + images


def _text(part: str = "m['content']") -> str:
    # The text of a message whose content is a string or a list of typed parts.
    return (
        f"{{% if {part} is string %}}{{{{ {part} }}}}{{% else %}}"
        f"{{% for c in {part} %}}{{% if c['type'] == 'text' %}}{{{{ c['text'] }}}}{{% endif %}}{{% endfor %}}"
        "{% endif %}"
    )


LLAVA_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'][0]['text'] }} "
    "{% elif message['role'] == 'user' %}USER: "
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image> {% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %} "
    "{% else %}ASSISTANT: {{ message['content'][0]['text'] }}</s> {% endif %}"
    "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

VICUNA_TEXT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}USER: {{ m['content'] }} "
    "{% elif m['role'] == 'system' %}{{ m['content'] }} {% else %}ASSISTANT: {{ m['content'] }}</s> {% endif %}"
    "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def chatml_template(image: str = "", *, default_system: str | None = None) -> str:
    """Qwen's ChatML: ``<|im_start|>role\\ncontent<|im_end|>\\n`` turns, then ``<|im_start|>assistant\\n``."""
    system = (
        "{% if messages[0]['role'] != 'system' %}<|im_start|>system\n"
        + default_system
        + "<|im_end|>\n{% endif %}"
        if default_system
        else ""
    )
    return (
        system + "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
        "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
        + _user_turn(image)
        + "{% endif %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


def mistral_template(image: str = "[IMG]", *, bos: str = "<s>") -> str:
    """Mistral's ``[INST] ... [/INST]`` format (LLaVA-NeXT-Mistral, Mistral 3, Pixtral)."""
    return (
        bos + "{% for m in messages %}{% if m['role'] == 'user' %}[INST]"
        "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
        + _user_turn(image)
        + "{% endif %}[/INST]{% elif m['role'] == 'assistant' %}"
        + _text()
        + "</s>{% endif %}{% endfor %}"
    )


def gemma_template(image: str = "<start_of_image>", *, bos: str = "<bos>") -> str:
    """Gemma's turns: ``<start_of_turn>user\\n...<end_of_turn>\\n<start_of_turn>model\\n``."""
    return (
        bos + "{% for m in messages %}<start_of_turn>"
        "{% if m['role'] == 'assistant' %}model{% else %}{{ m['role'] }}{% endif %}{{ '\\n' }}"
        "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
        + _user_turn(image)
        + "{% endif %}<end_of_turn>\n{% endfor %}"
        "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    )


def idefics3_template(bos: str = "<|begin_of_text|>") -> str:
    """Idefics3 / SmolVLM: ``User:<image>text<end_of_utterance>\\nAssistant:``."""
    return (
        bos + "{% for m in messages %}{{ m['role'] | capitalize }}:"
        "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
        + _user_turn("<image>")
        + "{% endif %}<end_of_utterance>\n{% endfor %}"
        "{% if add_generation_prompt %}Assistant:{% endif %}"
    )


def llama3_template(image: str = "<|image|>") -> str:
    """Llama 3's header format (Mllama)."""
    return (
        "<|begin_of_text|>{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
        "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
        + _user_turn(image)
        + "{% endif %}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    )


#: Cohere's turn tokens (Command R and the Aya Vision models built on it), beginning of text first.
COHERE_TURN_TOKENS = (
    "<BOS_TOKEN>",
    "<|END_OF_TURN_TOKEN|>",
    "<|START_OF_TURN_TOKEN|>",
    "<|USER_TOKEN|>",
    "<|CHATBOT_TOKEN|>",
    "<|SYSTEM_TOKEN|>",
)


def cohere_template(image: str = "<image>") -> str:
    """Cohere's turn tokens (Aya Vision)."""
    return (
        "<BOS_TOKEN>{% for m in messages %}<|START_OF_TURN_TOKEN|>"
        "{% if m['role'] == 'user' %}<|USER_TOKEN|>{% elif m['role'] == 'system' %}<|SYSTEM_TOKEN|>"
        "{% else %}<|CHATBOT_TOKEN|>{% endif %}"
        "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
        + _user_turn(image)
        + "{% endif %}<|END_OF_TURN_TOKEN|>{% endfor %}"
        "{% if add_generation_prompt %}<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>{% endif %}"
    )


def glm4v_template(image: str = "<|begin_of_image|><|image|><|end_of_image|>") -> str:
    """GLM-4V: ``[gMASK]<sop><|user|>\\n...<|assistant|>\\n``."""
    return (
        "[gMASK]<sop>{% for m in messages %}<|{{ m['role'] }}|>\n"
        "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
        + _user_turn(image)
        + "{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    )


def byte_level_bpe(words: Sequence[str] = ()) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocabulary and merges of a byte-level BPE that spells every word (bare and after a space) as one token.

    For families whose registered tokenizer class rebuilds a byte-level BPE from the saved vocabulary and merges
    (Qwen2's): every byte has a token, so any text encodes losslessly; the merges build each word left to right.
    """
    from tokenizers.pre_tokenizers import ByteLevel

    vocab: dict[str, int] = {}
    for ch in sorted(ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    merges: list[tuple[str, str]] = []

    def add(left: str, right: str) -> None:
        if left + right not in vocab:
            vocab[left + right] = len(vocab)
            merges.append((left, right))

    words_in_order = list(dict.fromkeys((*WORDS, *words)))
    for word in words_in_order:
        for end in range(2, len(word) + 1):
            add(word[: end - 1], word[end - 1])
    for word in words_in_order:  # " word" = "Ġ" + the whole word, merged last
        add("Ġ", word)
    return vocab, merges


def byte_level_tokenizer(
    tokenizer_class: Any,
    special: Sequence[str],
    *,
    bos_token: str,
    eos_token: str,
    pad_token: str,
    chat_template: str | None = None,
    named_tokens: Mapping[str, str] | None = None,
) -> Any:
    """A byte-level BPE tokenizer of ``tokenizer_class`` (Qwen2Tokenizer, Qwen3_5Tokenizer...): ``special`` first.

    For model types whose registered tokenizer class transformers always uses when loading (it rebuilds its own
    byte-level pipeline from the saved vocabulary and merges, so a word-level tokenizer would not survive).
    """
    from tokenizers import AddedToken

    bpe_vocab, merges = byte_level_bpe()
    vocab = {t: i for i, t in enumerate(special)}
    for token in bpe_vocab:
        vocab.setdefault(token, len(vocab))
    tokenizer = tokenizer_class(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token=eos_token,
        pad_token=pad_token,
        extra_special_tokens=dict(named_tokens or {}),
    )
    tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in special], special_tokens=True
    )
    tokenizer.bos_token = bos_token
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer


CHATML_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def chatml_tokenizer(special: tuple[str, ...], image: str, **named: str) -> Any:
    """A word tokenizer with ChatML's special tokens and chat template (image placeholder ``image``), plus
    ``special`` tokens; ``named`` gives tokens attribute names (``image_token="<image>"``)."""
    return word_tokenizer(
        (*CHATML_SPECIAL, *special),
        add_bos=False,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=chatml_template(image),
        named_tokens=named or None,
    )


def special_ids(tokenizer: Any) -> dict[str, int]:
    """The ``bos``, ``eos`` and ``pad`` token ids of ``tokenizer``, as text configs take them."""
    ids = tokenizer.convert_tokens_to_ids
    return {"bos": ids(tokenizer.bos_token), "eos": ids(tokenizer.eos_token), "pad": ids(tokenizer.pad_token)}
