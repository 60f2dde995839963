"""Training batches of the toy LVLM: conversations about scenes as token ids and labels, images as pixel values,
and the per-patch and per-slot targets of the vision warm-up."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from evolens.toy.config import TrainConfig
from evolens.toy.world import COLORS, DESCRIBE_PROMPT, IMAGE_SIZE, SHAPES, SLOTS, Scene, caption, questions

IGNORE = -100


class Vocab:
    """Word -> id of the toy tokenizer, for building training sequences without the tokenizer's overhead (a test
    checks they equal the tokenizer's encoding of the chat template)."""

    def __init__(self, tokenizer: Any) -> None:
        self.ids: dict[str, int] = dict(tokenizer.get_vocab())
        self.bos, self.eos, self.pad = self.ids["<s>"], self.ids["</s>"], self.ids["<pad>"]
        self.image, self.user, self.assistant = self.ids["<image>"], self.ids["USER:"], self.ids["ASSISTANT:"]

    def encode(self, text: str) -> list[int]:
        return [self.ids[w] for w in text.split()]


def conversation_ids(
    vocab: Vocab, turns: Sequence[tuple[str, str]], n_image_tokens: int
) -> tuple[list[int], list[int]]:
    """Token ids and labels of ``USER: <image> q1 ASSISTANT: a1</s> USER: q2 ASSISTANT: a2</s> ...``.

    The image sits in the first turn, expanded to ``n_image_tokens`` placeholders (as the processor does); labels
    are :data:`IGNORE` except on the answers and their ``</s>``.
    """
    ids = [vocab.bos]
    labels = [IGNORE]
    for index, (question, answer) in enumerate(turns):
        prompt = [vocab.user] + ([vocab.image] * n_image_tokens if index == 0 else [])
        prompt += [*vocab.encode(question), vocab.assistant]
        reply = [*vocab.encode(answer), vocab.eos]
        ids += prompt + reply
        labels += [IGNORE] * len(prompt) + reply
    return ids, labels


def pixel_values(images: Sequence[np.ndarray], mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``[B, 3, 64, 64]`` float32: what the CLIP processor makes of 64×64 images (rescale, normalise)."""
    scaled = np.stack(images).astype(np.float32) / np.float32(255.0)
    normed = (scaled - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(normed.transpose(0, 3, 1, 2), dtype=np.float32))


def sample_turns(
    scene: Scene, rng: np.random.Generator, caption_share: float, weights: dict[str, float] | None = None
) -> list[tuple[str, str]]:
    """A conversation about ``scene``: one caption turn, or 1-3 of its questions (no repeats), question kinds
    drawn in proportion to ``weights`` (default: evenly)."""
    if rng.random() < caption_share:
        return [(DESCRIBE_PROMPT, caption(scene))]
    asked = [q for q in questions(scene, rng) if q.kind != "describe"]
    n = int(rng.integers(1, 4))
    if weights:
        w = np.array([weights.get(q.kind, 1.0) for q in asked], dtype=np.float64)
        chosen = rng.choice(len(asked), size=n, replace=False, p=w / w.sum())
    else:
        chosen = rng.choice(len(asked), size=n, replace=False)
    return [(asked[i].text, asked[i].answer) for i in chosen]


def _pad(rows: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long)


def text_batch(
    scenes: Sequence[Scene], rng: np.random.Generator, vocab: Vocab, config: TrainConfig
) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` for one conversation per scene."""
    ids, labels = [], []
    for scene in scenes:
        seq, lab = conversation_ids(
            vocab,
            sample_turns(scene, rng, config.caption_share, config.question_weights),
            config.arch.n_image_tokens,
        )
        ids.append(seq)
        labels.append(lab)
    input_ids = _pad(ids, vocab.pad)
    return {
        "input_ids": input_ids,
        "attention_mask": (input_ids != vocab.pad).long(),
        "labels": _pad(labels, IGNORE),
    }


def patch_targets(labels: np.ndarray, scene: Scene, patch: int) -> tuple[np.ndarray, np.ndarray]:
    """Colour and shape class of each patch (row-major; class 0 = no object): the object covering most of it,
    when it covers at least a sixteenth of the patch."""
    grid = IMAGE_SIZE // patch
    colors = np.zeros(grid * grid, dtype=np.int64)
    shapes = np.zeros(grid * grid, dtype=np.int64)
    for r in range(grid):
        for c in range(grid):
            cell = labels[r * patch : (r + 1) * patch, c * patch : (c + 1) * patch]
            counts = np.bincount(cell[cell >= 0].ravel(), minlength=len(scene.objects))
            if counts.size and counts.max() * 16 >= patch * patch:
                obj = scene.objects[int(counts.argmax())]
                colors[r * grid + c] = 1 + COLORS.index(obj.color)
                shapes[r * grid + c] = 1 + SHAPES.index(obj.shape)
    return colors, shapes


def slot_targets(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Colour and shape class of each slot (class 0 = empty)."""
    colors = np.zeros(len(SLOTS), dtype=np.int64)
    shapes = np.zeros(len(SLOTS), dtype=np.int64)
    for obj in scene.objects:
        colors[SLOTS.index(obj.slot)] = 1 + COLORS.index(obj.color)
        shapes[SLOTS.index(obj.slot)] = 1 + SHAPES.index(obj.shape)
    return colors, shapes
