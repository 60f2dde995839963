"""Saving and loading traces: exact round trip, the long table, atomic writes, manifests."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

import evolens
from evolens.errors import StoreError
from evolens.models.loading import hash_weight_files
from evolens.store import SCHEMA_VERSION, read_manifest
from evolens.trace import fileformat


@pytest.fixture(scope="module")
def trace(tiny_llava):
    from tests.conftest import make_image

    return tiny_llava.trace(make_image(2), "describe this image", max_new_tokens=5, track=["red", "circle"])


def test_round_trip_is_exact(trace, tmp_path) -> None:
    path = trace.save(tmp_path / "t")
    loaded = evolens.Trace.load(path)
    for name, value in trace.metrics.tensors().items():
        assert torch.equal(value, getattr(loaded.metrics, name)), name
    assert loaded.metrics.lens_mode == trace.metrics.lens_mode
    assert loaded.metrics.vocab_size == trace.metrics.vocab_size
    assert torch.equal(loaded.hidden_states, trace.hidden_states)
    for field in (
        "text",
        "tokens",
        "prompt",
        "rendered_prompt",
        "prompt_tokens",
        "stop_reason",
        "generation",
        "model",
        "vocab",
        "image",
        "item_id",
    ):
        assert getattr(loaded, field) == getattr(trace, field), field
    for field in ("generated_ids", "prompt_ids", "image_token_positions"):
        assert torch.equal(getattr(loaded, field), getattr(trace, field)), field
    assert not any(isinstance(value, torch.nn.Module) for value in vars(loaded).values())  # plain data


def test_hidden_states_can_be_left_out(trace, tmp_path) -> None:
    loaded = evolens.Trace.load(trace.save(tmp_path / "t", hidden_states=False))
    assert loaded.hidden_states is None
    assert torch.equal(loaded.jsd(), trace.jsd())


def test_long_table_is_readable_by_pandas(trace, tmp_path) -> None:
    path = trace.save(tmp_path / "t")
    frame = pd.read_parquet(path / "metrics.parquet")
    n_rows = (trace.n_layers + 1) * trace.n_steps
    assert len(frame) == n_rows
    for column in (
        "item",
        "step",
        "layer",
        "token_id",
        "token",
        "prob",
        "logprob",
        "rank",
        "entropy_bits",
        "jsd_next_bits",
        "jsd_next_paper",
        "kl_to_last_bits",
        "topk_ids",
        "topk_probs",
        "topk_tokens",
    ):
        assert column in frame.columns, column
    row = frame[(frame.step == 2) & (frame.layer == 1)].iloc[0]
    assert row.prob == pytest.approx(float(trace.token_probs()[1, 2]), rel=1e-6)
    assert row.jsd_next_bits == pytest.approx(float(trace.jsd()[1, 2]), rel=1e-6)
    assert row.token == trace.tokens[2]
    assert list(row.topk_ids) == trace.metrics.topk_ids[1, 2].tolist()
    assert frame[frame.layer == trace.n_layers].jsd_next_bits.isna().all()
    assert frame.equals(trace.to_frame())


def test_manifest_records_provenance(trace, tmp_path, tiny_llava) -> None:
    manifest = read_manifest(trace.save(tmp_path / "t"))
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert set(manifest["software"]) >= {"evolens", "transformers", "torch"}
    assert manifest["model"]["weights_hash"] == hash_weight_files(tiny_llava.loaded.weight_files)
    assert len(manifest["model"]["weights_hash"]) == 64
    assert manifest["rendered_prompt"] == trace.rendered_prompt
    assert manifest["generation"]["max_new_tokens"] == 5 and manifest["seed"] == 0
    assert manifest["lens"] == "logit"


def test_existing_directory_needs_overwrite(trace, tmp_path) -> None:
    path = trace.save(tmp_path / "t")
    with pytest.raises(StoreError, match="already exists"):
        trace.save(path)
    trace.save(path, overwrite=True)
    assert evolens.Trace.load(path).text == trace.text
    assert [p.name for p in tmp_path.iterdir()] == ["t"]  # no temporary or old directories left


def test_failed_write_leaves_nothing_behind(trace, tmp_path, monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(fileformat, "save_file", fail)
    with pytest.raises(OSError, match="disk full"):
        trace.save(tmp_path / "t")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    first = trace.save(tmp_path / "t")
    monkeypatch.setattr(fileformat, "save_file", fail)
    with pytest.raises(OSError):
        trace.save(first, overwrite=True)
    assert evolens.Trace.load(first).text == trace.text  # the old trace is intact
    assert [p.name for p in tmp_path.iterdir()] == ["t"]


def test_reading_something_that_is_not_a_trace(tmp_path) -> None:
    with pytest.raises(StoreError, match=r"no manifest\.json"):
        evolens.Trace.load(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "evolens.trace", "schema_version": 99}))
    with pytest.raises(StoreError, match="schema version 99"):
        evolens.Trace.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(StoreError, match="cannot read"):
        evolens.Trace.load(tmp_path)


def test_a_damaged_tensor_file_is_named(tmp_path, tiny_llava, image) -> None:
    from evolens.errors import StoreError

    trace = tiny_llava.trace(image, "describe this image", max_new_tokens=2)
    directory = trace.save(tmp_path / "trace")
    tensors = directory / "tensors.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:40])
    with pytest.raises(StoreError, match=r"tensors\.safetensors \(corrupt or truncated\?\)") as info:
        evolens.Trace.load(directory)
    assert "\n" not in str(info.value)
