"""The image-token lens: what each image-token position decodes to at every layer (Neo et al., 2024).

Where a trace follows the generated tokens, this follows the prompt's image-token positions — the "what is in this
patch" view. The lens runs over ``[n_layers + 1, n_image_tokens, d_model]`` states a chunk of positions at a time
(:func:`~evolens.metrics.compute.iter_logprob_chunks`, chunk sized by
:func:`~evolens.metrics.compute.chunk_steps_for`), and only the top-k and the chosen tokens' probabilities leave a
chunk: ``[L + 1, n_image_tokens, vocab]`` (2.4 GB in float32 at LLaVA-1.5-7B's 33 × 576 × 32,000) never exists.

The patch grid (:func:`patch_grid`) says which image token is which patch, where the family lays its image tokens
out as one square grid in raster order (LLaVA-1.5, the toy); elsewhere the results stay per position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from evolens.envelope import Envelope, JsonRecord
from evolens.errors import SettingsError
from evolens.lens.base import Lens
from evolens.metrics.compute import chunk_steps_for, iter_logprob_chunks
from evolens.metrics.tokens import gather_logprobs, topk

PATCHES_FILE = "patches.json"
PATCHES_ENVELOPE = Envelope("image-token lens result", schema=1, kinds=("patches",))
#: Families whose image tokens are one square grid of patches in raster order (row by row, left to right):
#: LLaVA-1.5 and VipLLaVA (CLIP's 24 × 24 patches, the class token dropped), PaliGemma (SigLIP's patches), Gemma 3
#: (SigLIP's patches pooled to 16 × 16). Others (LLaVA-NeXT's tiles, Qwen2-VL's merged 2 × 2 patches of an image
#: of any shape, Pixtral's rows with break tokens ...) have no single grid that the trace alone describes.
SQUARE_GRID_FAMILIES: frozenset[str] = frozenset({"llava", "vipllava", "paligemma", "gemma3"})
#: Families whose image features are not positions of the decoder's sequence.
CROSS_ATTENTION_FAMILIES: frozenset[str] = frozenset({"mllama"})


@dataclass(frozen=True)
class PatchGrid(JsonRecord):
    """Where each image token sits: ``rows × cols`` patches in raster order, or no grid with the reason.

    Attributes:
        rows: Patch rows (0 when no grid could be inferred).
        cols: Patch columns (0 when no grid could be inferred).
        note: Why there is no grid (empty when there is one).
    """

    rows: int
    cols: int
    note: str = ""

    @property
    def known(self) -> bool:
        return self.rows > 0 and self.cols > 0

    def cell(self, index: int) -> tuple[int, int]:
        """``(row, column)`` of image token ``index`` (raster order)."""
        if not self.known:
            raise SettingsError(f"no patch grid: {self.note}")
        return divmod(index, self.cols)


def check_patch_family(family: str) -> None:
    """Refuse a family whose image tokens are not decoder positions.

    Raises:
        SettingsError: Mllama and other cross-attention families.
    """
    if family in CROSS_ATTENTION_FAMILIES:
        raise SettingsError(
            f"the {family} family feeds the image through cross-attention layers: its image features are not "
            "positions in the decoder's sequence, so there are no image-token states to decode"
        )


def patch_grid(family: str, n_image_tokens: int) -> PatchGrid:
    """The patch grid of ``n_image_tokens`` image tokens of ``family`` (one image): a square grid in raster order
    for :data:`SQUARE_GRID_FAMILIES`, else no grid with a note saying why."""
    side = math.isqrt(n_image_tokens)
    if family not in SQUARE_GRID_FAMILIES:
        return PatchGrid(0, 0, f"the {family} family's image tokens are not one square grid in raster order")
    if n_image_tokens == 0 or side * side != n_image_tokens:
        return PatchGrid(
            0, 0, f"{n_image_tokens} image tokens are not one square grid (several images or tiles?)"
        )
    return PatchGrid(side, side)


@dataclass
class PatchLens:
    """The lens at every image-token position and layer; layer 0 is the embedding state (the projected image
    features), layer ``L`` the last decoder layer's output, all before the final norm.

    Attributes:
        positions: ``[n_image_tokens]`` indices into the trace's prompt of the image tokens, in order.
        topk_ids: ``[n_layers + 1, n_image_tokens, k]`` the k most probable tokens, most probable first.
        topk_probs: ``[n_layers + 1, n_image_tokens, k]`` their probabilities.
        word_ids: ``[n_words]`` the chosen tokens.
        words: ``n_words`` the words they were asked as.
        word_probs: ``[n_layers + 1, n_image_tokens, n_words]`` their probabilities.
        grid: Which image token is which patch.
        vocab: Id -> display string for every id in ``topk_ids`` and ``word_ids``.
        lens_mode: The lens the distributions come from.
        item_id: The trace's item.
    """

    positions: torch.Tensor
    topk_ids: torch.Tensor
    topk_probs: torch.Tensor
    word_ids: torch.Tensor
    words: list[str]
    word_probs: torch.Tensor
    grid: PatchGrid
    vocab: dict[int, str] = field(default_factory=dict)
    lens_mode: str = "logit"
    item_id: str = "0"

    @property
    def n_layers(self) -> int:
        return int(self.topk_ids.shape[0]) - 1

    @property
    def n_image_tokens(self) -> int:
        return int(self.topk_ids.shape[1])

    def top1_words(self, layer: int) -> list[str]:
        """Display strings of every image token's top-1 token at ``layer``."""
        return [self.vocab.get(int(i), f"<{int(i)}>") for i in self.topk_ids[layer, :, 0].tolist()]

    def word_index(self, word: str) -> int:
        """Column of ``word`` in :attr:`word_probs`.

        Raises:
            SettingsError: The word was not asked for.
        """
        if word not in self.words:
            raise SettingsError(f"{word!r} is not among the words of this result: {self.words}")
        return self.words.index(word)

    def to_dict(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "lens_mode": self.lens_mode,
            "positions": self.positions.tolist(),
            "topk_ids": self.topk_ids.tolist(),
            "topk_probs": self.topk_probs.tolist(),
            "word_ids": self.word_ids.tolist(),
            "words": list(self.words),
            "word_probs": self.word_probs.tolist(),
            "grid": self.grid.to_dict(),
            "vocab": {str(k): v for k, v in self.vocab.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PatchLens:
        n_words = len(data["words"])
        word_probs = torch.tensor(data["word_probs"], dtype=torch.float32)
        if word_probs.dim() != 3:  # no image token or no word: keep the shape
            n_boundaries = len(data["topk_ids"])
            word_probs = word_probs.reshape(n_boundaries, len(data["positions"]), n_words)
        return cls(
            positions=torch.tensor(data["positions"], dtype=torch.long),
            topk_ids=torch.tensor(data["topk_ids"], dtype=torch.long),
            topk_probs=torch.tensor(data["topk_probs"], dtype=torch.float32),
            word_ids=torch.tensor(data["word_ids"], dtype=torch.long),
            words=[str(w) for w in data["words"]],
            word_probs=word_probs,
            grid=PatchGrid.from_dict(data["grid"]),
            vocab={int(k): str(v) for k, v in data["vocab"].items()},
            lens_mode=str(data["lens_mode"]),
            item_id=str(data["item_id"]),
        )

    def save(self, path: str | Path) -> Path:
        """Write ``patches.json`` (or ``path``) atomically."""
        return PATCHES_ENVELOPE.write(path, "patches", self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> PatchLens:
        try:
            return cls.from_dict(PATCHES_ENVELOPE.read(path))
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise SettingsError(f"{path} is not a valid image-token lens result: {err}") from None


def patch_lens_tensors(
    states: torch.Tensor,
    lens: Lens,
    positions: torch.Tensor,
    word_ids: torch.Tensor,
    *,
    k: int = 5,
    chunk_positions: int | None = None,
    max_chunk_bytes: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k and chosen tokens' probabilities at ``positions``, chunk by chunk.

    Args:
        states: ``[n_layers + 1, n_prompt, d_model]`` the prompt's pre-norm residual states.
        lens: The lens.
        positions: ``[n_image_tokens]`` the image tokens' indices into the prompt.
        word_ids: ``[n_words]`` the chosen tokens.
        k: Top tokens kept per (layer, position).
        chunk_positions: Positions per chunk; ``None``: as many as ``max_chunk_bytes`` allows (512 MiB default).
        max_chunk_bytes: Memory budget of one chunk's float32 logits and log-probabilities.

    Returns:
        ``topk_ids [L + 1, n, k]``, ``topk_probs [L + 1, n, k]``, ``word_probs [L + 1, n, n_words]``, on the CPU.
    """
    if states.dim() != 3:
        raise SettingsError(f"states must be [n_layers + 1, n_prompt, d_model], got {tuple(states.shape)}")
    if k < 1:
        raise SettingsError(f"k must be at least 1, got {k}")
    positions = torch.as_tensor(positions, dtype=torch.long).flatten()
    word_ids = torch.as_tensor(word_ids, dtype=torch.long).flatten()
    if positions.numel() and (int(positions.min()) < 0 or int(positions.max()) >= states.shape[1]):
        raise SettingsError(f"image-token positions must lie in [0, {states.shape[1]})")
    if word_ids.numel() and (int(word_ids.min()) < 0 or int(word_ids.max()) >= lens.vocab_size):
        raise SettingsError(f"token ids must lie in [0, {lens.vocab_size}), got {word_ids.tolist()}")
    n_boundaries, k = int(states.shape[0]), min(k, lens.vocab_size)
    chunk = chunk_steps_for(lens, n_boundaries, "blocked", chunk_positions, max_chunk_bytes)
    ids, probs, words = [], [], []
    for start in range(0, positions.numel(), chunk):
        # only this chunk's states are gathered: the positions' states are never copied whole either
        picked = states[:, positions[start : start + chunk].to(states.device)]
        for _, logp in iter_logprob_chunks(picked, lens, chunk):
            top_ids, top_logp = topk(logp, k)
            ids.append(top_ids.cpu())
            probs.append(top_logp.exp().float().cpu())  # float32 whatever the lens computes in
            index = word_ids.to(logp.device).view(1, 1, -1).expand(n_boundaries, logp.shape[1], -1)
            words.append(gather_logprobs(logp, index).exp().float().cpu())
            del logp
    if not ids:
        return (
            torch.zeros(n_boundaries, 0, k, dtype=torch.long),
            torch.zeros(n_boundaries, 0, k),
            torch.zeros(n_boundaries, 0, word_ids.numel()),
        )
    return torch.cat(ids, 1), torch.cat(probs, 1), torch.cat(words, 1)
