"""Metrics: token probability, rank, entropy, top-k, JS/KL divergences — each implemented exactly once."""

from evolens.metrics.batch import STREAM_ROWS, MetricsStream, compute_batch_metrics
from evolens.metrics.compute import (
    METRICS_STRATEGIES,
    LayerMetrics,
    MetricsStrategy,
    auto_chunk_steps,
    compute_layer_metrics,
    iter_logprob_chunks,
    metric_block_steps,
    track_tokens,
)
from evolens.metrics.divergence import entropy_bits, jsd_bits, jsd_both, jsd_paper, kl_bits
from evolens.metrics.tokens import first_stable_top1_layer, gather_logprobs, ranks, topk, union_top1

__all__ = [
    "METRICS_STRATEGIES",
    "STREAM_ROWS",
    "LayerMetrics",
    "MetricsStrategy",
    "MetricsStream",
    "auto_chunk_steps",
    "compute_batch_metrics",
    "compute_layer_metrics",
    "entropy_bits",
    "first_stable_top1_layer",
    "gather_logprobs",
    "iter_logprob_chunks",
    "jsd_bits",
    "jsd_both",
    "jsd_paper",
    "kl_bits",
    "metric_block_steps",
    "ranks",
    "topk",
    "track_tokens",
    "union_top1",
]
