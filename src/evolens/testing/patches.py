"""A synthetic image-token lens result with known answers, for tests of what reads one (figures, report)."""

from __future__ import annotations

import torch

from evolens.metrics.patches import PatchGrid, PatchLens

WORDS = ("dog", "sky", "grass", "the")


def synthetic_patch_lens(n_layers: int = 4, side: int = 3, item_id: str = "0") -> PatchLens:
    """A ``side × side`` grid: patch ``i`` decodes to ``WORDS[i % 3]`` from layer 2 on (``"the"`` before, with
    probability 0.3); ``"dog"``'s probability rises with the layer on the first patch only."""
    n = side * side
    top1 = torch.full((n_layers + 1, n), 3, dtype=torch.long)
    top1[2:] = torch.arange(n) % 3
    ids = torch.stack([top1, (top1 + 1) % 4], dim=-1)
    probs = torch.stack([torch.full((n_layers + 1, n), 0.6), torch.full((n_layers + 1, n), 0.2)], dim=-1)
    probs[:2, :, 0] = 0.3
    dog = torch.zeros(n_layers + 1, n, 1)
    dog[:, 0, 0] = torch.linspace(0.0, 0.9, n_layers + 1)
    return PatchLens(
        positions=torch.arange(5, 5 + n),
        topk_ids=ids,
        topk_probs=probs,
        word_ids=torch.tensor([0]),
        words=["dog"],
        word_probs=dog,
        grid=PatchGrid(side, side),
        vocab=dict(enumerate(WORDS)),
        item_id=item_id,
    )
