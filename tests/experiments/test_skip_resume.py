"""A chunked layer-skip run keeps its finished chunks on disk and resumes: a resumed run equals one never
interrupted, computes only the missing chunks, and refuses other settings."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

import evolens.experiments.skip.run as skip_run
from evolens.analysis import Annotations, DetectorParams
from evolens.api import TraceOptions
from evolens.errors import SettingsError, StoreError
from evolens.experiments.skip import SkipOptions, SkipReport, run_skip_chunked

PROMPTS = ["describe the image", "what color is the sky ?", "a", "is there a dog ?", "b"]
ANNOTATIONS = [Annotations.of(["sky"], ["sea"]), None, None, Annotations.of(["dog"], []), None]
OPTIONS = SkipOptions(presets=(), layers={"mid": [2]}, trace=TraceOptions.from_flat(max_new_tokens=2))
CHUNK = 2  # five items: chunks of 2, 2 and 1


def _run(lvlm, chunks: Path | None, options: SkipOptions = OPTIONS, **kw) -> SkipReport:
    args = {"chunk_size": CHUNK, "annotations": ANNOTATIONS, "extra_settings": {"items": len(PROMPTS)}} | kw
    prompts = args.pop("prompts", PROMPTS)
    return run_skip_chunked(lvlm, [None] * len(prompts), prompts, options, chunks_dir=chunks, **args)


def _count_generations(monkeypatch: pytest.MonkeyPatch, fail_at: int | None = None) -> list[int]:
    """Count the chunks whose variants are generated; with ``fail_at``, raise (a killed run) at that call."""
    calls: list[int] = []
    real = skip_run.generate_variants

    def counted(*args, **kwargs):
        calls.append(len(args[2]))
        if fail_at is not None and len(calls) == fail_at:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(skip_run, "generate_variants", counted)
    return calls


def test_options_record_every_setting() -> None:
    options = SkipOptions(presets=["skip2"], layers={"a": [3, 4]}, critical=1, mutation=[5], keep_last=2)
    assert options.presets == ("skip2",) and options.mutation == (5,) and options.layers == {"a": (3, 4)}
    record = options.to_dict()
    assert record["presets"] == ["skip2"] and record["layers"] == {"a": [3, 4]} and record["mutation"] == [5]
    assert record["params"] == DetectorParams().to_dict() and record["trace"]["batch_size"] == 8
    assert record["trace"]["max_new_tokens"] == TraceOptions().generation.max_new_tokens
    assert replace(options, method="rebuild").to_dict() != record


def test_resumed_run_equals_an_uninterrupted_one(tiny_models, tmp_path: Path) -> None:
    lvlm = tiny_models("llama")
    chunks = tmp_path / "chunks"
    whole = _run(lvlm, chunks)
    assert sorted(p.name for p in chunks.iterdir()) == [
        "00000.json",
        "00001.json",
        "00002.json",
        "settings.json",
    ]
    first = whole.save(tmp_path / "skip.json").read_text()
    assert whole.to_dict() == _run(lvlm, None).to_dict()  # keeping chunks changes nothing

    (chunks / "00002.json").unlink()
    (tmp_path / "skip.json").unlink()
    resumed = _run(lvlm, chunks)
    assert resumed.save(tmp_path / "skip.json").read_text() == first
    assert [r.item_id for r in resumed.results] == ["0", "1", "2", "3", "4"]


def test_killed_run_resumes_with_the_missing_chunks_only(
    tiny_models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lvlm = tiny_models("llama")
    chunks = tmp_path / "chunks"
    calls = _count_generations(monkeypatch, fail_at=2)
    with pytest.raises(KeyboardInterrupt):
        _run(lvlm, chunks)
    assert calls == [2, 2] and sorted(p.name for p in chunks.glob("0*.json")) == ["00000.json"]

    calls = _count_generations(monkeypatch)
    done: list[int] = []
    resumed = _run(lvlm, chunks, on_chunk=done.append)
    assert calls == [2, 1]  # chunk 0 loaded, chunks 1 and 2 computed
    assert done == [2, 2, 1]  # the progress counts the loaded chunk too
    calls = _count_generations(monkeypatch)
    assert _run(lvlm, chunks).to_dict() == resumed.to_dict() and calls == []  # all loaded
    assert SkipReport.from_dict(resumed.to_dict()).to_dict() == _run(lvlm, None).to_dict()


@pytest.mark.parametrize(
    ("change", "differs"),
    [
        ({"options": replace(OPTIONS, method="rebuild")}, "skip.method"),
        ({"options": replace(OPTIONS, layers={"mid": [3]})}, "skip.layers.mid"),
        ({"options": replace(OPTIONS, presets=("skip1",), critical=1)}, "skip.presets"),
        ({"options": replace(OPTIONS, keep_last=1)}, "skip.keep_last"),
        ({"options": replace(OPTIONS, params=DetectorParams(spike_ratio=7))}, "skip.params.spike_ratio"),
        ({"options": replace(OPTIONS, trace=TraceOptions.from_flat(max_new_tokens=3))}, "max_new_tokens"),
        (
            {"options": replace(OPTIONS, trace=TraceOptions.from_flat(max_new_tokens=2, raw_prompt=True))},
            "raw",
        ),
        ({"chunk_size": 3}, "chunk_size"),
        ({"extra_settings": {"items": 5, "dataset": {"name": "amber"}}}, "dataset.name"),
        ({"prompts": [*PROMPTS[:4], "c"], "extra_settings": {"items": 5}}, "items_sha256"),
        ({"item_ids": ["a", "b", "c", "d", "e"]}, "items_sha256"),
        ({"annotations": [None] * 5}, "items_sha256"),
    ],
)
def test_other_settings_are_refused(
    tiny_models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change, differs
) -> None:
    lvlm = tiny_models("llama")
    chunks = tmp_path / "chunks"
    calls = _count_generations(monkeypatch, fail_at=1)  # the settings are written before the first chunk
    with pytest.raises(KeyboardInterrupt):
        _run(lvlm, chunks)
    calls.clear()
    with pytest.raises(SettingsError, match=rf"other settings \(stored -> requested: .*{differs}"):
        _run(lvlm, chunks, **change)
    assert calls == []  # refused before any work


def test_a_chunk_of_other_items_is_refused(tiny_models, tmp_path: Path) -> None:
    lvlm = tiny_models("llama")
    chunks = tmp_path / "chunks"
    _run(lvlm, chunks, prompts=PROMPTS[:2], annotations=ANNOTATIONS[:2], chunk_size=1)
    (chunks / "00000.json").replace(chunks / "00001.json")  # chunk 0's items where chunk 1 belongs
    with pytest.raises(StoreError, match="is not chunk 1 of this run"):
        _run(lvlm, chunks, prompts=PROMPTS[:2], annotations=ANNOTATIONS[:2], chunk_size=1)
