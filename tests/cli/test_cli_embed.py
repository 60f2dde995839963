"""``evolens embed``: feature maps from saved traces (Fig. 6 / 7), their numbers and stage groups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from evolens.analysis import analyze_trace
from evolens.geometry import FeatureMap
from evolens.geometry.detect import median_layer
from evolens.trace import Trace
from tests.analysis.synthetic import make_metrics, make_trace, step_jsd, step_probs
from tests.cli.helpers import assert_user_error, copy_traces, run


def test_single_map_goes_next_to_the_trace(tiny_run, tmp_path: Path, capsys) -> None:
    traces_dir = copy_traces(tiny_run[0], tmp_path)
    trace_dir = traces_dir / "item0"
    code, stdout, err = run(capsys, "embed", trace_dir, "--reducer", "pca")
    assert code == 0, err
    fmap = FeatureMap.load(trace_dir / "geometry.json")
    trace = Trace.load(trace_dir)
    assert fmap.kind == "single_image" and fmap.n_units == trace.n_steps and fmap.layers == (1, 2, 3, 4)
    assert fmap.projection.backend == "pca"
    # tiny random models have no critical layer: one group
    assert [g.name for g in fmap.groups] == ["all layers"] and fmap.critical_layer is None
    assert (trace_dir / "geometry.png").is_file() and (trace_dir / "geometry.svg").is_file()
    for words in (
        "dispersion jump",
        "linearity",
        "adjacent-layer CKA",
        "trustworthiness",
        "6 tokens x 4 layers",
    ):
        assert words in stdout
    # a second run does not replace the map unless asked
    assert_user_error(run(capsys, "embed", trace_dir, "--reducer", "pca"), "--overwrite")
    code, _, err = run(capsys, "embed", trace_dir, "--reducer", "pca", "--critical", "2", "--overwrite")
    assert code == 0, err
    fmap = FeatureMap.load(trace_dir / "geometry.json")
    assert [g.layers for g in fmap.groups] == [(1,), (2, 3, 4)] and fmap.numbers.critical_layer == 2


def test_multi_map_across_traces(tiny_run, tmp_path: Path, capsys) -> None:
    traces_dir = copy_traces(tiny_run[0], tmp_path)
    out = tmp_path / "map"
    code, stdout, err = run(
        capsys, "embed", traces_dir, "--mode", "multi", "--step", "1", "--perplexity", "2", "--critical", "2",
        "--mutation", "4", "--seed", "3", "-o", out, "-f", "svg",
    )  # fmt: skip
    assert code == 0, err
    fmap = FeatureMap.load(out / "geometry.json")
    assert fmap.kind == "multi_image" and fmap.unit_items == ["item0", "item1"] and fmap.unit_steps == [1, 1]
    assert [g.name for g in fmap.groups] == ["rapid evolution", "stabilisation", "mutation"]
    assert fmap.projection.settings.perplexity == 2 and fmap.projection.settings.seed == 3
    assert sorted(p.name for p in out.iterdir()) == ["geometry.json", "geometry.svg"]
    assert "[2 traces, step 1] critical 2, mutation 4 (given)" in stdout
    # the same map again, identical (seeded)
    code, _, _ = run(
        capsys, "embed", traces_dir, "--mode", "multi", "--step", "1", "--perplexity", "2", "--critical", "2",
        "--mutation", "4", "--seed", "3", "-o", tmp_path / "again", "-f", "svg",
    )  # fmt: skip
    np.testing.assert_array_equal(FeatureMap.load(tmp_path / "again" / "geometry.json").coords, fmap.coords)


def test_single_maps_of_several_traces_go_under_out(tiny_run, tmp_path: Path, capsys) -> None:
    traces_dir = copy_traces(tiny_run[0], tmp_path)
    code, _, err = run(
        capsys, "embed", traces_dir, "--mode", "single", "--reducer", "pca", "-o", tmp_path / "m"
    )
    assert code == 0, err
    for item in ("item0", "item1"):
        assert FeatureMap.load(tmp_path / "m" / item / "geometry.json").unit_items[0] == item
    assert not (traces_dir / "item0" / "geometry.json").exists()


def test_stage_groups_come_from_the_detected_layers(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(0)
    n_layers, crits = 16, [4, 5, 6, 7, 8, 5, 6, 7, 8, 4]
    probs = np.stack([step_probs(rng, n_layers, c) for c in crits], 1)
    jsd = np.stack([step_jsd(rng, n_layers, c, [13] if i % 2 else []).jsd for i, c in enumerate(crits)], 1)
    trace = make_trace(make_metrics(probs, jsd), item_id="syn")
    trace.hidden_states = torch.randn(n_layers + 1, len(crits), 8, generator=torch.Generator().manual_seed(0))
    trace_dir = trace.save(tmp_path / "syn")
    code, stdout, err = run(capsys, "embed", trace_dir, "--reducer", "pca")
    assert code == 0, err
    fmap = FeatureMap.load(trace_dir / "geometry.json")
    # medians over the tokens: critical layers 4..8 -> 6; the spike at transition 13 is mutation layer 14
    assert (fmap.critical_layer, fmap.mutation_layer) == (6, 14)
    assert [g.layers for g in fmap.groups] == [tuple(range(1, 6)), tuple(range(6, 14)), (14, 15, 16)]
    n_mutated = int((analyze_trace(Trace.load(trace_dir)).mutation_layer > 0).sum())
    assert f"medians over 10 of 10 tokens with a critical layer, {n_mutated} with a mutation layer" in stdout
    code, _, err = run(capsys, "embed", trace_dir, "--reducer", "pca", "--groups", "paper", "--overwrite")
    assert code == 0, err
    groups = FeatureMap.load(trace_dir / "geometry.json").groups
    assert [g.layers[0] for g in groups] == [1, 3, 7, 16]  # the paper's 1-2, 3-c, c+1..L-1, L with c = 6


def test_median_layer() -> None:
    assert median_layer([-1, -1]) is None
    assert median_layer([3, 4, -1]) == 4  # 3.5 rounds half up
    assert median_layer(np.array([2, 9, 5])) == 5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{run}", "--mode", "multi"], "needs --out"),
        (["{trace}", "--mode", "multi", "-o", "{tmp}/o"], "at least 2 traces"),
        (["{trace}", "-o", "{tmp}/o"], "perplexity"),  # t-SNE's default perplexity needs 91 points
        (["{trace}", "--paper", "--reducer", "pca", "-o", "{tmp}/o"], "--paper"),
        (["{trace}", "--reducer", "pca", "--groups", "paper", "-o", "{tmp}/o"], "at least 5 layers"),
        (
            ["{trace}", "--reducer", "pca", "--critical", "3", "--mutation", "2", "-o", "{tmp}/o"],
            "must come after",
        ),
        (["{trace}", "--reducer", "pca", "--critical", "9", "-o", "{tmp}/o"], "critical_layer must be"),
        (["{bare}", "--reducer", "pca", "-o", "{tmp}/o"], "no hidden states"),
    ],
)
def test_user_errors_exit_2(tiny_run, tmp_path: Path, capsys, argv, message) -> None:
    root, traces = tiny_run
    bare = traces[0].save(tmp_path / "bare", hidden_states=False)
    names = {"run": root / "traces", "trace": root / "traces" / "item0", "tmp": tmp_path, "bare": bare}
    assert_user_error(run(capsys, "embed", *[a.format(**names) for a in argv]), message)
    assert not (root / "traces" / "item0" / "geometry.json").exists()
