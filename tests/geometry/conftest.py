"""Fixtures for the geometry tests: synthetic layer-wise features with a known structure, and tiny traces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def tiny_traces(tmp_path_factory: pytest.TempPathFactory):
    """Four traces of one question over four random images, from a tiny random 6-layer LLaVA."""
    import evolens
    from evolens.testing import save_tiny

    path: Path = save_tiny("llava", tmp_path_factory.mktemp("geo-tiny-llava"), seed=0, n_layers=6)
    lvlm = evolens.load(path, device="cpu")
    images = [
        Image.fromarray(np.random.default_rng(i).integers(0, 255, size=(40, 48, 3), dtype=np.uint8))
        for i in range(4)
    ]
    return lvlm.trace(images=images, prompts="what color is the circle?", max_new_tokens=10)
