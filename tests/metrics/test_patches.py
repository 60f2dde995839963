"""The image-token lens: chunked equals unchunked, chunks stay within their size, the grid, the file round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from evolens.errors import SettingsError
from evolens.metrics.patches import PatchLens, patch_grid, patch_lens_tensors
from evolens.trace.patches import check_patch_trace, image_token_lens


@pytest.fixture(scope="module")
def patch_trace(tiny_llava):
    from tests.conftest import make_image

    return tiny_llava.trace(make_image(0), "describe this image", max_new_tokens=2, prompt_positions=True)


class CountingLens:
    """A lens that records the largest number of positions it was given at once."""

    def __init__(self, lens) -> None:
        self.inner = lens
        self.largest = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def logits(self, states, boundaries=None):
        self.largest = max(self.largest, int(states.shape[1]))
        return self.inner.logits(states, boundaries)


def test_chunked_equals_unchunked_and_the_full_distribution(tiny_llava, patch_trace) -> None:
    lens = tiny_llava.lens()
    states, positions = patch_trace.prompt_hidden_states, patch_trace.image_token_positions
    words = torch.tensor([5, 7, 11])
    whole = patch_lens_tensors(states, lens, positions, words, k=4, chunk_positions=10_000)
    chunked = patch_lens_tensors(states, lens, positions, words, k=4, chunk_positions=3)
    for a, b in zip(whole, chunked, strict=True):
        torch.testing.assert_close(a, b)
    probs = torch.softmax(lens.logits(states[:, positions]).float(), -1)  # the reference: everything at once
    torch.testing.assert_close(whole[2], probs[..., words])
    torch.testing.assert_close(whole[1][..., 0], probs.max(-1).values)
    assert whole[0].shape == (tiny_llava.n_layers + 1, positions.numel(), 4)


def test_memory_stays_within_the_chunk(tiny_llava, patch_trace) -> None:
    lens = CountingLens(tiny_llava.lens())
    positions = patch_trace.image_token_positions
    patch_lens_tensors(
        patch_trace.prompt_hidden_states, lens, positions, torch.tensor([1]), chunk_positions=2
    )
    assert lens.largest == 2 < positions.numel()
    # from a byte budget: two float32 [L + 1, chunk, vocab] arrays fit in it
    budget = 2 * (tiny_llava.n_layers + 1) * lens.vocab_size * 4 * 3
    counting = CountingLens(tiny_llava.lens())
    patch_lens_tensors(
        patch_trace.prompt_hidden_states, counting, positions, torch.tensor([1]), max_chunk_bytes=budget
    )
    assert counting.largest == 3


def test_grid_of_the_tiny_llava(tiny_llava, patch_trace) -> None:
    result = image_token_lens(tiny_llava.attach(patch_trace), tiny_llava.token_ids(["image"]), ["image"], k=3)
    n = patch_trace.image_token_positions.numel()
    side = int(n**0.5)
    assert side * side == n and result.grid.known and (result.grid.rows, result.grid.cols) == (side, side)
    # raster order: token i is row i // side, column i % side
    assert result.grid.cell(0) == (0, 0) and result.grid.cell(side + 1) == (1, 1)
    assert result.grid.cell(n - 1) == (side - 1, side - 1)
    # the image tokens are the prompt's placeholder positions, in order
    image_id = tiny_llava.loaded.roles.image_token_id
    assert (patch_trace.prompt_ids[result.positions] == image_id).all()
    assert len(result.top1_words(0)) == n and result.words == ["image"]


def test_grids_refused_clearly() -> None:
    assert not patch_grid("llava_next", 576).known and "square grid" in patch_grid("llava_next", 576).note
    assert not patch_grid("llava", 577).known
    assert patch_grid("llava", 576).rows == 24
    with pytest.raises(SettingsError, match="no patch grid"):
        patch_grid("qwen2_vl", 64).cell(0)


def test_round_trip(tmp_path: Path, tiny_llava, patch_trace) -> None:
    result = image_token_lens(tiny_llava.attach(patch_trace), tiny_llava.token_ids(["image", "a"]), k=2)
    path = result.save(tmp_path / "patches.json")
    back = PatchLens.load(path)
    assert back.to_dict() == result.to_dict()
    torch.testing.assert_close(back.word_probs, result.word_probs)


def test_bad_traces(tiny_llava, image) -> None:
    plain = tiny_llava.trace(image, "describe this image", max_new_tokens=2)
    with pytest.raises(SettingsError, match="without prompt positions"):
        check_patch_trace(plain)
    text_only = tiny_llava.trace(None, "describe this image", max_new_tokens=2, prompt_positions=True)
    with pytest.raises(SettingsError, match="no image token"):
        check_patch_trace(text_only)
    from dataclasses import replace

    mllama = replace(plain, model=replace(plain.model, family="mllama"))
    with pytest.raises(SettingsError, match="cross-attention"):
        check_patch_trace(mllama)
