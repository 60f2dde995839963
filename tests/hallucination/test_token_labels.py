"""Per-token labels: judged words mapped back to the generated tokens that spell them."""

from __future__ import annotations

from evolens.data.labels import Mention
from evolens.hallucination.token_labels import TokenLabels, label_tokens, mention_steps


def test_word_split_over_two_tokens_and_special_token_at_the_end() -> None:
    tokens = ["A", " man", " and", " two", " do", "gs", ".", "</s>"]
    text = "A man and two dogs."
    assert mention_steps(tokens, text, 14, 18) == [4, 5]
    mentions = [Mention(2, 5, "man", "person", "grounded"), Mention(14, 18, "dogs", "dog", "hallucinated")]
    labels = label_tokens(tokens, text, mentions)
    assert labels.labels == [None, "grounded", None, None, "hallucinated", "hallucinated", None, None]
    assert labels.objects[4] == labels.objects[5] == "dog"
    assert labels.mention == [-1, 0, -1, -1, 1, 1, -1, -1]
    assert labels.first == [False, True, False, False, True, False, False, False]
    assert labels.steps("hallucinated") == [4, 5]
    assert labels.steps("hallucinated", first_only=True) == [4]
    assert TokenLabels.from_dict(labels.to_dict()) == labels


def test_text_not_contained_in_the_pieces_is_aligned_by_characters() -> None:
    # The decoded text dropped a special token in the middle and the pieces carry a leading space.
    tokens = [" A", " cat", "<sep>", " on", " a", " mat"]
    text = "A cat on a mat"
    assert mention_steps(tokens, text, 2, 5) == [1]
    assert mention_steps(tokens, text, 11, 14) == [5]
    labels = label_tokens(tokens, text, [Mention(11, 14, "mat", "mat", "hallucinated")])
    assert labels.labels == [None, None, None, None, None, "hallucinated"]


def test_one_token_spelling_two_words_takes_the_stronger_label() -> None:
    tokens = ["hotdog", " stand"]
    text = "hotdog stand"
    mentions = [Mention(0, 3, "hot", "x", "grounded"), Mention(3, 6, "dog", "dog", "hallucinated")]
    labels = label_tokens(tokens, text, mentions)
    assert labels.labels == ["hallucinated", None] and labels.mention == [1, -1]


def test_no_mentions() -> None:
    labels = label_tokens(["a", "b"], "ab", [])
    assert labels == TokenLabels.empty(2)
