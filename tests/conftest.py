"""Shared fixtures: fixed seeds, tiny saved checkpoints, small test images."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from evolens.testing import save_tiny

    return save_tiny("llava", tmp_path_factory.mktemp("tiny-llava"), seed=0)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from evolens.testing import save_tiny

    return save_tiny("llama", tmp_path_factory.mktemp("tiny-llama"), seed=0)


@pytest.fixture(scope="session")
def tiny_llava(tiny_llava_dir: Path):
    import evolens

    return evolens.load(tiny_llava_dir, device="cpu")


@pytest.fixture(scope="session")
def tiny_llama(tiny_llama_dir: Path):
    import evolens

    return evolens.load(tiny_llama_dir, device="cpu")


def make_image(seed: int = 0, size: tuple[int, int] = (48, 40)) -> Image.Image:
    """A small random RGB image."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture
def image() -> Image.Image:
    return make_image(0)


@pytest.fixture
def image_file(tmp_path: Path) -> Path:
    path = tmp_path / "picture.png"
    make_image(1).save(path)
    return path


@pytest.fixture(scope="session")
def toy_detect_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A labelled toy run with hidden states (:func:`tests.toy_run.toy_run`), built once; copy it before writing."""
    from tests.toy_run import toy_run

    return toy_run(tmp_path_factory.mktemp("toy_detect"))
