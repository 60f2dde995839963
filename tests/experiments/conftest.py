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


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads; with pytest-xdist workers on a shared machine they only
    contend (a test runs several times slower). Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load_family(family: str, tiny_models):
    """The loaded tiny model of ``family`` (``tiny_models``: the fixture), or a skip when it cannot be built here."""
    from evolens.testing import tiny_unavailable

    reason = tiny_unavailable(family)
    if reason is not None:
        pytest.skip(reason)
    return tiny_models(family)
