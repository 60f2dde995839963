"""Token pieces decoded from a moving window equal the pieces decoded from every whole prefix (the quadratic
definition), for the decoders real models use: byte-level BPE (GPT-2, Qwen), SentencePiece-style Metaspace with
byte fallback (Llama, Mistral, Gemma), words with clean-up rules."""

from __future__ import annotations

import pytest
import torch

from evolens.api import token_pieces
from evolens.testing import word_tokenizer
from evolens.testing.tiny_qwen import qwen_tokenizer

TEXT = (
    "The naïve café owner said: «ça va?» — 日本語のテキスト, emoji 🎉🐕 and numbers 3.14, don't stop. "
    "Ünïcödé wörds, Привет мир, 你好世界! A dog , a cat . On the beach ? Yes n't it 's ok "
) * 4


def _prefix_pieces(tokenizer, ids) -> list[str]:
    """The reference: the growth of the decoded whole prefix at every token."""
    pieces, previous = [], ""
    for end in range(1, len(ids) + 1):
        current = tokenizer.decode(ids[:end], skip_special_tokens=False)
        pieces.append(
            current[len(previous) :]
            if current.startswith(previous)
            else tokenizer.decode([ids[end - 1]], skip_special_tokens=False)
        )
        previous = current
    return pieces


def _byte_level_bpe():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        [TEXT], trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def _metaspace_byte_fallback():
    from tokenizers import Tokenizer, decoders, models, normalizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    bytes_ = [f"<0x{i:02X}>" for i in range(256)]
    tok.train_from_iterator(
        [TEXT], trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", *bytes_], limit_alphabet=40)
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, clean_up_tokenization_spaces=False)


def _words_with_clean_up():
    tok = word_tokenizer(["<image>"])
    tok.clean_up_tokenization_spaces = True
    return tok


TOKENIZERS = {
    "byte-level BPE": _byte_level_bpe,
    "metaspace + byte fallback": _metaspace_byte_fallback,
    "qwen": qwen_tokenizer,
    "words with clean-up": _words_with_clean_up,
}


@pytest.mark.parametrize("name", sorted(TOKENIZERS))
def test_window_pieces_equal_whole_prefix_pieces(name: str) -> None:
    tokenizer = TOKENIZERS[name]()
    encoded = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    generator = torch.Generator().manual_seed(0)
    random_ids = torch.randint(0, len(tokenizer), (300,), generator=generator).tolist()
    assert len(encoded) > 100  # long enough for the window to move many times
    for ids in (encoded, random_ids, encoded[:5]):
        pieces = token_pieces(tokenizer, ids)
        assert pieces == _prefix_pieces(tokenizer, ids)
        assert len(pieces) == len(ids)


def test_the_window_never_starts_inside_a_character_spelled_in_byte_tokens() -> None:
    """Byte fallback spells a character the vocabulary lacks as its UTF-8 bytes, and consecutive byte tokens decode
    as one group (U+FFFD for every byte of a group that is not valid UTF-8): a window that starts inside a
    character turns the rest of the group into U+FFFD. Characters of 2 bytes, each followed by the byte of "!":
    groups of 3 tokens, so a window moved every 8 tokens would start inside one again and again."""
    tokenizer = _metaspace_byte_fallback()
    byte_ids = [tokenizer.convert_tokens_to_ids(f"<0x{b:02X}>") for b in range(256)]
    ids = []
    for char in "жэюяёщ" * 6:
        ids += [byte_ids[b] for b in char.encode()] + [byte_ids[ord("!")]]
    assert tokenizer.decode(ids) == "".join(f"{c}!" for c in "жэюяёщ" * 6)
    pieces = token_pieces(tokenizer, ids)
    assert pieces == _prefix_pieces(tokenizer, ids)
    assert pieces[2::3] == ["!"] * 36  # the definition's pieces of each character's bytes are U+FFFD
