"""A batch's metrics in one pass and as a stream of steps: each item gets what it gets alone."""

from __future__ import annotations

import pytest
import torch

from evolens.errors import SettingsError
from evolens.metrics import MetricsStream, compute_batch_metrics, compute_layer_metrics
from tests.metrics.test_compute import (
    N_LAYERS,
    N_STEPS,
    VOCAB,
    D,
    assert_same_metrics,
    make_lens,
    make_states,
)


@pytest.mark.parametrize("strategy", ["blocked", "whole"])
@pytest.mark.parametrize("chunk_steps", [2, None])
def test_a_batch_gives_what_each_item_gives_alone(strategy: str, chunk_steps: int | None) -> None:
    lens = make_lens()
    items = [make_states(n_steps=n, seed=n) for n in (7, 1, 12)]
    targets = [
        torch.randint(0, VOCAB, (s.shape[1],), generator=torch.Generator().manual_seed(5)) for s in items
    ]
    batch = compute_batch_metrics(
        items, lens, targets, k=3, tracked_ids=[4], chunk_steps=chunk_steps, strategy=strategy
    )
    assert len(batch) == len(items)
    for states, ids, got in zip(items, targets, batch, strict=True):
        alone = compute_layer_metrics(states, lens, ids, k=3, tracked_ids=[4], strategy="blocked")
        assert got.n_steps == states.shape[1]
        # every item keeps its own candidate width, however wide the batch's widest step is
        assert_same_metrics(alone, got)
    assert compute_batch_metrics([], lens, []) == []


def test_batch_metrics_refuse_mismatched_items() -> None:
    lens = make_lens()
    with pytest.raises(SettingsError, match="state tensors"):
        compute_batch_metrics([make_states()], lens, [])
    with pytest.raises(SettingsError, match="same number of layers"):
        compute_batch_metrics(
            [make_states(), make_states()[:3]], lens, [torch.zeros(N_STEPS, dtype=torch.long)] * 2
        )
    with pytest.raises(SettingsError, match="at least one generated step"):
        compute_batch_metrics([make_states(n_steps=0)], lens, [torch.zeros(0, dtype=torch.long)])


@pytest.mark.parametrize("chunk_steps", [3, None])
def test_a_stream_of_steps_gives_what_the_whole_batch_gives(chunk_steps: int | None) -> None:
    lens = make_lens()
    batch, n_steps = 3, 11
    states = make_states(n_steps=n_steps * batch).reshape(N_LAYERS + 1, batch, n_steps, D).transpose(1, 2)
    ids = torch.randint(0, VOCAB, (batch, n_steps), generator=torch.Generator().manual_seed(3))
    lengths = [11, 4, 7]  # items 1 and 2 stopped early and were carried to the batch's end
    stream = MetricsStream(lens, k=3, tracked_ids=[2], chunk_steps=chunk_steps)
    for start, end in ((0, 4), (4, 4), (4, 10), (10, 11)):
        stream.add(states[:, start:end], ids[:, start:end])
    got = stream.finish([ids[b, :n] for b, n in enumerate(lengths)])
    expected = compute_batch_metrics(
        [states[:, :n, b] for b, n in enumerate(lengths)],
        lens,
        [ids[b, :n] for b, n in enumerate(lengths)],
        k=3,
        tracked_ids=[2],
        strategy="blocked",
    )
    for a, b in zip(expected, got, strict=True):
        assert_same_metrics(a, b)


def test_a_stream_refuses_what_it_was_not_given() -> None:
    stream = MetricsStream(make_lens())
    with pytest.raises(SettingsError, match="target_ids must have shape"):
        stream.add(torch.zeros(N_LAYERS + 1, 2, 1, D), torch.zeros(2, 1, dtype=torch.long))
    stream.add(torch.zeros(N_LAYERS + 1, 2, 1, D), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(SettingsError, match="between 1 and the 2 steps"):
        stream.finish([torch.zeros(3, dtype=torch.long)])
    with pytest.raises(SettingsError, match="top-k"):
        MetricsStream(make_lens(), k=0)


def test_float64_batches_and_streams_give_each_item_alone_in_float64() -> None:
    lens = make_lens(mode="paper").with_logits_dtype(torch.float64)
    batch, n_steps = 2, 6
    states = make_states(n_steps=n_steps * batch).reshape(N_LAYERS + 1, batch, n_steps, D).transpose(1, 2)
    ids = torch.randint(0, VOCAB, (batch, n_steps), generator=torch.Generator().manual_seed(4))
    items = [states[:, :, b] for b in range(batch)]
    alone = [compute_layer_metrics(s, lens, i, k=3, tracked_ids=[2]) for s, i in zip(items, ids, strict=True)]
    together = compute_batch_metrics(items, lens, list(ids), k=3, tracked_ids=[2], strategy="whole")
    stream = MetricsStream(lens, k=3, tracked_ids=[2])
    stream.add(states[:, :4], ids[:, :4])
    stream.add(states[:, 4:], ids[:, 4:])
    for got in (together, stream.finish(list(ids))):
        for a, b in zip(alone, got, strict=True):
            assert b.metrics_dtype == "float64"
            for name, value in a.tensors().items():
                other = getattr(b, name)
                assert other.dtype == value.dtype, name
                if value.is_floating_point():
                    torch.testing.assert_close(other, value, rtol=1e-12, atol=1e-15)
