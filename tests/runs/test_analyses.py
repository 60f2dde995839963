"""Runs analyse by default: analysis.json beside every trace, the layer baseline rule, statistics, the analyses'
summary, dataset figures, detector parameters in the configuration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import evolens
from evolens.analysis import DetectorParams, TraceAnalysis, analyze_trace, jsd_baseline, summarize
from evolens.data import Amber, ImageFolder
from evolens.errors import SettingsError, StoreError
from evolens.hallucination import TokenLayers
from evolens.store.run import RunDirectory
from tests.data.fixtures import write_folder
from tests.run_options import finalize_options, run_options
from tests.runs.test_run import FAST, _amber_over_tiny_vocabulary, _toy_detector


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory, tiny_llava) -> Path:
    """Five items of three tokens each (shorter than the default baseline_min_tokens = 8) and one corrupt image."""
    root = tmp_path_factory.mktemp("short-run")
    data = write_folder(root / "imgs", n=5, corrupt=True)
    evolens.run(tiny_llava, ImageFolder(data, "describe this image"), root / "run", **run_options(**FAST))
    return root / "run"


def _traces(run: Path) -> dict[str, evolens.Trace]:
    results = evolens.RunResults(run)
    return {k: results.trace(k) for k, v in RunDirectory(run).status().items() if v == "done"}


def test_default_run_writes_every_analysis_and_the_summary(short_run: Path) -> None:
    results = evolens.RunResults(short_run)
    traces = _traces(short_run)
    params = DetectorParams()
    assert RunDirectory(short_run).read_manifest()["config"]["analysis"] == {"params": params.to_dict()}
    # Every answer is short (3 < 8 tokens): each is held against the run's baseline over all finished items.
    baseline = jsd_baseline(list(traces.values()), params)
    analyses = []
    for item_id, trace in traces.items():
        stored = results.analysis(item_id)
        assert stored is not None and (results.run.item_dir(item_id) / "analysis.json").is_file()
        expected = analyze_trace(trace, params, baseline_jsd=baseline)
        assert stored.to_dict() == TraceAnalysis.from_dict(expected.to_dict()).to_dict()
        np.testing.assert_allclose(stored.baseline_jsd, baseline)
        analyses.append(expected)
    assert results.analysis("b/broken.png") is None  # the failed item has no trace and no analysis
    # The token table carries the analyses' layers; the statistics and the summary are written.
    tokens = results.tokens()
    for item_id, analysis in zip(traces, analyses, strict=True):
        rows = tokens[tokens["item"] == item_id]
        layers = TokenLayers.from_analysis(analysis)
        assert [None if pd.isna(v) else int(v) for v in rows["critical_layer"]] == layers.critical
        assert [None if pd.isna(v) else int(v) for v in rows["critical_layer_prob"]] == layers.critical_prob
        assert [None if pd.isna(v) else int(v) for v in rows["critical_layer_jsd"]] == layers.critical_jsd
        assert [list(m) for m in rows["mutation_layers"]] == layers.mutations
    assert results.statistics() is not None
    summary = results.analysis_summary()
    assert summary is not None
    assert summary.to_dict() == summarize(analyses, n_boot=1000, seed=0).to_dict()
    info = results.summary()["analysis"]
    assert results.summary()["layer_detector"] == "auto"
    assert info["n_items_with_run_baseline"] == len(traces) == 5 and info["params"] == params.to_dict()
    np.testing.assert_allclose(info["run_baseline_jsd"], baseline)
    assert len(info["summary_lines"]) == 2 and "agree" in info["summary_lines"][1]
    # Each rate names its denominator: the tokens with a critical layer, the tokens with both critical layers.
    rates = summary.mutation_rate, summary.agreement_rate
    assert f"of the {rates[0].n} tokens with a critical layer" in info["summary_lines"][1]
    assert f"of the {rates[1].n} tokens with both" in info["summary_lines"][1]


def test_baseline_rule_own_run_or_none(short_run: Path) -> None:
    traces = _traces(short_run)
    # Answers long enough for their own baseline (3 >= 3): analyze_trace's default, no run baseline.
    own = evolens.finalize_run(
        short_run, finalize_options(detector_params={"baseline_min_tokens": 3}, figures=False)
    )
    assert own["analysis"]["n_items_with_run_baseline"] == 0 and own["analysis"]["run_baseline_jsd"] is None
    results = evolens.RunResults(short_run)
    for item_id, trace in traces.items():
        stored = results.analysis(item_id)
        assert stored is not None and stored.params.baseline_min_tokens == 3
        assert trace.stop_reason == "max_new_tokens"  # all three tokens count
        np.testing.assert_allclose(stored.baseline_jsd, np.median(trace.jsd().double().numpy(), axis=1))
    # Spikes that ignore any baseline: none is computed.
    off = evolens.finalize_run(
        short_run, finalize_options(detector_params=DetectorParams(spike_layer_ratio=0.0), figures=False)
    )
    assert off["analysis"]["run_baseline_jsd"] is None
    assert all(evolens.RunResults(short_run).analysis(k).baseline_jsd is None for k in traces)  # type: ignore[union-attr]
    # Without a detector: no statistics and no summary; the analyses written before are left alone.
    none = evolens.finalize_run(short_run, finalize_options(layer_detector=None, figures=False))
    assert none["statistics"] is None and none["analysis"] is None and none["layer_detector"] is None
    assert not (short_run / "results" / "statistics.json").exists()
    assert not (short_run / "results" / "analysis_summary.json").exists()
    assert evolens.RunResults(short_run).tokens()["critical_layer"].isna().all()
    assert all(
        (short_run / "items" / p.name / "analysis.json").is_file() for p in (short_run / "items").iterdir()
    )
    with pytest.raises(SettingsError, match="layer_detector must be 'auto'"):
        evolens.finalize_run(short_run, finalize_options(layer_detector="magic"))  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="unknown detector parameter"):
        evolens.finalize_run(short_run, finalize_options(detector_params={"first_layers": 2}))
    evolens.finalize_run(short_run)  # back to the run's own configuration for the other tests


def test_detector_parameters_are_part_of_the_configuration(tmp_path: Path, tiny_llava) -> None:
    data = write_folder(tmp_path / "imgs", n=2)
    dataset = ImageFolder(data, "describe this image")
    out = tmp_path / "run"
    with pytest.raises(SettingsError, match="first_layer=3 leaves fewer than 2 transitions"):
        evolens.run(tiny_llava, dataset, out, **run_options(detector_params={"first_layer": 3}, **FAST))
    assert not out.exists()  # refused before anything was traced
    evolens.run(
        tiny_llava, dataset, out, **run_options(detector_params={"first_layer": 2}, figures=False, **FAST)
    )
    stored = evolens.RunResults(out).analysis("a/img0.png")
    assert stored is not None and stored.params.first_layer == 2
    with pytest.raises(StoreError, match=r"analysis.params.first_layer: 2 -> 1"):
        evolens.run(tiny_llava, dataset, out, **run_options(**FAST))
    # A run created before detector parameters were recorded resumes with any of them.
    manifest = json.loads((out / "run.json").read_text())
    del manifest["config"]["analysis"]
    (out / "run.json").write_text(json.dumps(manifest))
    again = evolens.run(tiny_llava, dataset, out, **run_options(figures=False, **FAST))
    assert again.n_skipped == 2 and evolens.RunResults(out).analysis("a/img0.png").params.first_layer == 1  # type: ignore[union-attr]


def test_dataset_figures_are_written_from_the_stored_results(tmp_path: Path, tiny_llava) -> None:
    data = _amber_over_tiny_vocabulary(tmp_path)
    evolens.run(
        tiny_llava,
        Amber(data),
        tmp_path / "run",
        **run_options(
            method="fallback",
            layer_detector=_toy_detector,  # known to give critical and mutation layers on the tiny model
            **{**FAST, "max_new_tokens": 8},
        ),
    )
    results = evolens.RunResults(tmp_path / "run")
    names = sorted(p.name for p in results.figures())
    stems = ["critical_layers", "hallucinated_vs_grounded", "mutation_layers"]
    assert names == sorted(f"{s}.{ext}" for s in stems for ext in ("png", "svg"))
    assert results.summary()["figures"] == [f"figures/{n}" for n in names]
    before = {p.name: p.read_bytes() for p in results.figures()}
    assert before["critical_layers.png"].startswith(b"\x89PNG") and b"<svg" in before["critical_layers.svg"]
    # Merging again reads the same stored results and gives byte-identical figures.
    evolens.finalize_run(tmp_path / "run", finalize_options(method="fallback", layer_detector=_toy_detector))
    assert {p.name: p.read_bytes() for p in results.figures()} == before
    evolens.finalize_run(
        tmp_path / "run", finalize_options(method="fallback", layer_detector=_toy_detector, figures=False)
    )
    assert results.figures() == [] and results.summary()["figures"] == []
