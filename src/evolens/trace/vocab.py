"""Display strings of the token ids a trace mentions, decoded once (so figures need no tokenizer)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evolens.metrics.compute import LayerMetrics


def metrics_token_ids(metrics: LayerMetrics) -> set[int]:
    """Every token id a :class:`LayerMetrics` mentions (generated, top-k, tracked, candidates)."""
    ids: set[int] = set(metrics.target_ids.tolist())
    ids.update(metrics.topk_ids.unique().tolist())
    ids.update(metrics.tracked_ids.tolist())
    ids.update(i for i in metrics.candidate_ids.unique().tolist() if i >= 0)
    return ids


def vocab_strings(
    tokenizer: Any, ids: set[int] | Sequence[int], cache: dict[int, str] | None = None
) -> dict[int, str]:
    """Id -> display string (the token decoded alone, special tokens kept).

    ``cache``: strings of this tokenizer decoded before (read, and updated with the new ones): a trace of a random
    or uncertain model mentions thousands of ids, and a dataset's traces mostly the same ones.
    """
    wanted = sorted({int(i) for i in ids})
    known = cache if cache is not None else {}
    missing = [i for i in wanted if i not in known]
    if missing:
        decoded = tokenizer.batch_decode([[i] for i in missing], skip_special_tokens=False)
        known.update(zip(missing, decoded, strict=True))
    return {i: known[i] for i in wanted}
