"""The image-token lens's figures: the labelled patch grid and one word's heat map."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from evolens.errors import SettingsError
from evolens.metrics.patches import PatchGrid
from evolens.testing.patches import synthetic_patch_lens
from evolens.viz.patches import patch_grid_figure, patch_word_figure


def _texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_grid_labels_each_patch_with_its_top1() -> None:
    result = synthetic_patch_lens()
    image = np.zeros((30, 30, 3), dtype=np.uint8)
    fig = patch_grid_figure(result, 3, image=image)
    texts = _texts(fig)
    assert len(texts) == 9 and texts[0] == "dog\n0.60" and texts[1] == "sky\n0.60" and texts[4] == "sky\n0.60"
    assert len(fig.axes[0].images) == 1 and "layer 3" in fig.axes[0].get_title()
    early = _texts(patch_grid_figure(result, 0))
    assert early == ["the\n0.30"] * 9
    assert _texts(patch_grid_figure(result, 0, min_prob=0.5)) == []


def test_word_heat_map_over_patches_and_layers() -> None:
    result = synthetic_patch_lens()
    fig = patch_word_figure(result, "dog", image=np.zeros((30, 30, 3), dtype=np.uint8))
    heat = fig.axes[0].images[0].get_array()
    assert heat.shape == (5, 9) and heat[4, 0] == pytest.approx(0.9) and heat[:, 1:].max() == 0
    # the grid panel shows the layer where the word peaks: the last
    assert "layer 4" in fig.axes[1].get_title()


def test_refusals() -> None:
    result = synthetic_patch_lens()
    with pytest.raises(SettingsError, match="not among the words"):
        patch_word_figure(result, "cat")
    with pytest.raises(SettingsError, match="layer must be"):
        patch_grid_figure(result, 9)
    gridless = replace(result, grid=PatchGrid(0, 0, "tiles"))
    with pytest.raises(SettingsError, match="no patch grid to draw on: tiles"):
        patch_grid_figure(gridless, 1)
    assert len(patch_word_figure(gridless, "dog").axes) == 2  # the heat map and its colour bar only
