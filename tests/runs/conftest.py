"""A tiny saved LLaVA shared by the run tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from evolens.testing import save_tiny

    return save_tiny("llava", tmp_path_factory.mktemp("tiny-llava"), seed=0)


@pytest.fixture(scope="session")
def tiny_llava(tiny_llava_dir: Path):
    import evolens

    return evolens.load(tiny_llava_dir, device="cpu")
