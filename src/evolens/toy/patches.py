"""How well the toy's image tokens localise its objects, layer by layer, with the image-token lens.

The toy world knows every object's pixels (:func:`~evolens.toy.world.render_with_labels`), so each of the 4 × 4
patches is an *object patch* (at least :data:`OBJECT_SHARE` of its pixels are one object's), a *background patch*
(no object pixel) or mixed (some object pixels, fewer than the share: left out). At every layer:

* **object hit rate**: the share of object patches whose top-1 token is their object's shape or colour word
  (also split into shape and colour);
* **background rate**: the share of background patches whose top-1 token is *any* shape or colour word — the
  control: a lens that printed object words everywhere would score the same on both;
* **probability contrast**: the mean probability of an object's shape word (and of its colour word) on the patches
  that cover it, against the mean probability of the same word on the scene's background patches.

A patch localises its object where the first is high and the second low, and where the contrast is above 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evolens.envelope import JsonRecord
from evolens.metrics.patches import PatchLens
from evolens.toy.world import COLORS, DESCRIBE_PROMPT, SHAPES, Scene, render_with_labels

#: A patch covers an object when at least this share of its pixels belong to it.
OBJECT_SHARE = 0.1
BACKGROUND, MIXED = -1, -2
OBJECT_WORDS = frozenset(COLORS) | frozenset(SHAPES)


def patch_labels(scene: Scene, rows: int, cols: int) -> np.ndarray:
    """``[rows * cols]`` in raster order: the index of the object a patch covers, :data:`BACKGROUND` (no object
    pixel) or :data:`MIXED` (object pixels below :data:`OBJECT_SHARE`)."""
    labels = render_with_labels(scene)[1]
    height, width = labels.shape
    if height % rows or width % cols:
        raise ValueError(f"a {height}x{width} image does not split into {rows}x{cols} patches")
    ph, pw = height // rows, width // cols
    out = np.full(rows * cols, BACKGROUND, dtype=np.int64)
    for index in range(rows * cols):
        r, c = divmod(index, cols)
        patch = labels[r * ph : (r + 1) * ph, c * pw : (c + 1) * pw]
        counts = np.bincount(patch[patch >= 0], minlength=len(scene.objects))
        if counts.sum() == 0:
            continue
        best = int(counts.argmax())
        out[index] = best if counts[best] >= OBJECT_SHARE * patch.size else MIXED
    return out


@dataclass
class Localisation(JsonRecord):
    """Counts per layer ``l = 0 .. L`` (0: the embedding state), summed over scenes.

    Attributes:
        n_scenes: Scenes measured.
        n_object_patches: Object patches (each counted once per layer).
        n_background_patches: Background patches.
        shape_hits: ``[L + 1]`` object patches whose top-1 is their object's shape word.
        color_hits: ``[L + 1]`` ... their object's colour word.
        background_hits: ``[L + 1]`` background patches whose top-1 is any shape or colour word.
        word_prob_object: ``[L + 1]`` sum over (object, own word: shape and colour) of the word's mean probability
            on the object's patches.
        word_prob_background: ``[L + 1]`` the same words' mean probability on the scene's background patches.
        n_word_pairs: How many (object, word) pairs the two sums run over (scenes with background patches).
    """

    n_scenes: int = 0
    n_object_patches: int = 0
    n_background_patches: int = 0
    shape_hits: list[int] = field(default_factory=list)
    color_hits: list[int] = field(default_factory=list)
    background_hits: list[int] = field(default_factory=list)
    word_prob_object: list[float] = field(default_factory=list)
    word_prob_background: list[float] = field(default_factory=list)
    n_word_pairs: int = 0

    @property
    def object_rate(self) -> list[float]:
        """Per layer, the share of object patches that decode to their shape or colour word."""
        n = max(self.n_object_patches, 1)
        return [(s + c) / n for s, c in zip(self.shape_hits, self.color_hits, strict=True)]

    @property
    def background_rate(self) -> list[float]:
        """Per layer, the share of background patches that decode to any object word."""
        n = max(self.n_background_patches, 1)
        return [b / n for b in self.background_hits]

    def add(self, other: Localisation) -> Localisation:
        """Both counts summed (``self`` may be empty)."""

        def total(a: list[Any], b: list[Any]) -> list[Any]:
            return [x + y for x, y in zip(a, b, strict=True)] if a else list(b)

        return Localisation(
            self.n_scenes + other.n_scenes,
            self.n_object_patches + other.n_object_patches,
            self.n_background_patches + other.n_background_patches,
            total(self.shape_hits, other.shape_hits),
            total(self.color_hits, other.color_hits),
            total(self.background_hits, other.background_hits),
            total(self.word_prob_object, other.word_prob_object),
            total(self.word_prob_background, other.word_prob_background),
            self.n_word_pairs + other.n_word_pairs,
        )

    def rows(self) -> list[tuple[int, float, float, float, float, float, float]]:
        """``(layer, object rate, shape rate, colour rate, background rate, mean own-word probability on object
        patches, on background patches)`` per layer."""
        n, pairs = max(self.n_object_patches, 1), max(self.n_word_pairs, 1)
        return [
            (layer, obj, s / n, c / n, bg, po / pairs, pb / pairs)
            for layer, (obj, s, c, bg, po, pb) in enumerate(
                zip(
                    self.object_rate,
                    self.shape_hits,
                    self.color_hits,
                    self.background_rate,
                    self.word_prob_object,
                    self.word_prob_background,
                    strict=True,
                )
            )
        ]


def scene_localisation(result: PatchLens, scene: Scene) -> Localisation:
    """The counts of one scene's image-token lens (its top-1 tokens against the scene's patches).

    Raises:
        ValueError: The result has no patch grid.
    """
    if not result.grid.known:
        raise ValueError(f"the image-token lens result has no patch grid: {result.grid.note}")
    labels = patch_labels(scene, result.grid.rows, result.grid.cols)
    n_boundaries = result.n_layers + 1
    top1 = [[w.strip().lower() for w in result.top1_words(layer)] for layer in range(n_boundaries)]
    objects = np.flatnonzero(labels >= 0)
    background = np.flatnonzero(labels == BACKGROUND)
    shape_hits, color_hits, background_hits = [], [], []
    for words in top1:
        shape_hits.append(sum(words[i] == scene.objects[labels[i]].shape for i in objects))
        color_hits.append(sum(words[i] == scene.objects[labels[i]].color for i in objects))
        background_hits.append(sum(words[i] in OBJECT_WORDS for i in background))
    on_object, on_background, pairs = _word_probs(result, scene, labels)
    return Localisation(
        1,
        len(objects),
        len(background),
        shape_hits,
        color_hits,
        background_hits,
        on_object,
        on_background,
        pairs,
    )


def _word_probs(result: PatchLens, scene: Scene, labels: np.ndarray) -> tuple[list[float], list[float], int]:
    """Per layer, the summed mean probability of each object's own words (those of ``result.words``) on its
    patches and on the background patches, and the number of (object, word) pairs."""
    n_boundaries = result.n_layers + 1
    on_object, on_background = np.zeros(n_boundaries), np.zeros(n_boundaries)
    background = np.flatnonzero(labels == BACKGROUND)
    pairs = 0
    if not background.size:
        return on_object.tolist(), on_background.tolist(), 0
    probs = result.word_probs.numpy()  # [L + 1, n_image_tokens, n_words]
    for index, obj in enumerate(scene.objects):
        own = np.flatnonzero(labels == index)
        for word in (obj.shape, obj.color):
            if not own.size or word not in result.words:
                continue
            column = result.words.index(word)
            on_object += probs[:, own, column].mean(1)
            on_background += probs[:, background, column].mean(1)
            pairs += 1
    return on_object.tolist(), on_background.tolist(), pairs


def measure_localisation(
    lvlm: Any, scenes: Sequence[Scene], *, batch_size: int = 8, prompt: str = DESCRIBE_PROMPT
) -> Localisation:
    """Trace ``scenes`` on the toy (``lvlm``, e.g. ``evolens.load(toy.model_dir())``) keeping the prompt
    positions, decode their image tokens and count (:func:`scene_localisation`)."""
    from PIL import Image

    from evolens.trace.patches import image_token_lens

    words = [*SHAPES, *COLORS]
    word_ids = lvlm.token_ids(words)
    total = Localisation()
    for start in range(0, len(scenes), batch_size):
        batch = scenes[start : start + batch_size]
        traces = lvlm.trace(
            images=[Image.fromarray(render_with_labels(s)[0]) for s in batch],
            prompts=prompt,
            max_new_tokens=1,
            prompt_positions=True,
            keep_hidden_states=False,
            topk=1,
        )
        for trace, scene in zip(traces, batch, strict=True):
            total = total.add(
                scene_localisation(image_token_lens(lvlm.attach(trace), word_ids, words, k=1), scene)
            )
    return total
