"""Dataset runs in one process: layout, failures, labels and layer statistics, configuration checks, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import evolens
from evolens.data import Amber, ImageFolder
from evolens.data.scores import ItemEvaluation
from evolens.errors import DatasetError, SettingsError, StoreError
from evolens.hallucination import TokenLayers, label_tokens
from evolens.store import run as run_module
from evolens.store.run import RunDirectory, item_dir_name
from evolens.testing.tiny import WORDS
from evolens.trace import Trace
from tests.data.fixtures import write_folder, write_image, write_json
from tests.run_options import finalize_options, run_options
from tests.runs.helpers import assert_same_run

FAST = {"max_new_tokens": 3, "batch_size": 2, "device": "cpu", "progress": False}


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def start(self, total: int, completed: int, description: str) -> None:
        self.events.append(("start", total, completed))

    def advance(self, n: int = 1) -> None:
        self.events.append(("advance", n))

    def close(self) -> None:
        self.events.append(("close",))


def test_folder_run_layout_failures_and_results(tmp_path: Path, tiny_llava) -> None:
    data = write_folder(tmp_path / "imgs", n=4, corrupt=True)
    progress = Recorder()
    summary = evolens.run(
        tiny_llava,
        ImageFolder(data, "describe this image"),
        tmp_path / "run",
        **run_options(**{**FAST, "progress": progress}),
    )
    assert (summary.n_items, summary.n_traced, summary.n_failed, summary.n_skipped) == (5, 4, 1, 0)
    assert progress.events[0] == ("start", 5, 0) and progress.events[-1] == ("close",)
    assert sum(e[1] for e in progress.events if e[0] == "advance") == 5
    run = RunDirectory(tmp_path / "run")
    assert run.status()["b/broken.png"] == "failed"
    failure = run.failure("b/broken.png")
    assert (
        failure["stage"] == "image"
        and failure["error"] == "ImageDecodeError"
        and "broken.png" in failure["message"]
    )
    trace = Trace.load(run.item_dir("a/img0.png"))  # an item directory is a trace directory
    assert trace.item_id == "a/img0.png" and trace.hidden_states is None and trace.n_steps == 3
    record = json.loads((run.item_dir("a/img0.png") / "item.json").read_text())
    assert record == {
        "item_id": "a/img0.png",
        "image": "a/img0.png",
        "prompt": "describe this image",
        "annotations": {},
        "index": 0,
    }

    results = evolens.RunResults(tmp_path / "run")
    items = results.items()
    assert list(items["item"]) == ["a/img0.png", "a/img2.png", "b/broken.png", "b/img1.png", "b/img3.png"]
    assert list(items["status"]) == ["done", "done", "failed", "done", "done"]
    assert items.loc[2, "error"] == "ImageDecodeError"
    tokens = results.tokens()
    assert len(tokens) == 4 * 3 and tokens["label"].isna().all()
    metrics = results.metrics(columns=["item", "step", "layer", "prob", "label"])
    assert len(metrics) == 4 * 3 * (trace.n_layers + 1)
    assert results.summary()["done"] == 4 and results.summary()["failed"] == 1
    assert (
        results.statistics() is not None and results.analysis("a/img0.png") is not None
    )  # analysed by default
    assert results.trace("b/img1.png").text == items.loc[3, "text"]
    with pytest.raises(StoreError, match="has no trace"):
        results.trace("b/broken.png")

    # Running again does nothing: everything is finished or failed.
    again = evolens.run(
        tiny_llava, ImageFolder(data, "describe this image"), tmp_path / "run", **run_options(**FAST)
    )
    assert (again.n_traced, again.n_failed, again.n_skipped) == (0, 0, 5)

    # Repair the image and retry the failed item.
    write_image(data / "b" / "broken.png", seed=7)
    retried = evolens.run(
        tiny_llava,
        ImageFolder(data, "describe this image"),
        tmp_path / "run",
        **run_options(retry_failed=True, **FAST),
    )
    assert (retried.n_traced, retried.n_failed) == (1, 0)
    assert run.status()["b/broken.png"] == "done" and not run.failure_path("b/broken.png").exists()


def _toy_detector(trace: Trace) -> TokenLayers:
    """A stand-in detector: the critical layer is where the generated token first becomes top-1; mutations are
    later layers where the top-1 token changes."""
    ranks = trace.token_ranks()
    top1 = trace.metrics.topk_ids[..., 0]
    critical: list[int | None] = []
    mutations: list[list[int]] = []
    for step in range(trace.n_steps):
        at_top = (ranks[:, step] == 1).nonzero().flatten().tolist()
        first = at_top[0] if at_top else None
        critical.append(first)
        mutations.append(
            []
            if first is None
            else [
                la for la in range(max(first, 1), trace.n_layers + 1) if top1[la, step] != top1[la - 1, step]
            ]
        )
    return TokenLayers(critical, mutations, scores=[float(len(m)) for m in mutations])


def _amber_over_tiny_vocabulary(root: Path, n: int = 6) -> Path:
    """An AMBER folder whose vocabulary is the tiny models' words, so their gibberish mentions objects."""
    data = root / "data"
    words = [w for w in WORDS if w.isalpha() and w.islower()]
    truth, hallu = words[::2], words[1::2]
    write_json(data / "relation.json", {w: [] for w in words})
    (data / "safe_words.txt").write_text("")
    write_json(
        data / "annotations.json",
        [{"id": i, "type": "generative", "truth": truth, "hallu": hallu} for i in range(1, n + 1)],
    )
    prompts = [
        "describe this image",
        "what color is the dog ?",
        "how many cat",
        "please describe the picture in detail",
    ]
    write_json(
        data / "query" / "query_generative.json",
        [{"id": i, "image": f"AMBER_{i}.jpg", "query": prompts[i % len(prompts)]} for i in range(1, n + 1)],
    )
    for i in range(1, n + 1):
        write_image(data / "image" / f"AMBER_{i}.jpg", seed=20 + i)
    return data


