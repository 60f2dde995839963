"""Per-token quantities read off a distribution: log-probability, rank, top-k, candidate tokens, and the first
layer from which a token stays top-1."""

from __future__ import annotations

import torch


def gather_logprobs(logp: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of ``ids``: ``logp [..., vocab]``, ``ids [..., n]`` (broadcast) ``-> [..., n]``."""
    ids = ids.to(logp.device).expand(*logp.shape[:-1], ids.shape[-1])
    return logp.gather(-1, ids)


def ranks(logp: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """1-based rank of ``ids`` (1 = most probable; ties share the best rank); ``[..., vocab], [..., n] -> [..., n]``."""
    target = gather_logprobs(logp, ids)
    # counting in int32 is ~1.6x faster than the default int64 sum of booleans (a vocabulary is far below 2^31)
    return (logp.unsqueeze(-2) > target.unsqueeze(-1)).sum(-1, dtype=torch.int32).long() + 1


def topk(logp: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` most probable ids and their log-probabilities, most probable first: ``[..., k]`` each."""
    values, indices = torch.topk(logp, k=min(k, logp.shape[-1]), dim=-1)
    return indices, values


def union_top1(top1_ids: torch.Tensor, pad: int = -1, width: int | None = None) -> torch.Tensor:
    """Per step, the distinct tokens that are top-1 at some layer.

    Computed on ``top1_ids``'s device without a per-step loop: a token is kept at the first layer where it
    appears in its step's column, and its slot is the number of such first appearances before it.

    Args:
        top1_ids: ``[n_layers + 1, n_steps]`` the most probable id at each (layer, step).
        pad: Fill value for steps with fewer distinct tokens.
        width: Columns of the result (at least the largest count; ``n_layers + 1`` always is). ``None``: the
            largest count, which an accelerator must first send to the CPU (a synchronisation).

    Returns:
        ``[n_steps, C]`` distinct ids in order of the first layer where each is top-1, padded with ``pad``;
        ``C`` is ``width`` or the largest count over steps (on ``top1_ids``'s device).
    """
    n_layers, n_steps = top1_ids.shape
    device = top1_ids.device
    if n_layers == 0 or n_steps == 0:
        return torch.full((n_steps, width or 0), pad, dtype=torch.long, device=device)
    earlier = torch.ones(n_layers, n_layers, dtype=torch.bool, device=device).tril_(-1)  # [l, j]: j < l
    # [l, j, step]: layer j < l already had the token of layer l
    seen = (top1_ids.unsqueeze(1) == top1_ids.unsqueeze(0)) & earlier.unsqueeze(-1)
    first = ~seen.any(1)  # [l, step]
    slot = first.long().cumsum(0) - 1
    if width is None:
        width = int(first.sum(0).max())
    out = torch.full((n_steps, width), pad, dtype=torch.long, device=device)
    step_idx = torch.arange(n_steps, device=device).expand(n_layers, -1)
    out[step_idx[first], slot[first]] = top1_ids[first].long()
    return out


def first_stable_top1_layer(ranks: torch.Tensor) -> list[int | None]:
    """Per step, the first layer from which the generated token has rank 1 at every deeper layer.

    Args:
        ranks: ``[n_layers + 1, n_steps]`` ranks of the generated tokens (1 = most probable; ``trace.token_ranks()``).

    Returns:
        ``n_steps`` layers, ``None`` where the token is not top-1 at the last layer (sampled tokens).

    >>> first_stable_top1_layer(torch.tensor([[1, 3], [2, 1], [1, 1]]))
    [2, 1]
    >>> first_stable_top1_layer(torch.tensor([[1], [2]]))
    [None]
    """
    top = ranks == 1  # [L + 1, T]
    # suffix_all[l, t]: top-1 at every layer >= l
    suffix_all = top.flip(0).cumprod(0).flip(0).bool()
    layers: list[int | None] = []
    for step in range(ranks.shape[1]):
        hits = torch.nonzero(suffix_all[:, step]).flatten()
        layers.append(int(hits[0]) if hits.numel() else None)
    return layers
