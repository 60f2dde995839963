"""Synthetic curves and metrics with known critical and mutation layers."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from evolens.metrics.compute import LayerMetrics


@dataclass
class StepCurve:
    jsd: np.ndarray  # [L]
    critical: int  # state where the plateau starts
    spikes: list[int]  # transition indices of spikes
    n_layers: int

    @property
    def mutation_layers(self) -> list[int]:
        return [s + 1 for s in self.spikes]


def step_jsd(
    rng: np.random.Generator,
    n_layers: int,
    critical: int,
    spikes: list[int] = (),  # type: ignore[assignment]
    *,
    high: tuple[float, float] = (0.08, 0.5),
    low: tuple[float, float] = (0.0005, 0.005),
    spike: tuple[float, float] = (0.1, 0.4),
    embedding: float | None = 0.7,
) -> StepCurve:
    """High JSD (log-uniform in ``high``) on transitions < critical, low on the rest, spikes where asked."""
    jsd = np.empty(n_layers)
    jsd[:critical] = np.exp(rng.uniform(math.log(high[0]), math.log(high[1]), critical))
    jsd[critical:] = np.exp(rng.uniform(math.log(low[0]), math.log(low[1]), n_layers - critical))
    for s in spikes:
        jsd[s] = rng.uniform(*spike)
    if embedding is not None:
        jsd[0] = embedding
    return StepCurve(jsd, critical, sorted(spikes), n_layers)


def step_probs(rng: np.random.Generator, n_layers: int, critical: int, peak: float = 0.9) -> np.ndarray:
    """Near-zero probabilities before ``critical``, then values in [0.6 peak, peak] from it on."""
    p = rng.uniform(0.0, 0.02 * peak, n_layers + 1)
    p[critical:] = rng.uniform(0.6 * peak, peak, n_layers + 1 - critical)
    p[-1] = peak
    return p


def make_metrics(
    probs: np.ndarray,
    jsd: np.ndarray,
    top1_ids: np.ndarray | None = None,
    top1_probs: np.ndarray | None = None,
    target_ids: np.ndarray | None = None,
    vocab_size: int = 50,
) -> LayerMetrics:
    """A :class:`LayerMetrics` with the given curves: ``probs [L + 1, T]`` of the generated tokens, ``jsd [L, T]``,
    top-1 ids/probs ``[L + 1, T]`` (default: the generated token is top-1 everywhere)."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim == 1:
        probs = probs[:, None]
    jsd = np.asarray(jsd, dtype=np.float64)
    if jsd.ndim == 1:
        jsd = jsd[:, None]
    n_rows, n_steps = probs.shape
    if target_ids is None:
        target_ids = np.arange(n_steps) % vocab_size
    if top1_ids is None:
        top1_ids = np.broadcast_to(target_ids, (n_rows, n_steps)).copy()
    if top1_probs is None:
        top1_probs = np.maximum(probs, 0.05)
    top1_ids = np.asarray(top1_ids).reshape(n_rows, n_steps)
    top1_probs = np.asarray(top1_probs, dtype=np.float64).reshape(n_rows, n_steps)
    logp = torch.tensor(np.log(np.clip(probs, 1e-12, 1.0)), dtype=torch.float32)
    other = (torch.tensor(top1_ids) + 1) % vocab_size
    topk_ids = torch.stack([torch.tensor(top1_ids), other], dim=-1).long()
    topk_logprobs = torch.stack(
        [torch.tensor(np.log(top1_probs), dtype=torch.float32), torch.full((n_rows, n_steps), -9.0)], dim=-1
    )
    jsd_t = torch.tensor(jsd, dtype=torch.float32)
    return LayerMetrics(
        target_ids=torch.tensor(target_ids).long(),
        target_logprobs=logp,
        target_ranks=torch.ones(n_rows, n_steps, dtype=torch.long),
        entropy_bits=torch.ones(n_rows, n_steps),
        topk_ids=topk_ids,
        topk_logprobs=topk_logprobs,
        jsd_bits=jsd_t,
        jsd_paper=jsd_t * 1e-4,
        kl_to_last_bits=torch.zeros(n_rows, n_steps),
        tracked_ids=torch.zeros(0, dtype=torch.long),
        tracked_logprobs=torch.zeros(n_rows, n_steps, 0),
        tracked_ranks=torch.zeros(n_rows, n_steps, 0, dtype=torch.long),
        candidate_ids=topk_ids[0, :, :1].clone(),
        candidate_logprobs=topk_logprobs[:, :, :1].clone(),
        lens_mode="logit",
        vocab_size=vocab_size,
    )


def make_trace(
    metrics: LayerMetrics, tokens: list[str] | None = None, *, item_id: str = "0", eos: bool = False
):
    """A :class:`~evolens.trace.Trace` around synthetic metrics (no model, no hidden states)."""
    from evolens.capture.generate import GenerationSettings
    from evolens.trace import ModelInfo, Trace, metrics_token_ids

    ids = metrics.target_ids
    tokens = tokens if tokens is not None else [f" w{int(i)}" for i in ids.tolist()]
    vocab = {i: f" w{i}" for i in metrics_token_ids(metrics)}
    vocab.update({int(i): t for i, t in zip(ids.tolist(), tokens, strict=True)})
    return Trace(
        text="".join(tokens),
        tokens=tokens,
        generated_ids=ids.clone(),
        metrics=metrics,
        hidden_states=None,
        prompt="describe the image",
        rendered_prompt="USER: describe the image ASSISTANT:",
        prompt_ids=torch.tensor([1, 2, 3]),
        prompt_tokens=["<s>", "a", "b"],
        image_token_positions=torch.zeros(0, dtype=torch.long),
        prompt_hidden_states=None,
        image=None,
        stop_reason="eos" if eos else "max_new_tokens",
        generation=GenerationSettings(max_new_tokens=len(tokens)),
        model=ModelInfo(
            "synthetic", "llava", "llava", metrics.n_layers, 8, metrics.vocab_size, "float32", "0"
        ),
        vocab=vocab,
        item_id=item_id,
    )
