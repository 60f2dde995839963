"""Chunked computation of every per-(layer, step) metric of a trace.

The lens produces ``[n_layers + 1, chunk_steps, vocab]`` log-probabilities for a chunk of generation steps at a
time; every metric is reduced from that chunk, and the chunk is dropped before the next one. The full
``[n_layers + 1, n_steps, vocab]`` tensor never exists.

Two strategies reduce a chunk, with the same functions (``metrics/divergence.py``, ``metrics/tokens.py``) on
blocks of different shapes, and the same results:

* ``"blocked"``, for CPUs: the metrics are reduced a few steps at a time (:func:`metric_block_steps`) and one
  adjacent layer pair at a time, so their temporaries stay in a core's cache. Memory: the chunk's float32 logits
  and log-probabilities, ``2 * (n_layers + 1) * chunk_steps * vocab * 4`` bytes (8 with float64 metrics), plus the probabilities of one
  block of steps and a few ``[block_steps, vocab]`` temporaries; ``chunk_steps`` keeps the first term under
  ``max_chunk_bytes`` (default 512 MiB).
* ``"whole"``, for accelerators: a chunk's reductions run at once, all adjacent layer pairs in one vectorised
  step, and the items of a batch go through in one pass over their concatenated steps
  (:func:`compute_batch_metrics`): a fixed number of kernel launches per chunk instead of dozens per step, where
  an eager GPU is launch-bound. Temporaries are as large as the chunk: ``WHOLE_CHUNK_FLOATS`` float32 arrays of
  ``(n_layers + 1) * chunk_steps * vocab``; the budget is a share of the device's free memory, capped
  (:func:`device_chunk_budget`), unless ``max_chunk_bytes`` is given.

``"auto"`` takes ``"whole"`` when the lens runs on an accelerator and ``"blocked"`` on a CPU.

Every metric is computed in the dtype of the lens's logits (:attr:`~evolens.lens.Lens.logits_dtype`): float32 by
default, float64 when asked (``TraceOptions(metrics_dtype="float64")``); the budgets count its bytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Literal, get_args

import torch

from evolens.capture.hooks import free_device_bytes
from evolens.errors import SettingsError, check_positive_int
from evolens.lens.base import Lens
from evolens.metrics.divergence import entropy_bits, jsd_both, kl_bits
from evolens.metrics.tokens import gather_logprobs, ranks, topk, union_top1

MetricsStrategy = Literal["auto", "blocked", "whole"]
METRICS_STRATEGIES: tuple[str, ...] = get_args(MetricsStrategy)
DEFAULT_MAX_CHUNK_BYTES = 512 * 2**20
DEVICE_MAX_CHUNK_BYTES = 8 * 2**30  # cap of a "whole" chunk on an accelerator
DEVICE_FREE_SHARE = 0.5  # ... and at most this share of its free memory
WHOLE_CHUNK_FLOATS = (
    8  # float32 [layers, steps, vocab] arrays alive at once in a "whole" chunk (logp, probs, JSD's 5)
)
METRIC_BLOCK_BYTES = 2**20
LOGPROB_FLOOR = -1.0e4  # nats; keeps masked (-inf) logits from turning 0 * inf into NaN in the sums


@dataclass
class LayerMetrics:
    """Every per-(layer, step) quantity of one trace, on the CPU.

    Layer index 0 is the embedding state (input of decoder layer 0) and ``n_layers`` the last layer's output.
    Log-probabilities are natural logs; divergences and entropies are in bits unless named ``paper``. Float
    tensors are float32, or float64 when the lens's logits were (:attr:`metrics_dtype`).

    Attributes:
        target_ids: ``[n_steps]`` the generated tokens.
        target_logprobs: ``[n_layers + 1, n_steps]`` log-probability of the generated token.
        target_ranks: ``[n_layers + 1, n_steps]`` its 1-based rank (1 = most probable).
        entropy_bits: ``[n_layers + 1, n_steps]`` entropy of the layer's distribution.
        topk_ids: ``[n_layers + 1, n_steps, k]`` the k most probable tokens, most probable first.
        topk_logprobs: ``[n_layers + 1, n_steps, k]`` their log-probabilities.
        jsd_bits: ``[n_layers, n_steps]`` JS divergence between layer l and l + 1, bits, in [0, 1].
        jsd_paper: ``[n_layers, n_steps]`` the paper code's "JS divergence" (nats / vocabulary size).
        kl_to_last_bits: ``[n_layers + 1, n_steps]`` KL(p_last || p_l) in bits (0 at the last layer).
        tracked_ids: ``[n_tracked]`` extra token ids asked for.
        tracked_logprobs: ``[n_layers + 1, n_steps, n_tracked]``.
        tracked_ranks: ``[n_layers + 1, n_steps, n_tracked]``.
        candidate_ids: ``[n_steps, n_candidates]`` tokens that are top-1 at some layer, padded with -1.
        candidate_logprobs: ``[n_layers + 1, n_steps, n_candidates]`` their log-probabilities (-inf where padded).
        lens_mode: The lens the metrics were computed with.
        vocab_size: Size of the distributions.
        lens_dtype: dtype of the language head's matrix product when the lens ran in its fast mode
            (``"bfloat16"``, README "Benchmarks"), else ``None`` (the head's own dtype: exact).
    """

    target_ids: torch.Tensor
    target_logprobs: torch.Tensor
    target_ranks: torch.Tensor
    entropy_bits: torch.Tensor
    topk_ids: torch.Tensor
    topk_logprobs: torch.Tensor
    jsd_bits: torch.Tensor
    jsd_paper: torch.Tensor
    kl_to_last_bits: torch.Tensor
    tracked_ids: torch.Tensor
    tracked_logprobs: torch.Tensor
    tracked_ranks: torch.Tensor
    candidate_ids: torch.Tensor
    candidate_logprobs: torch.Tensor
    lens_mode: str
    vocab_size: int
    lens_dtype: str | None = None

    @property
    def n_layers(self) -> int:
        return int(self.target_logprobs.shape[0]) - 1

    @property
    def metrics_dtype(self) -> str:
        """``"float32"`` or ``"float64"``: the dtype the metrics were computed and are kept in."""
        return str(dtype_name(self.target_logprobs.dtype))

    @property
    def n_steps(self) -> int:
        return int(self.target_logprobs.shape[1])

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor field by name (for storage)."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }


def metric_block_steps(vocab_size: int, itemsize: int = 4) -> int:
    """Steps per block of the ``"blocked"`` reductions: one ``[steps, vocab]`` temporary (``itemsize`` bytes a
    value) fits in
    ``METRIC_BLOCK_BYTES`` (a core's L2 cache), which makes the elementwise passes ~1.4x faster than on a whole
    chunk (measured in ``bench/lens_speed.py``) and keeps the shared probabilities small."""
    return max(1, METRIC_BLOCK_BYTES // (itemsize * vocab_size))


def resolve_strategy(strategy: str, device: torch.device) -> Literal["blocked", "whole"]:
    """The strategy that runs for ``strategy`` with the lens on ``device`` (``"auto"``: ``"whole"`` on an
    accelerator, ``"blocked"`` on a CPU).

    Raises:
        SettingsError: An unknown strategy.
    """
    if strategy not in METRICS_STRATEGIES:
        raise SettingsError(f"unknown metrics strategy {strategy!r}; use one of {list(METRICS_STRATEGIES)}")
    if strategy == "auto":
        return "blocked" if device.type == "cpu" else "whole"
    return strategy  # type: ignore[return-value]


def chunk_bytes_per_step(
    n_boundaries: int, vocab_size: int, strategy: str = "blocked", itemsize: int = 4
) -> int:
    """Bytes one step of a chunk is budgeted at: its logits and log-probs (``"blocked"``), or every chunk-sized
    temporary of a ``"whole"`` chunk (``WHOLE_CHUNK_FLOATS`` arrays); ``itemsize`` bytes a value (4: float32)."""
    floats = WHOLE_CHUNK_FLOATS if strategy == "whole" else 2
    return floats * n_boundaries * vocab_size * itemsize


def device_chunk_budget(device: torch.device) -> int:
    """A ``"whole"`` chunk's default budget on ``device``: ``DEVICE_FREE_SHARE`` of its free memory, at most
    ``DEVICE_MAX_CHUNK_BYTES``; ``DEFAULT_MAX_CHUNK_BYTES`` where free memory is unknown (CPU, other devices)."""
    free = free_device_bytes(device)
    if free is None:
        return DEFAULT_MAX_CHUNK_BYTES
    return min(DEVICE_MAX_CHUNK_BYTES, int(free * DEVICE_FREE_SHARE))


def auto_chunk_steps(
    n_boundaries: int,
    vocab_size: int,
    max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
    strategy: str = "blocked",
    itemsize: int = 4,
) -> int:
    """Steps per chunk so that :func:`chunk_bytes_per_step` times the steps fits in ``max_chunk_bytes``
    (at least 1)."""
    return max(1, max_chunk_bytes // chunk_bytes_per_step(n_boundaries, vocab_size, strategy, itemsize))


def iter_logprob_chunks(
    states: torch.Tensor, lens: Lens, chunk_steps: int
) -> Iterator[tuple[slice, torch.Tensor]]:
    """Yield ``(steps, logp)`` with ``logp [n_layers + 1, len(steps), vocab]`` log-probabilities in the lens's
    :attr:`~evolens.lens.Lens.logits_dtype`."""
    n_steps = states.shape[1]
    for start in range(0, n_steps, chunk_steps):
        steps = slice(start, min(start + chunk_steps, n_steps))
        logits = lens.logits(states[:, steps])
        logp = torch.log_softmax(logits, dim=-1)
        del logits
        yield steps, logp.clamp_min_(LOGPROB_FLOOR)


def _tracked_metrics(logp: torch.Tensor, tracked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities and ranks of the ``tracked`` ids: ``[n_layers + 1, steps, n_tracked]`` each."""
    n_boundaries, n_steps, _ = logp.shape
    if not tracked.numel():
        return logp.new_zeros(n_boundaries, n_steps, 0), torch.zeros(
            n_boundaries, n_steps, 0, dtype=torch.long, device=logp.device
        )
    idx = tracked.to(logp.device).view(1, 1, -1).expand(n_boundaries, n_steps, -1)
    # one id at a time keeps the rank comparison at [layers, steps, vocab] instead of [..., n_tracked, vocab]
    rank = torch.stack([ranks(logp, idx[..., j : j + 1]).squeeze(-1) for j in range(idx.shape[-1])], -1)
    return gather_logprobs(logp, idx), rank


def _block_metrics(
    logp: torch.Tensor,
    targets: torch.Tensor,
    k: int,
    out: dict[str, torch.Tensor],
    steps: slice,
    all_pairs: bool,
) -> None:
    """Write the metrics of one block of steps (``logp [n_layers + 1, block, vocab]``) into ``out[..., steps]``;
    the adjacent layer pairs' JSDs in one vectorised call (``all_pairs``) or one pair at a time."""
    n_boundaries = logp.shape[0]
    target_idx = targets.to(logp.device).view(1, -1, 1).expand(n_boundaries, -1, 1)
    # every layer's probabilities once, shared by entropy, KL and both JSDs
    probs = logp.exp()
    out["target_logprobs"][:, steps] = gather_logprobs(logp, target_idx).squeeze(-1)
    out["target_ranks"][:, steps] = ranks(logp, target_idx).squeeze(-1)
    out["entropy_bits"][:, steps] = entropy_bits(logp, probs)
    out["kl_to_last_bits"][:, steps] = kl_bits(logp[-1:], logp, probs[-1:])
    out["topk_ids"][:, steps], out["topk_logprobs"][:, steps] = topk(logp, k)
    if all_pairs:
        out["jsd_bits"][:, steps], out["jsd_paper"][:, steps] = jsd_both(
            logp[:-1], logp[1:], probs[:-1], probs[1:]
        )
        return
    for i in range(n_boundaries - 1):  # one adjacent pair at a time: the temporaries stay [block, vocab]
        out["jsd_bits"][i, steps], out["jsd_paper"][i, steps] = jsd_both(
            logp[i], logp[i + 1], probs[i], probs[i + 1]
        )


def chunk_metrics(
    logp: torch.Tensor,
    targets: torch.Tensor,
    tracked: torch.Tensor,
    k: int,
    strategy: str,
    candidate_width: int | None = None,
) -> dict[str, torch.Tensor]:
    """Every metric of one chunk, on ``logp``'s device; with ``candidate_width`` (the number of layers
    always suffices) nothing waits for the device."""
    n_boundaries, n_steps, vocab = logp.shape
    k = min(k, vocab)
    # Outputs are allocated once per chunk and filled block by block: small per-block results that outlived
    # their block would fragment the heap between the blocks' large temporaries (RSS grew with the trace).
    per_layer = (n_boundaries, n_steps)
    out: dict[str, torch.Tensor] = {
        "target_logprobs": logp.new_empty(per_layer),
        "target_ranks": torch.empty(per_layer, dtype=torch.long, device=logp.device),
        "entropy_bits": logp.new_empty(per_layer),
        "kl_to_last_bits": logp.new_empty(per_layer),
        "topk_ids": torch.empty((*per_layer, k), dtype=torch.long, device=logp.device),
        "topk_logprobs": logp.new_empty((*per_layer, k)),
        "jsd_bits": logp.new_empty((n_boundaries - 1, n_steps)),
        "jsd_paper": logp.new_empty((n_boundaries - 1, n_steps)),
    }
    whole = strategy == "whole"
    block = n_steps if whole else metric_block_steps(vocab, logp.element_size())
    for start in range(0, n_steps, block):
        steps = slice(start, min(start + block, n_steps))
        _block_metrics(logp[:, steps], targets[steps], k, out, steps, all_pairs=whole)
    out["tracked_logprobs"], out["tracked_ranks"] = _tracked_metrics(logp, tracked)
    candidates = union_top1(out["topk_ids"][..., 0], width=candidate_width)
    cand_logp = gather_logprobs(logp, candidates.clamp_min(0).unsqueeze(0).expand(n_boundaries, -1, -1))
    out["candidate_logprobs"] = cand_logp.masked_fill((candidates < 0).unsqueeze(0), float("-inf"))
    out["candidate_ids"] = candidates
    return out


def _pad_cat(parts: list[torch.Tensor], dim_steps: int, fill: float | int) -> torch.Tensor:
    width = max(p.shape[-1] for p in parts)
    padded = []
    for p in parts:
        if p.shape[-1] < width:
            pad_shape = (*p.shape[:-1], width - p.shape[-1])
            p = torch.cat([p, torch.full(pad_shape, fill, dtype=p.dtype, device=p.device)], dim=-1)
        padded.append(p)
    return torch.cat(padded, dim=dim_steps)


def metric_tensors(
    states: torch.Tensor,
    lens: Lens,
    targets: torch.Tensor,
    tracked: torch.Tensor,
    k: int,
    chunk_steps: int,
    strategy: str,
) -> dict[str, torch.Tensor]:
    """Every metric of ``states`` on the CPU, chunk by chunk. A ``"blocked"`` chunk's results leave the device
    as it ends; ``"whole"`` results stay there until the last chunk (one copy each)."""
    n_steps = int(states.shape[1])
    if strategy == "whole":  # equal chunks, none tiny: each costs the same launches
        chunk_steps = math.ceil(n_steps / math.ceil(n_steps / chunk_steps))
    parts: list[dict[str, torch.Tensor]] = []
    # the head runs on the whole chunk (a large GEMM is efficient); the reductions as the strategy says
    for steps, logp in iter_logprob_chunks(states, lens, chunk_steps):
        part = chunk_metrics(logp, targets[steps], tracked, k, strategy)
        parts.append(part if strategy == "whole" else {name: value.cpu() for name, value in part.items()})
        del logp
    return {name: value.cpu() for name, value in join_metrics(parts).items()}


def checked_request(lens: Lens, k: int, tracked_ids: torch.Tensor | list[int] | None) -> torch.Tensor:
    """Check ``k`` and the tracked ids; the tracked ids as a 1-D long tensor."""
    check_positive_int("k (top-k)", k)
    tracked = torch.as_tensor(tracked_ids if tracked_ids is not None else [], dtype=torch.long).flatten()
    if tracked.numel() and (int(tracked.min()) < 0 or int(tracked.max()) >= lens.vocab_size):
        raise SettingsError(f"tracked token ids must lie in [0, {lens.vocab_size}), got {tracked.tolist()}")
    return tracked


def chunk_steps_for(
    lens: Lens, n_boundaries: int, strategy: str, chunk_steps: int | None, max_chunk_bytes: int | None
) -> int:
    """``chunk_steps``, or the steps that fit the budget (``max_chunk_bytes`` or the strategy's default)."""
    if chunk_steps is None:
        if max_chunk_bytes is None:
            max_chunk_bytes = (
                DEFAULT_MAX_CHUNK_BYTES if strategy == "blocked" else device_chunk_budget(lens.device)
            )
        check_positive_int("max_chunk_bytes", max_chunk_bytes)
        itemsize = lens.logits_dtype.itemsize
        chunk_steps = auto_chunk_steps(n_boundaries, lens.vocab_size, max_chunk_bytes, strategy, itemsize)
    check_positive_int("chunk_steps", chunk_steps)
    return chunk_steps


def layer_metrics_of(
    lens: Lens, targets: torch.Tensor, tracked: torch.Tensor, item: dict[str, torch.Tensor]
) -> LayerMetrics:
    return LayerMetrics(
        target_ids=targets,
        tracked_ids=tracked,
        lens_mode=lens.mode,
        vocab_size=lens.vocab_size,
        lens_dtype=dtype_name(lens.matmul_dtype),
        **item,
    )


def metric_rows(part: dict[str, torch.Tensor], rows: slice) -> dict[str, torch.Tensor]:
    """The ``rows`` (steps) of a dict of metrics."""
    return {name: value[rows] if name == "candidate_ids" else value[:, rows] for name, value in part.items()}


def join_metrics(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Dicts of metrics over consecutive steps joined into one (candidates padded to the widest)."""
    joined = {
        name: torch.cat([p[name] for p in parts], dim=1)
        for name in parts[0]
        if name not in ("candidate_ids", "candidate_logprobs")
    }
    joined["candidate_ids"] = _pad_cat([p["candidate_ids"] for p in parts], 0, -1)
    joined["candidate_logprobs"] = _pad_cat([p["candidate_logprobs"] for p in parts], 1, -math.inf)
    return joined


def compute_layer_metrics(
    states: torch.Tensor,
    lens: Lens,
    target_ids: torch.Tensor,
    *,
    k: int = 10,
    tracked_ids: torch.Tensor | list[int] | None = None,
    chunk_steps: int | None = None,
    max_chunk_bytes: int | None = None,
    strategy: MetricsStrategy = "auto",
) -> LayerMetrics:
    """Apply ``lens`` to ``states`` chunk by chunk and reduce every metric.

    Args:
        states: ``[n_layers + 1, n_steps, d_model]`` pre-norm residual states.
        lens: The lens (its mode decides norm placement; the analysis runs on its head's device).
        target_ids: ``[n_steps]`` the token generated at each step.
        k: How many top tokens to keep per (layer, step).
        tracked_ids: Extra token ids whose log-probability and rank are kept.
        chunk_steps: Steps per chunk; ``None`` derives it from ``max_chunk_bytes``.
        max_chunk_bytes: Memory budget of one chunk when ``chunk_steps`` is ``None`` (``None``: 512 MiB on a
            CPU, a share of free memory on an accelerator).
        strategy: ``"auto"``, ``"blocked"`` (CPU design) or ``"whole"`` (accelerator design); same results.
    """
    if states.dim() != 3:
        raise SettingsError(
            f"states must be [n_layers + 1, n_steps, d_model], got shape {tuple(states.shape)}"
        )
    if target_ids.shape != (states.shape[1],):
        raise SettingsError(f"target_ids must have shape [{states.shape[1]}], got {tuple(target_ids.shape)}")
    if states.shape[1] == 0:
        raise SettingsError("a trace needs at least one generated step")
    tracked = checked_request(lens, k, tracked_ids)
    how = resolve_strategy(strategy, lens.device)
    steps = chunk_steps_for(lens, int(states.shape[0]), how, chunk_steps, max_chunk_bytes)
    targets = target_ids.reshape(-1).long().cpu()
    return layer_metrics_of(
        lens, targets, tracked, metric_tensors(states, lens, targets, tracked, k, steps, how)
    )


def dtype_name(dtype: torch.dtype | None) -> str | None:
    """``torch.bfloat16`` -> ``"bfloat16"`` (``None`` stays ``None``)."""
    return None if dtype is None else str(dtype).removeprefix("torch.")


def track_tokens(
    states: torch.Tensor,
    lens: Lens,
    ids: torch.Tensor,
    *,
    chunk_steps: int | None = None,
    max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities and 1-based ranks of ``ids`` at every (layer, step): ``[n_layers + 1, n_steps, n]`` each."""
    vocab_size = lens.vocab_size
    ids = torch.as_tensor(ids, dtype=torch.long).flatten()
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise SettingsError(f"token ids must lie in [0, {vocab_size}), got {ids.tolist()}")
    steps_per_chunk = chunk_steps or auto_chunk_steps(
        states.shape[0], vocab_size, max_chunk_bytes, itemsize=lens.logits_dtype.itemsize
    )
    parts = [_tracked_metrics(logp, ids) for _, logp in iter_logprob_chunks(states, lens, steps_per_chunk)]
    return torch.cat([p[0].cpu() for p in parts], dim=1), torch.cat([p[1].cpu() for p in parts], dim=1)
