"""The toy's localisation measure: patch labels from the known slots, counts on synthetic results with known
answers, and the measure end to end on a handful of scenes."""

from __future__ import annotations

import numpy as np
import torch

from evolens.metrics.patches import PatchGrid, PatchLens
from evolens.toy.patches import BACKGROUND, MIXED, Localisation, patch_labels, scene_localisation
from evolens.toy.world import Obj, Scene

SCENE = Scene((Obj("circle", "red", "top"), Obj("square", "blue", "bottom")))


def test_patch_labels_follow_the_slots() -> None:
    labels = patch_labels(SCENE, 4, 4).reshape(4, 4)
    # the top slot's centre (32, 13) lies between patches (0, 1) and (0, 2), the circle reaching into row 1; the
    # bottom one's likewise
    expected = [[-1, 0, 0, -1], [-1, 0, 0, -1], [-1, 1, 1, -1], [-1, 1, 1, -1]]
    assert labels.tolist() == expected and (labels[:, 0] == BACKGROUND).all()
    # a smaller object leaves mixed patches (object pixels under the share) out of both counts
    small = patch_labels(Scene((Obj("circle", "red", "top", radius=3),)), 4, 4)
    assert set(small.tolist()) == {BACKGROUND, MIXED}


def _result(top1: list[str], words: list[str], word_probs: np.ndarray) -> PatchLens:
    vocab = {i: w for i, w in enumerate(sorted(set(top1) | set(words)))}
    ids = {w: i for i, w in vocab.items()}
    top = torch.tensor([[ids[w] for w in top1]] * 2).unsqueeze(-1)  # two layers alike
    return PatchLens(
        positions=torch.arange(16),
        topk_ids=top,
        topk_probs=torch.ones(top.shape),
        word_ids=torch.tensor([ids[w] for w in words]),
        words=words,
        word_probs=torch.as_tensor(word_probs, dtype=torch.float32),
        grid=PatchGrid(4, 4),
        vocab=vocab,
    )


def test_counts_with_known_answers() -> None:
    labels = patch_labels(SCENE, 4, 4)
    top1 = ["the"] * 16
    circle, square = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    top1[circle[0]] = "circle"  # one shape hit
    top1[square[0]] = "blue"  # one colour hit
    background = np.flatnonzero(labels == BACKGROUND)
    top1[background[0]] = "star"  # one background patch on an object word
    probs = np.zeros((2, 16, 1))
    probs[:, circle, 0] = 0.5
    probs[:, background, 0] = 0.1
    loc = scene_localisation(_result(top1, ["circle"], probs), SCENE)
    n_objects = len(circle) + len(square)
    assert loc.n_object_patches == n_objects and loc.n_background_patches == len(background)
    assert loc.shape_hits == [1, 1] and loc.color_hits == [1, 1] and loc.background_hits == [1, 1]
    assert loc.object_rate == [2 / n_objects] * 2 and loc.background_rate == [1 / len(background)] * 2
    # only the circle's shape word was asked: one (object, word) pair
    assert loc.n_word_pairs == 1 and np.allclose(loc.word_prob_object, 0.5)
    assert np.allclose(loc.word_prob_background, 0.1)
    both = loc.add(loc)
    assert both.n_scenes == 2 and both.shape_hits == [2, 2] and both.rows()[0][1] == loc.object_rate[0]


def test_measure_on_a_few_scenes() -> None:
    import evolens
    from evolens import toy
    from evolens.toy.evaluate import heldout_scenes
    from evolens.toy.patches import measure_localisation

    lvlm = evolens.load(toy.model_dir(), device="cpu")
    scenes = heldout_scenes(2, 1)
    loc = measure_localisation(lvlm, scenes, batch_size=2)
    assert loc.n_scenes == 3 and len(loc.object_rate) == lvlm.n_layers + 1
    assert loc.n_object_patches == sum(int((patch_labels(s, 4, 4) >= 0).sum()) for s in scenes)
    assert all(0 <= r <= 1 for r in loc.object_rate + loc.background_rate)
    assert isinstance(Localisation().add(loc).to_dict()["shape_hits"], list)
