from __future__ import annotations

import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def make_image(seed: int = 0, size: tuple[int, int] = (48, 40)):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory):
    """Family name -> loaded tiny model, built on first use."""
    import evolens
    from evolens.testing import save_tiny

    cache: dict[str, object] = {}

    def get(family: str):
        if family not in cache:
            path = save_tiny(family, tmp_path_factory.mktemp(f"tiny-{family}"), seed=0)
            cache[family] = evolens.load(path, device="cpu")
        return cache[family]

    return get
