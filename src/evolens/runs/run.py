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
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from evolens.analysis.params import DetectorParams
from evolens.api import LVLM, LoadOptions, TraceOptions
from evolens.data.items import DataItem, Dataset
from evolens.errors import DatasetError, SettingsError, check_positive_int
from evolens.parallel import DistInfo, barrier, dist_info, process_group, rank_device
from evolens.runs.finalize import finalize_run
from evolens.runs.options import FinalizeOptions
from evolens.runs.tracing import Progress, RunSummary, trace_shard
from evolens.runs.yesno import run_tokens, with_tokens
from evolens.store.run import RunDirectory, dataset_fingerprint

logger = logging.getLogger(__name__)


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


def _load_model(model: str | Path | LVLM, info: DistInfo, options: LoadOptions) -> LVLM:
    if isinstance(model, LVLM):
        return model
    if options.device_map is not None:
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
    return options.open(model, device=rank_device(info, options.device))


def run(
    model: str | Path | LVLM,
    dataset: Dataset | Iterable[DataItem],
    out_dir: str | Path,
    *,
    trace: TraceOptions | None = None,
    load: LoadOptions | None = None,
    finalize: FinalizeOptions | None = None,
    limit: int | None = None,
    hidden_states: bool = False,
    retry_failed: bool = False,
    merge: bool = True,
    progress: bool | Progress = True,
    dist_timeout_s: float = 24 * 3600.0,
) -> RunSummary:
    """Trace every item of ``dataset`` into the run directory ``out_dir`` (see the module docstring).

    Args:
        model: A model directory or hub id (loaded on this rank's device), or a loaded :class:`~evolens.LVLM`.
        dataset: A reader (:class:`~evolens.data.Amber`, :class:`~evolens.data.Pope`, ...) or any iterable of
            :class:`~evolens.data.DataItem`.
        out_dir: The run directory (created, or resumed when it holds a run with the same configuration).
        trace: How items are traced (:class:`~evolens.api.TraceOptions`; its ``batch_size`` fixes the batches and
            is part of the configuration, as are the decoding and lens options).
        load: How the model loads when ``model`` is a path or hub id (:class:`~evolens.runs.options.LoadOptions`;
            ``device="auto"`` under ``torchrun`` means this rank's GPU).
        finalize: How the run is merged when complete (:class:`~evolens.runs.options.FinalizeOptions`: text tools,
            layer detector and its parameters — part of the configuration, ``config.analysis.params`` — statistics
            unit, long table, figures).
        limit: Only the first ``limit`` items.
        hidden_states: Also store every item's ``[L + 1, T, d]`` hidden states (large: about 34 MB per item of 128
            tokens for a 7B model in float16).
        retry_failed: Trace items recorded as failed again.
        merge: Merge the results when the run is complete (rank 0).
        progress: Show a progress bar (rank 0 only), or a :class:`Progress` to report to.
        dist_timeout_s: How long ranks wait for each other at barriers.

    Returns:
        What this process did, with the merged results' summary on rank 0.

    Raises:
        StoreError: ``out_dir`` holds a run with another configuration, or something that is not a run.
        DatasetError: The dataset is malformed (named file and entry).
    """
    trace = replace(trace or TraceOptions(), keep_hidden_states=hidden_states)
    finalize = finalize or FinalizeOptions()
    if merge:
        finalize.check_method()  # refuses an unknown method, or "exact" without the data, before any tracing
    params = finalize.detector_params or DetectorParams()
    finalize = replace(finalize, detector_params=params)
    info = dist_info()
    items = _select(dataset, limit)
    config = _config(dataset, items, limit, trace, hidden_states, params)
    run_dir = RunDirectory(out_dir)
    stored = run_dir.read_manifest()["config"] if run_dir.exists() else None
    if stored is not None:  # cheap refusal before an expensive model load
        if "analysis" not in stored:
            del config["analysis"]  # a run created before detector parameters were recorded
        trace = with_tokens(trace, config, run_tokens(items, stored, None))
        run_dir.check_config(config, only=[k for k in config if k != "model"])
    lvlm = _load_model(model, info, load or LoadOptions())
    if stored is None:  # a new run tracks the yes/no tokens of its yes/no questions
        trace = with_tokens(trace, config, run_tokens(items, None, lvlm.tokenizer))
    model_info = lvlm.model_info()
    if finalize.auto:
        params.check_depth(model_info.n_layers)  # before hours of tracing, not at the merge
    config["model"] = {
        k: getattr(model_info, k) for k in ("weights_hash", "family", "model_type", "n_layers", "dtype")
    }
    cuda = lvlm.loaded.device.type == "cuda"
    with process_group(info, cuda=cuda, timeout_s=dist_timeout_s):
        _open_run_dir(run_dir, config, dataset, items, info, model_info.source)
        summary = trace_shard(
            lvlm, run_dir, items, info, options=trace, retry_failed=retry_failed, progress=progress
        )
        barrier()
        if info.is_main and merge:
            summary = replace(summary, results=finalize_run(run_dir.root, finalize))
    return summary


def _config(
    dataset: Dataset | Iterable[DataItem],
    items: list[DataItem],
    limit: int | None,
    trace: TraceOptions,
    hidden_states: bool,
    params: DetectorParams,
) -> dict[str, Any]:
    """The run's configuration (``run.json → config``) without the model, which is known once it is loaded."""
    return {
        "dataset": {
            "name": getattr(dataset, "name", "items"),
            "n_items": len(items),
            "fingerprint": dataset_fingerprint(items),
            "limit": limit,
        },
        "trace": trace.run_config(),
        "save": {"hidden_states": hidden_states, "batch_size": trace.batch_size},
        "analysis": {"params": params.to_dict()},
    }


def _open_run_dir(
    run_dir: RunDirectory,
    config: dict[str, Any],
    dataset: Dataset | Iterable[DataItem],
    items: list[DataItem],
    info: DistInfo,
    model_source: str,
) -> None:
    """Rank 0 creates the run directory or checks the one there; every rank then checks its configuration."""
    setup_error: BaseException | None = None
    if info.is_main:
        try:
            if run_dir.exists():
                run_dir.check_config(config)
                run_dir.clean_temporaries()
            else:
                source = dataset.describe() if isinstance(dataset, Dataset) else {"name": "items"}
                source["model_source"] = model_source
                resources = dataset.resources() if isinstance(dataset, Dataset) else {}
                run_dir.create(config, items, resources, source=source)
        except BaseException as err:  # re-raised after the barrier, so other ranks do not wait forever
            setup_error = err
    barrier()
    if setup_error is not None:
        raise setup_error
    if not info.is_main:
        run_dir.check_config(config)