def test_labels_and_layer_statistics_end_to_end(tmp_path: Path, tiny_llava) -> None:
    data = _amber_over_tiny_vocabulary(tmp_path)
    summary = evolens.run(
        tiny_llava,
        Amber(data),
        tmp_path / "run",
        **run_options(method="fallback", layer_detector=_toy_detector, **{**FAST, "max_new_tokens": 8}),
    )
    results = evolens.RunResults(tmp_path / "run")
    evaluation = results.evaluation()
    tokens = results.tokens()
    truth = set(json.loads((data / "annotations.json").read_text())[0]["truth"])
    labelled = tokens[tokens["label"].notna()]
    assert len(labelled) > 0, "the tiny model's words should include AMBER objects of this fixture"
    for _, row in labelled.iterrows():
        assert (row["object"] in truth) == (row["label"] == "grounded")
    # The token labels are the evaluation's mentions mapped onto each trace's tokens.
    for judged in evaluation.items:
        item: ItemEvaluation = judged
        trace = results.trace(item.item_id)
        expected = label_tokens(trace.tokens, trace.text, item.mentions)
        got = tokens[tokens["item"] == item.item_id]
        assert [None if pd.isna(v) else v for v in got["label"]] == expected.labels
        layers = _toy_detector(trace)
        assert [None if pd.isna(v) else int(v) for v in got["critical_layer"]] == layers.critical
    metrics = results.metrics(columns=["item", "step", "layer", "label"])
    merged = metrics.merge(tokens[["item", "step", "label"]], on=["item", "step"], suffixes=("", "_token"))
    assert (merged["label"].fillna("-") == merged["label_token"].fillna("-")).all()
    stats = results.statistics()
    assert stats is not None and stats.all_tokens.n_tokens == int((~tokens["is_eos"]).sum())
    assert stats.hallucinated.n_tokens + stats.grounded.n_tokens == int(labelled["first"].sum())
    assert summary.results is not None and summary.results["layer_detector"].endswith("_toy_detector")
    # evolens eval: evaluate again without a detector; statistics disappear, labels stay.
    again = evolens.finalize_run(tmp_path / "run", finalize_options(method="fallback", layer_detector=None))
    assert again["statistics"] is None and not (tmp_path / "run" / "results" / "statistics.json").exists()
    assert evolens.RunResults(tmp_path / "run").tokens()["label"].equals(tokens["label"])


