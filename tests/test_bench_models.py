"""The benchmarks' shared set-up times the same work in every variant (``bench/models.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def bench_models():
    sys.path.insert(0, str(BENCH))
    try:
        import models

        yield models
    finally:
        sys.path.remove(str(BENCH))


def test_prepared_generation_is_trace_generation(bench_models, tiny_llava) -> None:
    image = bench_models.test_image()
    prompt = "Please describe this image in detail."
    prepared = bench_models.prepare_generation(tiny_llava, [image, image], prompt, 6)
    traced = tiny_llava.trace(image, prompt, max_new_tokens=6)

    items = prepared.capture()
    assert len(items) == 2
    for item in items:
        # the hooked generation makes exactly the tokens trace makes, with one state per layer and step
        assert torch.equal(item.generated_ids, traced.generated_ids)
        assert item.hidden_states.shape[:2] == (tiny_llava.loaded.roles.n_layers + 1, traced.n_steps)
    # plain generate runs the same decoding: the same number of tokens over the batch
    assert prepared.generate() == 2 * traced.n_steps
