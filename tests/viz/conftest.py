"""Real traces of a tiny random LLaVA, saved under a run directory (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from evolens.testing.traces import tiny_traces
from evolens.trace import Trace


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Trace]]:
    """``(run directory, traces)``: two items of 6 tokens on a 4-layer model; traces under ``run/traces/<id>``."""
    root = tmp_path_factory.mktemp("tiny_run")
    return root, tiny_traces(root, n_items=2, max_new_tokens=6)
