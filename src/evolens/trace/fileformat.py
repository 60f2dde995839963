"""The trace directory format: write a trace's fields, read them back.

This module does not know the :class:`~evolens.trace.Trace` class: it writes a trace's fields
(:class:`~evolens.trace.record.TraceRecord`) and returns the fields it reads (:func:`read_trace_fields`);
``Trace.load`` builds the object from them.

Layout (schema 1)::

    manifest.json        schema, versions, model (id, weights hash), prompt as rendered, generation settings,
                         lens, metrics dtype, tokens, text, image info, the id -> string vocabulary the
                         metrics mention
    metrics.parquet      the long table: one row per (step, layer), see :func:`metrics_table`; float columns in
                         the metrics dtype (float32, or float64 for a trace traced with float64 metrics)
    tensors.safetensors  ids, positions, tracked/candidate arrays, and (optionally) the hidden states

Every file is written into a temporary directory that replaces the target in one rename.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from evolens import envelope
from evolens._version import software_versions
from evolens.capture.generate import GenerationSettings
from evolens.errors import StoreError
from evolens.files import atomic_directory
from evolens.metrics.compute import LayerMetrics
from evolens.models.inputs import ImageInfo
from evolens.trace.record import ModelInfo, TraceRecord

SCHEMA_VERSION = 1
KIND = "evolens.trace"
MANIFEST = "manifest.json"
METRICS = "metrics.parquet"
TENSORS = "tensors.safetensors"

_TENSOR_FIELDS = ("tracked_ids", "tracked_logprobs", "tracked_ranks", "candidate_ids", "candidate_logprobs")
_FLOATS = {"float32": (torch.float32, pa.float32()), "float64": (torch.float64, pa.float64())}


def metrics_table(trace: TraceRecord) -> pa.Table:
    """The long table of a trace: one row per (step, layer), rows ordered by step then layer.

    Columns: ``item``, ``step``, ``layer`` (0 = embeddings), ``token_id`` and ``token`` (the token generated at
    that step), ``prob`` and ``logprob`` (of that token at that layer, natural log), ``rank`` (1 = top),
    ``entropy_bits``, ``jsd_next_bits`` and ``jsd_next_paper`` (between this layer and the next; null at the
    last layer), ``kl_to_last_bits``, ``topk_ids``, ``topk_probs``, ``topk_logprobs`` and ``topk_tokens`` (lists, most
    probable first). Float columns are float32, or float64 when the metrics are (``metrics.metrics_dtype``).
    """
    m = trace.metrics
    dtype, pa_float = _FLOATS.get(m.metrics_dtype, _FLOATS["float32"])
    n_rows, n_steps = m.n_layers + 1, m.n_steps
    step = torch.arange(n_steps).repeat_interleave(n_rows)
    layer = torch.arange(n_rows).repeat(n_steps)

    def flat(t: torch.Tensor) -> torch.Tensor:  # [layers, steps, ...] -> [steps * layers, ...]
        return t.transpose(0, 1).reshape(n_steps * n_rows, *t.shape[2:])

    def floats(t: torch.Tensor) -> pa.Array:
        return pa.array(flat(t).to(dtype).numpy(), type=pa_float)

    def next_layer(t: torch.Tensor) -> pa.Array:
        padded = torch.cat([t, torch.full((1, n_steps), math.nan, dtype=t.dtype)], dim=0)
        values = flat(padded).to(dtype).numpy()
        return pa.array(values, type=pa_float, mask=(layer == m.n_layers).numpy())

    k = m.topk_ids.shape[-1]
    topk_ids = flat(m.topk_ids).int().numpy()
    topk_logprobs = flat(m.topk_logprobs).to(dtype).numpy()
    offsets = pa.array(range(0, n_steps * n_rows * k + 1, k), type=pa.int32())
    token_ids = m.target_ids.repeat_interleave(n_rows)
    vocab = trace.vocab
    topk_tokens = [vocab.get(int(i), "") for i in topk_ids.reshape(-1).tolist()]
    return pa.table(
        {
            "item": pa.array([trace.item_id] * (n_steps * n_rows), type=pa.string()),
            "step": pa.array(step.int().numpy(), type=pa.int32()),
            "layer": pa.array(layer.short().numpy(), type=pa.int16()),
            "token_id": pa.array(token_ids.int().numpy(), type=pa.int32()),
            "token": pa.array([trace.tokens[s] for s in step.tolist()], type=pa.string()),
            "prob": floats(m.target_logprobs.exp()),
            "logprob": floats(m.target_logprobs),
            "rank": pa.array(flat(m.target_ranks).int().numpy(), type=pa.int32()),
            "entropy_bits": floats(m.entropy_bits),
            "jsd_next_bits": next_layer(m.jsd_bits),
            "jsd_next_paper": next_layer(m.jsd_paper),
            "kl_to_last_bits": floats(m.kl_to_last_bits),
            "topk_ids": pa.ListArray.from_arrays(offsets, pa.array(topk_ids.reshape(-1), type=pa.int32())),
            "topk_probs": pa.ListArray.from_arrays(
                offsets, pa.array(np.exp(topk_logprobs.reshape(-1)), type=pa_float)
            ),
            "topk_logprobs": pa.ListArray.from_arrays(
                offsets, pa.array(topk_logprobs.reshape(-1), type=pa_float)
            ),
            "topk_tokens": pa.ListArray.from_arrays(offsets, pa.array(topk_tokens, type=pa.string())),
        }
    )


def _manifest(trace: TraceRecord, *, hidden_states: bool) -> dict[str, Any]:
    m = trace.metrics
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "software": software_versions(),
        "model": trace.model.to_dict(),
        "item_id": trace.item_id,
        "prompt": trace.prompt,
        "rendered_prompt": trace.rendered_prompt,
        "prompt_tokens": trace.prompt_tokens,
        "image": trace.image.to_dict() if trace.image else None,
        "generation": trace.generation.to_dict(),
        "seed": trace.generation.seed,
        "lens": m.lens_mode,
        "lens_dtype": m.lens_dtype,
        "metrics_dtype": m.metrics_dtype,
        "metrics": {"topk": int(m.topk_ids.shape[-1]), "vocab_size": m.vocab_size, "jsd_units": "bits"},
        "text": trace.text,
        "tokens": trace.tokens,
        "stop_reason": trace.stop_reason,
        "n_layers": m.n_layers,
        "n_steps": m.n_steps,
        "hidden_states_saved": bool(hidden_states and trace.hidden_states is not None),
        "prompt_hidden_states_saved": bool(hidden_states and trace.prompt_hidden_states is not None),
        "vocab": {str(k): v for k, v in sorted(trace.vocab.items())},
        **({"decoding": trace.decoding} if trace.decoding is not None else {}),
    }


def save_trace(
    trace: TraceRecord, directory: str | Path, *, hidden_states: bool = True, overwrite: bool = False
) -> Path:
    """Write ``trace`` to ``directory`` (see the module docstring); returns the directory."""
    target = Path(directory)
    tensors: dict[str, torch.Tensor] = {
        "generated_ids": trace.generated_ids,
        "prompt_ids": trace.prompt_ids,
        "image_token_positions": trace.image_token_positions,
    }
    tensors.update({name: getattr(trace.metrics, name) for name in _TENSOR_FIELDS})
    if hidden_states and trace.hidden_states is not None:
        tensors["hidden_states"] = trace.hidden_states
    if hidden_states and trace.prompt_hidden_states is not None:
        tensors["prompt_hidden_states"] = trace.prompt_hidden_states
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_directory(target, overwrite=overwrite) as tmp:
        pq.write_table(metrics_table(trace), tmp / METRICS, compression="zstd")
        save_file(tensors, str(tmp / TENSORS), metadata={"schema_version": str(SCHEMA_VERSION)})
        manifest = _manifest(trace, hidden_states=hidden_states)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
    return target


def _list_column(table: pa.Table, name: str) -> torch.Tensor:
    return torch.from_numpy(np.array(table.column(name).combine_chunks().flatten().to_numpy()))


def _grid(column: Any, n_rows: int, n_steps: int, dtype: torch.dtype) -> torch.Tensor:
    values = torch.from_numpy(np.array(column.to_numpy()))
    return values.reshape(n_steps, n_rows, *values.shape[1:]).transpose(0, 1).to(dtype).contiguous()


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of a trace directory, checked for kind and schema version."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise StoreError(f"{directory} is not an evolens trace directory: no {MANIFEST}")
    return envelope.read_manifest(path, kind=KIND, schema_version=SCHEMA_VERSION, what="trace")


def read_trace_fields(directory: str | Path) -> dict[str, Any]:
    """The fields of a trace written by :func:`save_trace`, by name (``Trace(**fields)`` builds the trace).

    Raises:
        StoreError: Not a trace directory, another schema version, or a missing, corrupt or truncated file.
    """
    root = Path(directory)
    manifest = read_manifest(root)
    try:
        table = pq.read_table(root / METRICS)
    except (OSError, pa.ArrowException) as err:
        raise StoreError(f"cannot read {root / METRICS}: {err}") from None
    try:
        tensors = load_file(str(root / TENSORS))
    except (OSError, SafetensorError) as err:
        raise StoreError(f"cannot read {root / TENSORS} (corrupt or truncated?): {err}") from None
    n_rows, n_steps = manifest["n_layers"] + 1, manifest["n_steps"]
    if table.num_rows != n_rows * n_steps:
        raise StoreError(f"{root / METRICS} has {table.num_rows} rows, expected {n_rows * n_steps}")
    table = table.sort_by([("step", "ascending"), ("layer", "ascending")])
    k = manifest["metrics"]["topk"]
    # absent from traces saved before the float64 option existed: they were computed in float32
    dtype = _FLOATS[manifest.get("metrics_dtype") or "float32"][0]
    topk_ids = _list_column(table, "topk_ids").reshape(n_steps, n_rows, k)
    topk_lp = _list_column(table, "topk_logprobs").reshape(n_steps, n_rows, k)
    jsd_bits = _grid(table.column("jsd_next_bits").fill_null(0.0), n_rows, n_steps, dtype)[:-1]
    jsd_paper = _grid(table.column("jsd_next_paper").fill_null(0.0), n_rows, n_steps, dtype)[:-1]
    metrics = LayerMetrics(
        target_ids=tensors["generated_ids"].long(),
        target_logprobs=_grid(table.column("logprob"), n_rows, n_steps, dtype),
        target_ranks=_grid(table.column("rank"), n_rows, n_steps, torch.long),
        entropy_bits=_grid(table.column("entropy_bits"), n_rows, n_steps, dtype),
        topk_ids=topk_ids.transpose(0, 1).long().contiguous(),
        topk_logprobs=topk_lp.transpose(0, 1).to(dtype).contiguous(),
        jsd_bits=jsd_bits,
        jsd_paper=jsd_paper,
        kl_to_last_bits=_grid(table.column("kl_to_last_bits"), n_rows, n_steps, dtype),
        tracked_ids=tensors["tracked_ids"],
        tracked_logprobs=tensors["tracked_logprobs"],
        tracked_ranks=tensors["tracked_ranks"],
        candidate_ids=tensors["candidate_ids"],
        candidate_logprobs=tensors["candidate_logprobs"],
        lens_mode=manifest["lens"],
        vocab_size=manifest["metrics"]["vocab_size"],
        lens_dtype=manifest.get("lens_dtype"),  # absent from traces saved before the fast mode existed
    )
    return dict(
        text=manifest["text"],
        tokens=list(manifest["tokens"]),
        generated_ids=tensors["generated_ids"].long(),
        metrics=metrics,
        hidden_states=tensors.get("hidden_states"),
        prompt=manifest["prompt"],
        rendered_prompt=manifest["rendered_prompt"],
        prompt_ids=tensors["prompt_ids"].long(),
        prompt_tokens=list(manifest["prompt_tokens"]),
        image_token_positions=tensors["image_token_positions"].long(),
        prompt_hidden_states=tensors.get("prompt_hidden_states"),
        image=ImageInfo.from_dict(manifest["image"]) if manifest["image"] else None,
        stop_reason=manifest["stop_reason"],
        generation=GenerationSettings.from_dict(manifest["generation"]),
        model=ModelInfo.from_dict(manifest["model"]),
        vocab={int(k): v for k, v in manifest["vocab"].items()},
        item_id=manifest["item_id"],
        decoding=manifest.get(
            "decoding"
        ),  # absent from plain-decoding traces and from traces before strategies
    )
