"""A float64 re-implementation of the paper's heatmap function, the reference the paper-faithful mode is held to.

What the released heatmap script computes (``/work/shared/notes/paper-code-facts.md``), written anew from that
description: the language head on every entry of Hugging Face's ``hidden_states`` — the raw outputs of the
embeddings and layers 0..L-2, and the last layer's output after the model's own final norm — then, for each pair of
adjacent entries, the logits cast to float64, ``m = (softmax(a) + softmax(b)) / 2`` and
``0.5 * (kl_div(log_softmax(a), m).mean(-1) + kl_div(log_softmax(b), m).mean(-1))``. Here the head runs in float64
as well (the script runs it in the model's dtype and casts its logits), so that the reference has no float32 step
after the model's own norm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from evolens.models.roles import LogitTransform


def paper_js(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """The script's "JS divergence" of two adjacent entries' logits ``[..., vocab]`` (cast to float64)."""
    a, b = logits_a.to(torch.float64), logits_b.to(torch.float64)
    m = 0.5 * (F.softmax(a, dim=-1) + F.softmax(b, dim=-1))
    kl1 = F.kl_div(F.log_softmax(a, dim=-1), m, reduction="none").mean(-1)
    kl2 = F.kl_div(F.log_softmax(b, dim=-1), m, reduction="none").mean(-1)
    return 0.5 * (kl1 + kl2)


def hf_entries(states: torch.Tensor, final_norm: nn.Module) -> torch.Tensor:
    """Hugging Face's ``hidden_states`` from evolens's pre-norm states ``[L + 1, steps, d]``: the last one normed by
    the model's own norm, in the model's dtype (as the model computes it)."""
    with torch.inference_mode():
        last = final_norm(states[-1:])
    return torch.cat([states[:-1], last.to(states.dtype)], dim=0)


def paper_heatmap(
    entries: torch.Tensor, lm_head: nn.Linear, transform: LogitTransform | None = None
) -> torch.Tensor:
    """The heatmap's values before its per-column scaling: ``[L, steps]`` float64, row ``l`` the pair (l, l + 1).

    Args:
        entries: ``[L + 1, steps, d]`` Hugging Face's ``hidden_states`` at the generated positions.
        lm_head: The model's language head (run in float64 here).
        transform: The model's logit scaling / soft-capping (none for LLaVA, where the paper ran).
    """
    weight = lm_head.weight.detach().to(torch.float64)
    bias = None if lm_head.bias is None else lm_head.bias.detach().to(torch.float64)
    values = []
    with torch.inference_mode():
        for step in range(entries.shape[1]):  # one generated token at a time, as the script loops
            logits = F.linear(entries[:, step].to(torch.float64), weight, bias)
            if transform is not None:
                logits = transform.apply(logits)
            values.append(torch.stack([paper_js(logits[i], logits[i + 1]) for i in range(len(logits) - 1)]))
    return torch.stack(values, dim=1)
