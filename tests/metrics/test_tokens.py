"""Log-probabilities, ranks, top-k and top-1 unions."""

from __future__ import annotations

import torch

from evolens.metrics.tokens import first_stable_top1_layer, gather_logprobs, ranks, topk, union_top1


def test_ranks_are_one_based_and_ties_share_the_best_rank() -> None:
    logp = torch.log(torch.tensor([[0.1, 0.4, 0.4, 0.1]]))
    ids = torch.tensor([[1]])
    assert ranks(logp, ids).item() == 1
    assert ranks(logp, torch.tensor([[2]])).item() == 1
    assert ranks(logp, torch.tensor([[0]])).item() == 3
    assert ranks(logp, torch.tensor([[3]])).item() == 3


def test_rank_equals_position_in_a_full_sort() -> None:
    logp = torch.log_softmax(torch.randn(5, 50), -1)
    order = logp.argsort(dim=-1, descending=True)
    for row in range(5):
        for position, token in enumerate(order[row, :10].tolist()):
            assert ranks(logp[row], torch.tensor([token])).item() == position + 1


def test_gather_and_topk() -> None:
    logp = torch.log_softmax(torch.randn(3, 4, 20), -1)
    ids, values = topk(logp, 5)
    assert ids.shape == values.shape == (3, 4, 5)
    assert torch.equal(gather_logprobs(logp, ids), values)
    assert bool((values[..., :-1] >= values[..., 1:]).all())
    assert torch.equal(ids[..., 0], logp.argmax(-1))


def test_union_top1_keeps_first_appearance_order_and_pads() -> None:
    top1 = torch.tensor([[5, 1], [5, 2], [7, 2], [5, 2]])  # [layers, steps]
    out = union_top1(top1)
    assert out.tolist() == [[5, 7], [1, 2]]
    top1 = torch.tensor([[3, 1], [3, 2], [3, 4]])
    assert union_top1(top1).tolist() == [[3, -1, -1], [1, 2, 4]]


def test_union_top1_takes_a_fixed_width() -> None:
    top1 = torch.tensor([[3, 1], [3, 2], [3, 1], [3, 4]])
    assert union_top1(top1, width=4).tolist() == [[3, -1, -1, -1], [1, 2, 4, -1]]
    assert union_top1(top1[:0], width=2).shape == (2, 2)


def test_first_stable_top1_layer_known_answers() -> None:
    token_ranks = torch.tensor([[1, 2, 3, 1], [2, 1, 1, 1], [1, 1, 1, 2], [1, 1, 1, 1]])
    assert first_stable_top1_layer(token_ranks) == [2, 1, 1, 3]
    assert first_stable_top1_layer(torch.tensor([[1], [3]])) == [None]
    assert first_stable_top1_layer(torch.ones(3, 0, dtype=torch.long)) == []


def test_first_stable_top1_layer_is_where_the_top1_run_to_the_last_layer_starts() -> None:
    generator = torch.Generator().manual_seed(0)
    token_ranks = torch.randint(1, 3, (7, 200), generator=generator)  # [L + 1, T], rank 1 about half the time
    for step, layer in enumerate(first_stable_top1_layer(token_ranks)):
        column = token_ranks[:, step].tolist()
        if layer is None:
            assert column[-1] != 1
            continue
        assert all(r == 1 for r in column[layer:])
        assert layer == 0 or column[layer - 1] != 1
