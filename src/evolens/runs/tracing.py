"""Trace a run's items: this rank's fixed batches, each written item by item as it finishes; failures recorded and
skipped (see :mod:`evolens.runs.run` for the guarantees).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from evolens.api import LVLM, TraceOptions
from evolens.data.items import DataItem
from evolens.models.inputs import load_image
from evolens.parallel import DistInfo
from evolens.store.run import RunDirectory

logger = logging.getLogger(__name__)


class Progress(Protocol):
    """What :func:`run` reports progress to (a tqdm bar by default; the CLI passes a rich one)."""

    def start(self, total: int, completed: int, description: str) -> None: ...

    def advance(self, n: int = 1) -> None: ...

    def close(self) -> None: ...


class TqdmProgress:
    """A tqdm bar with items, rate and time remaining."""

    def __init__(self) -> None:
        self._bar: Any = None

    def start(self, total: int, completed: int, description: str) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, initial=completed, desc=description, unit="item", smoothing=0.1)

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class _NoProgress:
    def start(self, total: int, completed: int, description: str) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class RunSummary:
    """What one process of :func:`run` did.

    Attributes:
        run_dir: The run directory.
        rank, world_size: This process among the launch.
        n_items: Items in the run.
        n_assigned: Items in this rank's shard.
        n_skipped: Of those, already finished (or failed) before this call.
        n_traced: Items this call traced and wrote.
        n_failed: Items this call recorded as failed.
        elapsed_s: Seconds this call spent tracing.
        results: The merged results' summary (rank 0, when merged), else ``None``.
    """

    run_dir: Path
    rank: int
    world_size: int
    n_items: int
    n_assigned: int
    n_skipped: int
    n_traced: int
    n_failed: int
    elapsed_s: float
    results: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def items_per_s(self) -> float | None:
        done = self.n_traced + self.n_failed
        return done / self.elapsed_s if self.elapsed_s > 0 and done else None


def trace_shard(
    lvlm: LVLM,
    run_dir: RunDirectory,
    items: list[DataItem],
    info: DistInfo,
    *,
    options: TraceOptions,
    retry_failed: bool,
    progress: bool | Progress,
) -> RunSummary:
    """Trace this rank's batches (batch ``k`` goes to rank ``k mod world_size``) and write their pending items.

    ``options.keep_hidden_states`` decides whether the items' hidden states are stored.
    """
    size = options.batch_size
    batches = [list(range(s, min(s + size, len(items)))) for s in range(0, len(items), size)]
    mine = [b for k, b in enumerate(batches) if k % info.world_size == info.rank]
    status = run_dir.status()

    def settled(i: int) -> bool:
        state = status[items[i].item_id]
        return state == "done" or (state == "failed" and not retry_failed)

    n_assigned = sum(len(b) for b in mine)
    n_skipped = sum(settled(i) for b in mine for i in b)
    reporter: Progress
    if isinstance(progress, bool):
        reporter = TqdmProgress() if progress and info.is_main else _NoProgress()
    else:
        reporter = progress if info.is_main else _NoProgress()
    label = "tracing" if info.world_size == 1 else f"tracing (rank 0 of {info.world_size})"
    reporter.start(n_assigned, n_skipped, label)
    traced = failed = 0
    started = time.perf_counter()
    try:
        for batch in mine:
            pending = [i for i in batch if not settled(i)]
            if not pending:
                continue
            ok, n_fail = _trace_batch(
                lvlm, run_dir, items, batch, set(pending), status, options, retry_failed
            )
            traced += ok
            failed += n_fail
            reporter.advance(len(pending))
    finally:
        reporter.close()
    return RunSummary(
        run_dir=run_dir.root,
        rank=info.rank,
        world_size=info.world_size,
        n_items=len(items),
        n_assigned=n_assigned,
        n_skipped=n_skipped,
        n_traced=traced,
        n_failed=failed,
        elapsed_s=time.perf_counter() - started,
    )


def _trace_batch(
    lvlm: LVLM,
    run_dir: RunDirectory,
    items: list[DataItem],
    batch: list[int],
    pending: set[int],
    status: dict[str, str],
    options: TraceOptions,
    retry_failed: bool,
) -> tuple[int, int]:
    """Trace one fixed batch; write its pending items. Returns (written, failed)."""
    failed = 0
    members: list[int] = []
    for i in batch:
        item = items[i]
        if status[item.item_id] == "failed" and not retry_failed:
            continue  # excluded in the uninterrupted run as well
        if item.image is not None:
            try:
                load_image(item.image)
            except Exception as err:  # missing, corrupt, too large (PIL's decompression-bomb guard)...
                if i in pending:
                    run_dir.write_failure(item, i, "image", err)
                    failed += 1
                continue
        members.append(i)
    if not members:
        return 0, failed
    hidden_states = options.keep_hidden_states
    try:
        traces = lvlm.trace(
            images=[items[i].image for i in members],
            prompts=[items[i].prompt for i in members],
            item_ids=[items[i].item_id for i in members],
            options=replace(options, batch_size=len(members)),
        )
        results: dict[int, Any] = dict(zip(members, traces, strict=True))
    except Exception as err:
        if len(members) == 1:
            if members[0] in pending:
                run_dir.write_failure(items[members[0]], members[0], "trace", err)
                failed += 1
            return 0, failed
        logger.warning(
            "batch of %d items failed (%s: %s); tracing them one by one",
            len(members),
            type(err).__name__,
            err,
        )
        results = {}
        for i in members:
            try:
                results[i] = lvlm.trace(
                    images=[items[i].image],
                    prompts=[items[i].prompt],
                    item_ids=[items[i].item_id],
                    options=replace(options, batch_size=1),
                )[0]
            except Exception as single_err:
                if i in pending:
                    run_dir.write_failure(items[i], i, "trace", single_err)
                    failed += 1
    written = 0
    for i, trace in results.items():
        if i in pending:
            run_dir.write_item(items[i], i, trace, hidden_states=hidden_states)
            written += 1
    return written, failed
