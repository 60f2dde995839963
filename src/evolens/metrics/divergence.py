"""Entropy, KL and Jensen-Shannon divergences over the vocabulary — each implemented once, here.

All functions take natural-log probabilities ``[..., vocab]`` (as ``torch.log_softmax`` returns them, finite)
and reduce the last axis.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LN2 = math.log(2.0)


def entropy_bits(logp: torch.Tensor) -> torch.Tensor:
    """Shannon entropy ``-sum_k p(k) log2 p(k)`` in bits; ``[..., vocab] -> [...]``."""
    return -(logp.exp() * logp).sum(-1) / LN2


def kl_bits(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """``KL(p || q) = sum_k p(k) log2(p(k) / q(k))`` in bits; broadcasts; ``[..., vocab] -> [...]``."""
    return (logp.exp() * (logp - logq)).sum(-1).clamp_min(0.0) / LN2


def jsd_bits(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence in bits, summed over the vocabulary (paper eq. 3-4, log base 2).

    ``JSD(p, q) = 1/2 KL(p || m) + 1/2 KL(q || m)`` with ``m = (p + q) / 2``. Symmetric, in ``[0, 1]``, and 0
    only when ``p == q`` (exactly 0 for identical inputs). Computed as the two KL terms (not
    ``H(m) - (H(p) + H(q)) / 2``, which loses precision when ``p`` and ``q`` are close), through
    ``d = log q - log p``: ``log(p / m) = ln 2 - softplus(d)`` and ``log(q / m) = log(p / m) + d``.
    ``[..., vocab] -> [...]``.
    """
    d = logq - logp
    log_p_over_m = LN2 - torch.logaddexp(d, d.new_zeros(()))
    total = (logp.exp() * log_p_over_m + logq.exp() * (log_p_over_m + d)).sum(-1)
    return (0.5 * total / LN2).clamp(0.0, 1.0)


def jsd_paper(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """Exactly what the paper's released code computes and calls a JS divergence (nats, vocabulary mean).

    ``0.5 * (F.kl_div(logp, m, reduction="none").mean(-1) + F.kl_div(logq, m, reduction="none").mean(-1))``
    with ``m = (p + q) / 2``. Since ``F.kl_div(input, target) = target * (log target - input)``, this is
    ``1/2 [KL(m || p) + KL(m || q)] / |V|`` in nats: the KL terms are reversed with respect to eq. (3), unbounded
    and divided by the vocabulary size. Kept for paper-faithful figures; use :func:`jsd_bits` otherwise.
    ``[..., vocab] -> [...]``.
    """
    m = 0.5 * (logp.exp() + logq.exp())
    kl1 = F.kl_div(logp, m, reduction="none").mean(-1)
    kl2 = F.kl_div(logq, m, reduction="none").mean(-1)
    return 0.5 * (kl1 + kl2)