def test_different_configuration_is_refused(tmp_path: Path, tiny_llava, tiny_llava_dir: Path) -> None:
    data = write_folder(tmp_path / "imgs", n=2)
    out = tmp_path / "run"
    evolens.run(tiny_llava, ImageFolder(data, "describe this image"), out, **run_options(**FAST))
    with pytest.raises(StoreError, match=r"trace.max_new_tokens: 3 -> 4"):
        evolens.run(
            tiny_llava,
            ImageFolder(data, "describe this image"),
            out,
            **run_options(**{**FAST, "max_new_tokens": 4}),
        )
    with pytest.raises(StoreError, match=r"dataset.fingerprint"):
        evolens.run(tiny_llava, ImageFolder(data, "another prompt"), out, **run_options(**FAST))
    with pytest.raises(StoreError, match=r"save.batch_size: 2 -> 3"):
        evolens.run(
            tiny_llava,
            ImageFolder(data, "describe this image"),
            out,
            **run_options(**{**FAST, "batch_size": 3}),
        )
    other = evolens.testing.save_tiny("llava", tmp_path / "other-model", seed=1)
    with pytest.raises(StoreError, match=r"model.weights_hash"):
        evolens.run(other, ImageFolder(data, "describe this image"), out, **run_options(**FAST))
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "not-a-run" / "precious.txt").write_text("keep me")
    with pytest.raises(StoreError, match="not empty and is not an evolens run"):
        evolens.run(
            tiny_llava,
            ImageFolder(data, "describe this image"),
            tmp_path / "not-a-run",
            **run_options(**FAST),
        )
    assert tiny_llava_dir.is_dir()


def test_bad_arguments(tmp_path: Path, tiny_llava) -> None:
    data = write_folder(tmp_path / "imgs", n=2)
    with pytest.raises(SettingsError, match="batch_size"):
        evolens.run(
            tiny_llava, ImageFolder(data, "p"), tmp_path / "r", **run_options(**{**FAST, "batch_size": 0})
        )
    with pytest.raises(SettingsError, match="unknown text method"):
        evolens.run(tiny_llava, ImageFolder(data, "p"), tmp_path / "r", **run_options(method="magic", **FAST))  # type: ignore[arg-type]
    with pytest.raises(DatasetError, match="has no items"):
        evolens.run(tiny_llava, [], tmp_path / "r", **run_options(**FAST))
    assert not (tmp_path / "r").exists()


def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path: Path, tiny_llava, monkeypatch) -> None:
    data = write_folder(tmp_path / "imgs", n=5, corrupt=True)
    dataset = ImageFolder(data, "describe this image")
    evolens.run(tiny_llava, dataset, tmp_path / "reference", **run_options(**FAST))

    real = RunDirectory.write_item
    calls = {"n": 0}

    def crash_on_third(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # what Ctrl-C does in the middle of a batch
        return real(self, *args, **kwargs)

    monkeypatch.setattr(RunDirectory, "write_item", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        evolens.run(tiny_llava, dataset, tmp_path / "resumed", **run_options(**FAST))
    monkeypatch.setattr(RunDirectory, "write_item", real)
    status = RunDirectory(tmp_path / "resumed").status()
    assert list(status.values()).count("done") == 2 and not (tmp_path / "resumed" / "results").exists()
    resumed = evolens.run(tiny_llava, dataset, tmp_path / "resumed", **run_options(**FAST))
    assert resumed.n_skipped == 3  # two finished, one failed (the corrupt image is not retried)
    assert_same_run(tmp_path / "reference", tmp_path / "resumed")


def test_item_directory_names_are_safe_and_distinct() -> None:
    ids = ["a/b.png", "a%2Fb.png", "..", ".hidden", "ü/ß", "x" * 400, "x" * 401, "CON", "a b"]
    names = [item_dir_name(i) for i in ids]
    assert len(set(names)) == len(names)
    for name in names:
        assert "/" not in name and "\\" not in name and not name.startswith(".") and len(name) <= 120
    assert run_module.item_dir_name("AMBER_1") == "AMBER_1"


def test_hidden_states_are_stored_on_request(tmp_path: Path, tiny_llava) -> None:
    data = write_folder(tmp_path / "imgs", n=1)
    evolens.run(
        tiny_llava,
        ImageFolder(data, "describe this image"),
        tmp_path / "run",
        **run_options(hidden_states=True, **FAST),
    )
    trace = evolens.RunResults(tmp_path / "run").trace("a/img0.png")
    d_model = tiny_llava.loaded.roles.d_model
    assert trace.hidden_states is not None
    assert tuple(trace.hidden_states.shape) == (trace.n_layers + 1, trace.n_steps, d_model)
