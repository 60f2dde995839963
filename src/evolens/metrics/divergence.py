"""Entropy, KL and Jensen-Shannon divergences over the vocabulary — each implemented once, here.

All functions take natural-log probabilities ``[..., vocab]`` (as ``torch.log_softmax`` returns them, finite)
and reduce the last axis. Each also accepts the probabilities themselves (``p = logp.exp()``) when the caller has
them already: the chunked metric computation exponentiates every layer once and reuses it for every metric, which
is a large share of the elementwise work at a 32,000-token vocabulary.
"""

from __future__ import annotations

import math

import torch

LN2 = math.log(2.0)


def _probs(logp: torch.Tensor, p: torch.Tensor | None) -> torch.Tensor:
    return logp.exp() if p is None else p


def entropy_bits(logp: torch.Tensor, p: torch.Tensor | None = None) -> torch.Tensor:
    """Shannon entropy ``-sum_k p(k) log2 p(k)`` in bits; ``[..., vocab] -> [...]``.

    ``p``: ``logp.exp()`` when already computed.
    """
    return -(_probs(logp, p) * logp).sum(-1) / LN2


def kl_bits(logp: torch.Tensor, logq: torch.Tensor, p: torch.Tensor | None = None) -> torch.Tensor:
    """``KL(p || q) = sum_k p(k) log2(p(k) / q(k))`` in bits; broadcasts; ``[..., vocab] -> [...]``.

    ``p``: ``logp.exp()`` when already computed.
    """
    return (_probs(logp, p) * (logp - logq)).sum(-1).clamp_min(0.0) / LN2


def jsd_both(
    logp: torch.Tensor,
    logq: torch.Tensor,
    p: torch.Tensor | None = None,
    q: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`jsd_bits` and :func:`jsd_paper` of the same pair in one pass (they share every costly term).

    Both are written through ``d = log q - log p`` and ``log(p / m) = ln 2 - softplus(d)``, ``m = (p + q) / 2``:

    * ``JSD = 1/2 sum_k [(p + q) log(p / m) + q d] / ln 2`` — the two KL terms of eq. (3), since
      ``log(q / m) = log(p / m) + d``;
    * the paper's value ``1/2 [KL(m || p) + KL(m || q)] / |V| = -1/4 mean_k (p + q) (2 log(p / m) + d)``, since
      ``log(m / p) = -log(p / m)`` and ``log(m / q) = -log(p / m) - d``.

    No term subtracts two log-probabilities of similar size except ``d`` itself, so both stay accurate when
    ``p`` and ``q`` are close (and are exactly 0 for identical inputs).

    Returns:
        ``(jsd_bits [...], jsd_paper [...])``.
    """
    p, q = _probs(logp, p), _probs(logq, q)
    d = logq - logp
    log_p_over_m = torch.logaddexp(d, d.new_zeros(())).neg_().add_(LN2)  # exact (softplus cuts off at 20)
    p_plus_q = p + q
    # (p + q) log(p / m) + q d, then (p + q) (2 log(p / m) + d): two fused multiply-adds, no further temporaries
    bits_terms = torch.addcmul(p_plus_q * log_p_over_m, q, d)
    paper_terms = torch.add(d, log_p_over_m, alpha=2.0).mul_(p_plus_q)
    bits = (0.5 * bits_terms.sum(-1) / LN2).clamp(0.0, 1.0)
    paper = -0.25 * paper_terms.mean(-1)
    return bits, paper


def jsd_bits(
    logp: torch.Tensor,
    logq: torch.Tensor,
    p: torch.Tensor | None = None,
    q: torch.Tensor | None = None,
) -> torch.Tensor:
    """Jensen-Shannon divergence in bits, summed over the vocabulary (paper eq. 3-4, log base 2).

    ``JSD(p, q) = 1/2 KL(p || m) + 1/2 KL(q || m)`` with ``m = (p + q) / 2``. Symmetric, in ``[0, 1]``, and 0
    only when ``p == q`` (exactly 0 for identical inputs). Computed as the two KL terms (not
    ``H(m) - (H(p) + H(q)) / 2``, which loses precision when ``p`` and ``q`` are close), through
    ``d = log q - log p``: ``log(p / m) = ln 2 - softplus(d)`` and ``log(q / m) = log(p / m) + d``
    (see :func:`jsd_both`). ``p``, ``q``: the probabilities when already computed. ``[..., vocab] -> [...]``.
    """
    return jsd_both(logp, logq, p, q)[0]


def jsd_paper(
    logp: torch.Tensor,
    logq: torch.Tensor,
    p: torch.Tensor | None = None,
    q: torch.Tensor | None = None,
) -> torch.Tensor:
    """What the paper's released code computes and calls a JS divergence (nats, vocabulary mean).

    ``0.5 * (F.kl_div(logp, m, reduction="none").mean(-1) + F.kl_div(logq, m, reduction="none").mean(-1))``
    with ``m = (p + q) / 2``. Since ``F.kl_div(input, target) = target * (log target - input)``, this is
    ``1/2 [KL(m || p) + KL(m || q)] / |V|`` in nats: the KL terms are reversed with respect to eq. (3), unbounded
    and divided by the vocabulary size. Kept for paper-faithful figures; use :func:`jsd_bits` otherwise.
    Computed with the terms it shares with :func:`jsd_bits` (:func:`jsd_both`); the tests hold it to the
    released code's expression to 1e-10. ``[..., vocab] -> [...]``.
    """
    return jsd_both(logp, logq, p, q)[1]
