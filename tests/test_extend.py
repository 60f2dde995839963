"""README "How to extend evolens", done once each where no other test does it: a new metric computed over the
lens's chunks (memory O(chunk)), checked against the whole distribution, and shown in the report as a new section of
token values and a table — with no change to evolens."""

from __future__ import annotations

import html
from pathlib import Path

import torch

from evolens.metrics import first_stable_top1_layer
from evolens.metrics.compute import iter_logprob_chunks
from evolens.report import write_report
from tests.conftest import make_image


def top5_mass(logp: torch.Tensor) -> torch.Tensor:
    """A new metric: the probability mass of the five most probable tokens, ``[L + 1, steps]`` from one chunk's
    log-probabilities ``[L + 1, steps, vocab]``."""
    return logp.topk(5, dim=-1).values.exp().sum(-1)


def test_a_new_metric_runs_over_chunks_and_reaches_the_report(tiny_llava, tmp_path: Path) -> None:
    trace = tiny_llava.trace(make_image(3), "describe the image", max_new_tokens=6)
    lens = tiny_llava.lens(trace.lens_mode)
    assert trace.hidden_states is not None
    chunks = [(steps, top5_mass(logp)) for steps, logp in iter_logprob_chunks(trace.hidden_states, lens, 2)]
    assert len(chunks) == 3  # six steps, two at a time: never the whole [L + 1, T, vocab] at once
    mass = torch.cat([values for _, values in chunks], dim=1)
    whole = torch.log_softmax(lens.logits(trace.hidden_states), dim=-1)
    torch.testing.assert_close(mass, top5_mass(whole), rtol=1e-5, atol=1e-6)
    assert mass.shape == (trace.n_layers + 1, trace.n_steps)
    assert bool(((mass > 0) & (mass <= 1 + 1e-6)).all())
    # the stored top-1 probability is part of the new mass, at every layer and step
    assert bool((trace.metrics.topk_logprobs[..., 0].exp() <= mass + 1e-6).all())

    stable = first_stable_top1_layer(trace.metrics.target_ranks)  # a metric of stored arrays, same recipe
    report = write_report(
        tmp_path / "report.html",
        [trace],
        extras={
            trace.item_id: {
                "token_values": {"top-5 mass at the last layer": mass[-1].tolist()},
                "tables": [
                    {
                        "title": "first layer from which each token stays top-1",
                        "columns": ["token", "layer"],
                        "rows": [
                            [t, "–" if s is None else s] for t, s in zip(trace.tokens, stable, strict=True)
                        ],
                    }
                ],
            }
        },
    )
    page = report.read_text(encoding="utf-8")
    assert "top-5 mass at the last layer" in page
    assert html.escape("first layer from which each token stays top-1") in page
