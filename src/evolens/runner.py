"""``evolens.run``: trace a whole dataset into a run directory — resumable, sharded over ``torchrun`` ranks.

Guarantees:

* **Resumable.** An item is finished when its directory exists (written atomically); kill the run at any moment
  (``kill -9`` included), run the same call again, and it traces only what is missing.
* **Identical to an uninterrupted run.** Items are traced in fixed batches (``batch_size`` consecutive items of
  the dataset); a batch that was cut short is traced again whole and only its missing items are written, so every
  item is computed in the same batch as in an uninterrupted run. The shards of ``torchrun`` ranks are whole batches
  too (batch ``k`` goes to rank ``k mod world_size``), so a sharded run equals a single-process run.
* **Failures do not stop it.** An item whose image is missing or corrupt, or whose tracing raises, is recorded with
  its error in ``failures/`` and the run goes on; failed items are not retried on resume unless
  ``retry_failed=True``.
* **One configuration per directory.** Re-running into a directory created with other settings, another dataset
  or another model is refused, with the differences listed.

When every rank is done, rank 0 merges the results (:func:`finalize_run`): evaluation, per-token labels, the
analysis of every item (``items/<id>/analysis.json``), dataset statistics and figures.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from evolens.analysis.params import DetectorParams
from evolens.api import LVLM
from evolens.data.items import DataItem, Dataset
from evolens.data.text import MethodName, TextTools
from evolens.errors import DatasetError, SettingsError, check_positive_int
from evolens.hallucination.stats import Unit
from evolens.lens.logit_lens import lens_dtype_of
from evolens.metrics.compute import dtype_name
from evolens.models.inputs import load_image
from evolens.parallel import DistInfo, barrier, dist_info, process_group, rank_device
from evolens.store import results as merge
from evolens.store.results import AUTO, DetectorChoice, coerce_params
from evolens.store.run import RunDirectory, dataset_fingerprint

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


#: Trace options that change results and therefore belong to a run's configuration.
TRACE_DEFAULTS: dict[str, Any] = {
    "max_new_tokens": 128,
    "do_sample": False,
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": 0,
    "repetition_penalty": 1.0,
    "seed": 0,
    "lens": "logit",
    "lens_dtype": None,
    "topk": 10,
    "track": None,
    "raw_prompt": False,
    "system_prompt": None,
}


def _select(dataset: Dataset | Iterable[DataItem], limit: int | None) -> list[DataItem]:
    if limit is not None:
        check_positive_int("limit", limit)
    items: list[DataItem] = []
    for item in dataset:
        if limit is not None and len(items) >= limit:
            break
        items.append(item)
    if not items:
        raise DatasetError(f"the dataset {dataset!r} has no items")
    ids = [i.item_id for i in items]
    if len(set(ids)) != len(ids):
        raise DatasetError("the dataset yields duplicate item ids")
    return items


def _load_model(
    model: str | Path | LVLM, info: DistInfo, device: str | None, load_options: dict[str, Any]
) -> LVLM:
    if isinstance(model, LVLM):
        return model
    import evolens

    if load_options.get("device_map") is not None:
        if importlib.util.find_spec("accelerate") is None:
            raise SettingsError(
                "device_map needs the accelerate package: pip install accelerate (or 'evolens[multi-gpu]')"
            )
        if info.local_world_size > 1:
            raise SettingsError(
                f"device_map spreads one model over this node's GPUs, but {info.local_world_size} processes run on "
                "this node; launch one process per node (torchrun --nproc-per-node 1 --nnodes N) to combine "
                "device_map with data parallelism"
            )
    return evolens.load(model, device=rank_device(info, device), **load_options)


def run(
    model: str | Path | LVLM,
    dataset: Dataset | Iterable[DataItem],
    out_dir: str | Path,
    *,
    limit: int | None = None,
    max_new_tokens: int = 128,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    repetition_penalty: float = 1.0,
    seed: int = 0,
    lens: str = "logit",
    lens_dtype: str | None = None,
    topk: int = 10,
    track: Sequence[str | int] | None = None,
    raw_prompt: bool = False,
    system_prompt: str | None = None,
    hidden_states: bool = False,
    batch_size: int = 8,
    retry_failed: bool = False,
    device: str | None = "auto",
    dtype: str | None = "auto",
    device_map: str | dict[str, Any] | None = None,
    attn_implementation: str | None = None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    merge: bool = True,
    method: MethodName = "auto",
    layer_detector: DetectorChoice = AUTO,
    detector_params: DetectorParams | dict[str, Any] | None = None,
    unit: Unit = "first_token",
    merge_metrics: bool = True,
    figures: bool = True,
    progress: bool | Progress = True,
    dist_timeout_s: float = 24 * 3600.0,
) -> RunSummary:
    """Trace every item of ``dataset`` into the run directory ``out_dir`` (see the module docstring).

    Args:
        model: A model directory or hub id (loaded on this rank's device), or a loaded :class:`~evolens.LVLM`.
        dataset: A reader (:class:`~evolens.data.AMBER`, :class:`~evolens.data.POPE`, ...) or any iterable of
            :class:`~evolens.data.DataItem`.
        out_dir: The run directory (created, or resumed when it holds a run with the same configuration).
        limit: Only the first ``limit`` items.
        max_new_tokens, do_sample, temperature, top_p, top_k, repetition_penalty, seed, lens, lens_dtype, topk,
            track, raw_prompt, system_prompt: Trace options (see :class:`evolens.api.TraceOptions`).
        hidden_states: Also store every item's ``[L + 1, T, d]`` hidden states (large: about 34 MB per item of 128
            tokens for a 7B model in float16).
        batch_size: Items per generate call; part of the configuration (it fixes the batches).
        retry_failed: Trace items recorded as failed again.
        device, dtype, device_map, attn_implementation, allow_pickle, trust_remote_code: Load options
            (``device="auto"`` under ``torchrun`` means this rank's GPU; ``device_map="auto"`` spreads one model
            over a node's GPUs — one process per node).
        merge: Merge the results when the run is complete (rank 0).
        method: Text tools for the benchmark evaluation: ``"auto"``, ``"exact"`` or ``"fallback"``.
        layer_detector: Per-token critical/mutation layers for the dataset statistics: ``"auto"`` (default) runs
            :func:`evolens.analysis.analyze_trace` on every item and writes its ``analysis.json`` (see
            :func:`finalize_run`); a function ``Trace -> TokenLayers``; or ``None`` (no analysis, no statistics).
        detector_params: Parameters of the ``"auto"`` detector (a :class:`~evolens.analysis.DetectorParams` or its
            dict); part of the run's configuration (``config.analysis.params``). Default: ``DetectorParams()``.
        unit: Unit of the hallucinated-vs-grounded statistics.
        merge_metrics: Write the merged long table too.
        figures: Draw the dataset figures into ``results/figures`` (PNG and SVG).
        progress: Show a progress bar (rank 0 only), or a :class:`Progress` to report to.
        dist_timeout_s: How long ranks wait for each other at barriers.

    Returns:
        What this process did, with the merged results' summary on rank 0.

    Raises:
        StoreError: ``out_dir`` holds a run with another configuration, or something that is not a run.
        DatasetError: The dataset is malformed (named file and entry).
    """
    check_positive_int("batch_size", batch_size)
    if unit not in ("first_token", "all_tokens"):
        raise SettingsError(f"unit must be 'first_token' or 'all_tokens', got {unit!r}")
    if merge:
        TextTools(method)  # refuses an unknown method, or "exact" without the data, before any tracing
    params = coerce_params(detector_params) or DetectorParams()
    info = dist_info()
    items = _select(dataset, limit)
    trace_options = {
        "max_new_tokens": max_new_tokens,
        "do_sample": do_sample,
        "temperature": temperature,
        "top_p": top_p,
        "top_k": top_k,
        "repetition_penalty": repetition_penalty,
        "seed": seed,
        "lens": lens,
        "lens_dtype": dtype_name(lens_dtype_of(lens_dtype)),
        "topk": topk,
        "track": list(track) if track is not None else None,
        "raw_prompt": raw_prompt,
        "system_prompt": system_prompt,
    }
    config: dict[str, Any] = {
        "dataset": {
            "name": getattr(dataset, "name", "items"),
            "n_items": len(items),
            "fingerprint": dataset_fingerprint(items),
            "limit": limit,
        },
        "trace": trace_options,
        "save": {"hidden_states": hidden_states, "batch_size": batch_size},
        "analysis": {"params": params.to_dict()},
    }
    run_dir = RunDirectory(out_dir)
    if run_dir.exists():  # cheap refusal before an expensive model load
        if "analysis" not in run_dir.read_manifest()["config"]:
            del config[
                "analysis"
            ]  # a run created before detector parameters were recorded: nothing to compare
        run_dir.check_config(config, only=[k for k in config if k != "model"])
    load_options = {
        "dtype": dtype,
        "device_map": device_map,
        "attn_implementation": attn_implementation,
        "allow_pickle": allow_pickle,
        "trust_remote_code": trust_remote_code,
    }
    lvlm = _load_model(model, info, device, load_options)
    model_info = lvlm.model_info()
    if layer_detector == AUTO:
        params.check_depth(model_info.n_layers)  # before hours of tracing, not at the merge
    config["model"] = {
        "weights_hash": model_info.weights_hash,
        "family": model_info.family,
        "model_type": model_info.model_type,
        "n_layers": model_info.n_layers,
        "dtype": model_info.dtype,
    }
    cuda = lvlm.loaded.device.type == "cuda"
    with process_group(info, cuda=cuda, timeout_s=dist_timeout_s):
        setup_error: BaseException | None = None
        if info.is_main:
            try:
                if run_dir.exists():
                    run_dir.check_config(config)
                    run_dir.clean_temporaries()
                else:
                    source = dataset.describe() if isinstance(dataset, Dataset) else {"name": "items"}
                    source["model_source"] = model_info.source
                    resources = dataset.resources() if isinstance(dataset, Dataset) else {}
                    run_dir.create(config, items, resources, source=source)
            except BaseException as err:  # re-raised after the barrier, so other ranks do not wait forever
                setup_error = err
        barrier()
        if setup_error is not None:
            raise setup_error
        if not info.is_main:
            run_dir.check_config(config)
        summary = _trace_shard(
            lvlm,
            run_dir,
            items,
            info,
            trace_options=trace_options,
            hidden_states=hidden_states,
            batch_size=batch_size,
            retry_failed=retry_failed,
            progress=progress,
        )
        barrier()
        if info.is_main and merge:
            results = finalize_run(
                run_dir.root,
                method=method,
                layer_detector=layer_detector,
                detector_params=params,
                unit=unit,
                merge_metrics=merge_metrics,
                figures=figures,
            )
            summary = RunSummary(**{**summary.__dict__, "results": results})
    return summary


def finalize_run(
    run_dir: str | Path,
    *,
    method: MethodName = "auto",
    layer_detector: DetectorChoice = AUTO,
    detector_params: DetectorParams | dict[str, Any] | None = None,
    unit: Unit = "first_token",
    n_bootstrap: int = 1000,
    merge_metrics: bool = True,
    figures: bool = True,
) -> dict[str, Any]:
    """Merge a run whose items are all finished or failed into ``results/``, reading only stored traces.

    Evaluates every response with the benchmark's rules, labels the tokens, analyses every item (the default
    ``layer_detector="auto"``: :func:`evolens.analysis.analyze_trace` with the run's detector parameters, written
    to ``items/<id>/analysis.json``; answers too short for a layer baseline of their own get the run's, see
    :mod:`evolens.store.results`), writes the layer statistics, the analyses' dataset summary and, with
    ``figures``, the dataset figures (``results/figures``, PNG and SVG). Deterministic: merging again gives the
    same files. Arguments as :func:`evolens.store.results.finalize_run`.

    Returns:
        The summary written to ``results/summary.json``.
    """
    writer = None
    if figures:
        from evolens.report.figures import write_summary_figures

        writer = write_summary_figures
    return merge.finalize_run(
        run_dir,
        method=method,
        layer_detector=layer_detector,
        detector_params=detector_params,
        unit=unit,
        n_bootstrap=n_bootstrap,
        merge_metrics=merge_metrics,
        figure_writer=writer,
    )


def _trace_shard(
    lvlm: LVLM,
    run_dir: RunDirectory,
    items: list[DataItem],
    info: DistInfo,
    *,
    trace_options: dict[str, Any],
    hidden_states: bool,
    batch_size: int,
    retry_failed: bool,
    progress: bool | Progress,
) -> RunSummary:
    batches = [list(range(s, min(s + batch_size, len(items)))) for s in range(0, len(items), batch_size)]
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
                lvlm, run_dir, items, batch, set(pending), status, trace_options, hidden_states, retry_failed
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
    trace_options: dict[str, Any],
    hidden_states: bool,
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
    options = {**trace_options, "keep_hidden_states": hidden_states}
    try:
        traces = lvlm.trace(
            images=[items[i].image for i in members],
            prompts=[items[i].prompt for i in members],
            item_ids=[items[i].item_id for i in members],
            batch_size=len(members),
            **options,
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
                    batch_size=1,
                    **options,
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
