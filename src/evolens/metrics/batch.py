"""The metrics of a generated batch: all items in one pass, after the generation or while it runs.

:func:`compute_batch_metrics` reduces a batch's items together (the ``"whole"`` strategy concatenates their steps;
``"blocked"`` takes them one after another); :class:`MetricsStream` reduces a batch's steps as they are generated,
on a side CUDA stream. Both give, item by item, what :func:`~evolens.metrics.compute.compute_layer_metrics` gives.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch

from evolens.errors import SettingsError
from evolens.lens.base import Lens
from evolens.metrics.compute import (
    LayerMetrics,
    MetricsStrategy,
    checked_request,
    chunk_metrics,
    chunk_steps_for,
    iter_logprob_chunks,
    join_metrics,
    layer_metrics_of,
    metric_rows,
    metric_tensors,
    resolve_strategy,
)

STREAM_ROWS = 128  # (item, step) rows a MetricsStream reduces per addition: large kernels, a short tail


def _item_slice(joined: dict[str, torch.Tensor], steps: slice) -> dict[str, torch.Tensor]:
    """One item's metrics out of a batch's steps, as tensors of their own; its candidates keep their own width."""
    item = metric_rows(joined, steps)
    candidates = item["candidate_ids"]
    width = int((candidates >= 0).sum(1).max()) if candidates.numel() else 0
    item["candidate_ids"] = candidates[:, :width]
    item["candidate_logprobs"] = item["candidate_logprobs"][..., :width]
    return {name: value.clone(memory_format=torch.contiguous_format) for name, value in item.items()}


def compute_batch_metrics(
    states: Sequence[torch.Tensor],
    lens: Lens,
    target_ids: Sequence[torch.Tensor],
    *,
    k: int = 10,
    tracked_ids: torch.Tensor | list[int] | None = None,
    chunk_steps: int | None = None,
    max_chunk_bytes: int | None = None,
    strategy: MetricsStrategy = "auto",
) -> list[LayerMetrics]:
    """:func:`compute_layer_metrics` of several items (a generated batch), in one pass where that pays.

    With the ``"whole"`` strategy the items' steps are concatenated and reduced together (metrics are per
    (layer, step), so nothing mixes), then split; with ``"blocked"`` they run one after another. Either way the
    results equal those of each item alone.

    Args:
        states: One ``[n_layers + 1, n_steps_i, d_model]`` tensor per item (any device).
        lens: The lens; it runs on its head's device, and so does the analysis.
        target_ids: One ``[n_steps_i]`` tensor per item.
        k: How many top tokens to keep per (layer, step).
        tracked_ids: Extra token ids whose log-probability and rank are kept.
        chunk_steps: Steps per chunk; ``None`` derives it from the budget.
        max_chunk_bytes: Memory budget of one chunk (``chunk_bytes_per_step``); ``None``: 512 MiB for
            ``"blocked"``, ``device_chunk_budget`` for ``"whole"`` (``evolens.metrics.compute``).
        strategy: ``"auto"``, ``"blocked"`` or ``"whole"`` (see ``evolens.metrics.compute``).
    """
    if len(states) != len(target_ids):
        raise SettingsError(f"got {len(states)} state tensors but {len(target_ids)} target id tensors")
    if not states:
        return []
    for item_states, item_targets in zip(states, target_ids, strict=True):
        if item_states.dim() != 3:
            raise SettingsError(
                f"states must be [n_layers + 1, n_steps, d_model], got shape {tuple(item_states.shape)}"
            )
        if item_states.shape[1] == 0:
            raise SettingsError("a trace needs at least one generated step")
        if item_targets.shape != (item_states.shape[1],):
            raise SettingsError(
                f"target_ids must have shape [{item_states.shape[1]}], got {tuple(item_targets.shape)}"
            )
    if len({s.shape[0] for s in states}) != 1 or len({s.shape[2] for s in states}) != 1:
        raise SettingsError("every item's states must have the same number of layers and width")
    tracked = checked_request(lens, k, tracked_ids)
    how = resolve_strategy(strategy, lens.device)
    chunk_steps = chunk_steps_for(lens, int(states[0].shape[0]), how, chunk_steps, max_chunk_bytes)
    targets = [t.reshape(-1).long().cpu() for t in target_ids]
    if how == "blocked":
        joined = [
            metric_tensors(s, lens, t, tracked, k, chunk_steps, how)
            for s, t in zip(states, targets, strict=True)
        ]
    else:
        lengths = [int(t.shape[0]) for t in targets]
        all_states = torch.cat([s.to(lens.device) for s in states], dim=1) if len(states) > 1 else states[0]
        together = metric_tensors(all_states, lens, torch.cat(targets), tracked, k, chunk_steps, how)
        ends = torch.tensor(lengths).cumsum(0).tolist()
        joined = [
            _item_slice(together, slice(end - n, end)) if len(states) > 1 else together
            for n, end in zip(lengths, ends, strict=True)
        ]
    return [layer_metrics_of(lens, t, tracked, item) for t, item in zip(targets, joined, strict=True)]


class MetricsStream:
    """The metrics of a generating batch, reduced as its steps arrive (the ``"whole"`` strategy, in pieces).

    Each :meth:`add` takes the states of the steps generated since the last one, for every item, and reduces
    them; on a CUDA device the work goes to a side stream of its own, so that it fills the time the GPU waits for
    an eager decoding loop's kernel launches instead of following the generation, and nothing in :meth:`add`
    waits for the device. :meth:`finish` returns what :func:`compute_batch_metrics` returns for the whole batch
    (each item cut at its own length; the values equal to float rounding, as chunking changes the GEMM shapes).

    Attributes:
        lens: The lens (the analysis runs on its device).
        k: Top tokens kept per (layer, step).
        tracked: ``[n_tracked]`` extra token ids.
        chunk_steps: Rows reduced at once (``None``: from ``max_chunk_bytes`` or the device budget).
        max_chunk_bytes: Budget of one chunk.
    """

    def __init__(
        self,
        lens: Lens,
        *,
        k: int = 10,
        tracked_ids: torch.Tensor | list[int] | None = None,
        chunk_steps: int | None = None,
        max_chunk_bytes: int | None = None,
    ) -> None:
        self.lens = lens
        self.k = k
        self.tracked = checked_request(lens, k, tracked_ids)
        self.chunk_steps = chunk_steps
        self.max_chunk_bytes = max_chunk_bytes
        device = lens.device
        self._stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self._added: list[tuple[int, dict[str, torch.Tensor]]] = []  # (steps, metrics of batch x steps rows)

    def add(self, states: torch.Tensor, target_ids: torch.Tensor) -> None:
        """Reduce new steps: ``states [n_layers + 1, n_new, batch, d_model]`` (any device) and the tokens
        ``target_ids [batch, n_new]`` generated at them."""
        n_boundaries, n_new, batch, d_model = states.shape
        if tuple(target_ids.shape) != (batch, n_new):
            raise SettingsError(
                f"target_ids must have shape [{batch}, {n_new}], got {tuple(target_ids.shape)}"
            )
        if not n_new:
            return
        device = self.lens.device
        if self.chunk_steps is None:
            self.chunk_steps = chunk_steps_for(self.lens, n_boundaries, "whole", None, self.max_chunk_bytes)
        context: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
        if self._stream is not None:
            # the states and tokens come from the generation's stream, which must not reuse their memory before
            # this stream has read them
            self._stream.wait_stream(torch.cuda.current_stream(device))
            for tensor in (states, target_ids):
                if tensor.device.type == "cuda":
                    tensor.record_stream(self._stream)
            context = torch.cuda.stream(self._stream)
        with context:
            # rows in (item, step) order
            rows = states.to(device).permute(0, 2, 1, 3).reshape(n_boundaries, batch * n_new, d_model)
            targets = target_ids.to(device).reshape(-1)
            parts = [
                chunk_metrics(
                    logp, targets[steps], self.tracked, self.k, "whole", candidate_width=n_boundaries
                )
                for steps, logp in iter_logprob_chunks(rows, self.lens, self.chunk_steps)
            ]
            self._added.append((n_new, join_metrics(parts)))

    def finish(self, target_ids: Sequence[torch.Tensor]) -> list[LayerMetrics]:
        """One :class:`LayerMetrics` per item of the batch: ``target_ids[i]`` (``[n_steps_i]``) are its tokens,
        and its first ``n_steps_i`` added steps its metrics (an item that stopped early was added to the end)."""
        if self._stream is not None:
            torch.cuda.current_stream(self.lens.device).wait_stream(self._stream)
        added = [(n, {name: value.cpu() for name, value in part.items()}) for n, part in self._added]
        self._added = []
        n_added = sum(n for n, _ in added)
        results = []
        for row, ids in enumerate(target_ids):
            ids = ids.reshape(-1).long().cpu()
            if not 0 < ids.shape[0] <= n_added:
                raise SettingsError(
                    f"item {row} has {ids.shape[0]} tokens; it needs between 1 and the {n_added} steps added"
                )
            pieces = [metric_rows(part, slice(row * n, (row + 1) * n)) for n, part in added]
            item = _item_slice(join_metrics(pieces), slice(0, ids.shape[0]))
            results.append(layer_metrics_of(self.lens, ids, self.tracked, item))
        return results
