"""Real traces of a tiny random LLaVA, saved under a run directory (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from evolens.testing.traces import tiny_traces
from evolens.trace import Trace
from tests.run_options import run_options


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Trace]]:
    """``(run directory, traces)``: two items of 6 tokens on a 4-layer model; traces under ``run/traces/<id>``."""
    root = tmp_path_factory.mktemp("tiny_run")
    return root, tiny_traces(root, n_items=2, max_new_tokens=6)


@pytest.fixture(scope="session")
def analysed_run(tmp_path_factory: pytest.TempPathFactory, tiny_run) -> Path:
    """A real run directory: AMBER over the tiny model's words (3 items, the third image missing so it fails, one
    hostile prompt and annotation word), merged with the default analysis; then the first item's ``analysis.json``
    is replaced by a synthetic one with known critical and mutation layers (the tiny model's profiles are flat)."""
    import json

    import evolens
    from evolens.data import Amber
    from tests.runs.test_run import _amber_over_tiny_vocabulary

    from .helpers import EVIL, synthetic_analysis

    root = tmp_path_factory.mktemp("analysed_run")
    data = _amber_over_tiny_vocabulary(root, n=3)
    relation = json.loads((data / "relation.json").read_text())
    relation[EVIL] = []
    (data / "relation.json").write_text(json.dumps(relation))
    annotations = json.loads((data / "annotations.json").read_text())
    annotations[0]["hallu"].append(EVIL)
    (data / "annotations.json").write_text(json.dumps(annotations))
    queries = json.loads((data / "query" / "query_generative.json").read_text())
    queries[1]["query"] = EVIL
    (data / "query" / "query_generative.json").write_text(json.dumps(queries))
    (data / "image" / "AMBER_3.jpg").unlink()
    evolens.run(
        tiny_run[0] / "model",
        Amber(data),
        root / "run",
        **run_options(max_new_tokens=6, batch_size=2, device="cpu", method="fallback", progress=False),
    )
    first = root / "run" / "items" / "1"
    trace = Trace.load(first)
    n = trace.n_steps
    critical = [2, -1] + [1] * (n - 2)
    mutations = [[4], []] + [[3] if i % 2 == 0 else [] for i in range(n - 2)]
    synthetic_analysis(trace, critical, mutations).save(first)
    return root / "run"
