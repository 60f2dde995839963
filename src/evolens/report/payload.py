"""The per-item data a report embeds: compact JSON built from a trace's stored metrics (never from a model)."""

from __future__ import annotations

from typing import Any

import torch

from evolens.trace import Trace

PROB_SCALE = 1000  # probabilities are stored as integers in units of 1e-3 (0.1 %): what the charts can show
JSD_SCALE = 10_000  # JSD in bits as integers in units of 1e-4 bit
HEATMAP_TOKENS = 40  # the paper's heatmap shows the first 40 tokens
TOP1_SERIES = "top-1 from layer"
TOP1_DESCRIPTION = (
    "first layer from which the generated token stays the most probable token up to the last layer "
    "(logit lens, computed from the trace; not the critical layer of the analysis)"
)  # of evolens.metrics.tokens.first_stable_top1_layer


def _probs(values: torch.Tensor) -> list[Any]:
    return (values.float().clamp(0, 1) * PROB_SCALE).round().int().tolist()


def _rounded(values: torch.Tensor, digits: int) -> list[Any]:
    return values.double().nan_to_num(nan=0.0).mul(10**digits).round().div(10**digits).tolist()


def _scaled(values: torch.Tensor, scale: int) -> list[Any]:
    return values.float().nan_to_num(nan=0.0).mul(scale).round().int().tolist()


def _significant(values: torch.Tensor, digits: int = 4) -> list[Any]:
    return [[float(f"{v:.{digits}g}") for v in row] for row in values.float().nan_to_num(nan=0.0).tolist()]


def trace_payload(trace: Trace, *, topk: int, from_layer: int | None) -> dict[str, Any]:
    """Everything the report's scripts draw for one trace, step-major (``[step][layer]...``).

    Keys: ``n_layers``, ``tokens``, ``ids``, ``p`` (generated token's probability, in 1/``PROB_SCALE``), ``rank``,
    ``entropy`` (bits), ``jsd`` (bits in 1/``JSD_SCALE``, ``[step][layer pair]``), ``jsd_paper`` (4 significant digits), ``topk_ids`` / ``topk_p``
    (``[step][layer][k]``), ``cand_ids`` / ``cand_p`` (the paper's candidates of each step, ``[step][candidate]`` and
    ``[step][candidate][layer]``), ``from_layer``, ``vocab`` (id -> display string for every id used).
    """
    k = min(topk, int(trace.metrics.topk_ids.shape[-1]))
    top = trace.topk(k)
    cand_ids: list[list[int]] = []
    cand_p: list[list[list[int]]] = []
    used: set[int] = set(trace.generated_ids.tolist()) | set(top.ids.unique().tolist())
    chosen_from = from_layer if from_layer is not None else round(trace.n_layers * 0.6)
    for step in range(trace.n_steps):
        cand = trace.candidates(step, chosen_from)
        ids = [int(i) for i in cand.ids.tolist()]
        cand_ids.append(ids)
        cand_p.append(_probs(cand.probs.T))
        used.update(ids)
    vocab = {str(i): trace.vocab.get(i, f"<{i}>") for i in sorted(used)}
    return {
        "n_layers": trace.n_layers,
        "tokens": list(trace.tokens),
        "ids": [int(i) for i in trace.generated_ids.tolist()],
        "p": _probs(trace.token_probs().T),
        "rank": trace.token_ranks().T.int().tolist(),
        "entropy": _rounded(trace.entropy().T, 2),
        "jsd": _scaled(trace.jsd("bits").T, JSD_SCALE),
        "jsd_paper": _significant(trace.jsd("paper").T),
        "topk_ids": top.ids.transpose(0, 1).int().tolist(),
        "topk_p": _probs(top.probs.transpose(0, 1)),
        "cand_ids": cand_ids,
        "cand_p": cand_p,
        "from_layer": chosen_from,
        "vocab": vocab,
    }
