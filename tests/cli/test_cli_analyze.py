"""``evolens analyze``: analysis.json next to each trace, detector options, layer baselines, summaries, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evolens.analysis import AnalysisSummary, DetectorParams, TraceAnalysis, jsd_baseline
from evolens.trace import Trace
from tests.analysis.synthetic import make_metrics, make_trace, step_jsd, step_probs
from tests.cli.helpers import assert_user_error, copy_traces, run
from tests.run_options import run_options

L = 16
CRITICAL = {"a": [4, 5, 6, 7, 8, 5, 6, 7, 8, 4], "b": [9, 9, 9, 9, 10, 10, 10, 10, 10, 10]}


@pytest.fixture
def synthetic_run(tmp_path: Path) -> Path:
    """Two saved traces of a 16-layer model whose tokens have known critical layers (and a spike at 14 on odd
    tokens), 10 tokens each."""
    rng = np.random.default_rng(0)
    root = tmp_path / "run"
    for item, crits in CRITICAL.items():
        probs = np.stack([step_probs(rng, L, c) for c in crits], 1)
        jsd = np.stack([step_jsd(rng, L, c, [13] if i % 2 else []).jsd for i, c in enumerate(crits)], 1)
        make_trace(make_metrics(probs, jsd), item_id=item).save(root / "items" / item)
    return root


def test_analyze_writes_analysis_json_next_to_each_trace(synthetic_run: Path, tmp_path: Path, capsys) -> None:
    summary_file = tmp_path / "out" / "summary.json"
    code, stdout, err = run(
        capsys,
        "analyze",
        synthetic_run,
        "--n-boot",
        "200",
        "--summary",
        summary_file,
        "--figure",
        tmp_path / "h",
    )
    assert code == 0, err
    for item, crits in CRITICAL.items():
        analysis = TraceAnalysis.load(synthetic_run / "items" / item / "analysis.json")
        assert analysis.item_id == item and analysis.n_layers == L
        assert analysis.critical_layer_jsd.tolist() == crits
        assert analysis.critical_layer_prob.tolist() == crits
        assert analysis.params == DetectorParams()
    summary = AnalysisSummary.load(summary_file)
    assert summary.n_items == 2 and summary.n_tokens == 20 and summary.n_boot == 200
    assert summary.distributions["critical_layer_jsd"].median.value == float(
        np.median([c for crits in CRITICAL.values() for c in crits])
    )
    # the table: one row per item with its median critical layer, and the dataset row
    assert "all 2 items" in stdout and "wrote analysis.json into 2 trace directories" in stdout
    assert (
        stdout.count("(10/10)") == 4 and stdout.count("(20/20)") == 2
    )  # both critical layers of every token
    assert (tmp_path / "h.png").is_file() and (tmp_path / "h.svg").is_file()


def test_detector_options_and_config_reach_the_detectors(synthetic_run: Path, tmp_path: Path, capsys) -> None:
    trace_dir = synthetic_run / "items" / "a"
    code, _, err = run(
        capsys, "analyze", trace_dir, "--mutation-rule", "top1", "--spike-ratio", "5", "--n-boot", "0"
    )
    assert code == 0, err
    params = TraceAnalysis.load(trace_dir).params
    assert params.mutation_rule == "top1" and params.spike_ratio == 5.0
    assert TraceAnalysis.load(trace_dir).mutation_layers == [[]] * 10  # no top-1 flips in these tokens
    config = tmp_path / "detectors.toml"
    config.write_text("[analyze]\nspike_ratio = 6\nprob-rel = 0.4\nstage_fallback = false\n")
    code, _, err = run(capsys, "analyze", trace_dir, "--config", config, "--prob-rel", "0.3", "--n-boot", "0")
    assert code == 0, err
    params = TraceAnalysis.load(trace_dir).params
    assert (params.spike_ratio, params.prob_rel, params.stage_fallback) == (
        6.0,
        0.3,
        False,
    )  # command line wins


def test_no_write_leaves_the_traces_alone(synthetic_run: Path, capsys) -> None:
    code, _, _ = run(capsys, "analyze", synthetic_run, "--no-write", "--n-boot", "0")
    assert code == 0
    assert not list(synthetic_run.rglob("analysis.json"))


def test_layer_baseline_modes(tiny_run, tmp_path: Path, capsys) -> None:
    traces_dir = copy_traces(tiny_run[0], tmp_path)
    traces = [Trace.load(d) for d in sorted(traces_dir.iterdir())]
    expected = jsd_baseline(traces)
    # 6-token traces are too short for their own baseline: auto uses the dataset's, trace mode none
    for mode, want in (("auto", expected), ("dataset", expected), ("trace", None)):
        code, stdout, err = run(capsys, "analyze", traces_dir, "--baseline", mode, "--n-boot", "0")
        assert code == 0, err
        for trace in traces:
            got = TraceAnalysis.load(traces_dir / trace.item_id).baseline_jsd
            if want is None:
                assert got is None
            else:
                np.testing.assert_allclose(got, want)
        assert ("dataset, median over 2 traces" in stdout) == (want is not None)
    code, stdout, _ = run(capsys, "analyze", traces_dir, "--spike-layer-ratio", "0", "--n-boot", "0")
    assert code == 0 and "layer baseline: off" in stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{missing}"], "does not exist"),
        (["{run}", "--prob-rel", "2"], "prob_rel must be"),
        (["{run}", "--first-layer", "15"], "first_layer=15"),
        (["{run}", "--level", "1.5"], "--level"),
        (["{run}", "--config", "{bad_config}"], "unknown option 'spike_ratoi'"),
    ],
)
def test_user_errors_exit_2(synthetic_run: Path, tmp_path: Path, capsys, argv, message) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("spike_ratoi = 3\n")
    names = {"missing": tmp_path / "missing", "run": synthetic_run, "bad_config": bad}
    assert_user_error(run(capsys, "analyze", *[a.format(**names) for a in argv]), message)
    assert not list(synthetic_run.rglob("analysis.json"))


@pytest.mark.parametrize("command", ["analyze", "skip", "embed", "compare", "contrast"])
def test_help_lists_examples_and_detector_options(capsys, command: str) -> None:
    code, stdout, _ = run(capsys, command, "--help")
    assert code == 0 and "Examples:" in stdout and f"evolens {command} " in stdout
    assert "--spike-layer-ratio" in stdout and "--mutation-rule" in stdout and "Detector parameters" in stdout
    assert "--config" in stdout


def test_a_runs_items_keep_the_analysis_its_results_follow(tmp_path: Path, tiny_llava, capsys) -> None:
    import evolens
    from evolens.data import ImageFolder
    from tests.data.fixtures import write_folder

    root = write_folder(tmp_path / "imgs", n=3)
    run_dir = tmp_path / "run"
    evolens.run(
        tiny_llava,
        ImageFolder(root, "describe this image"),
        run_dir,
        **run_options(max_new_tokens=4, batch_size=3, device="cpu", progress=False),
    )
    before = {p: p.read_bytes() for p in sorted(run_dir.glob("items/*/analysis.json"))}
    assert len(before) == 3
    code, stdout, err = run(
        capsys, "analyze", run_dir, "--baseline", "dataset", "--spike-ratio", "9", "--n-boot", "0"
    )
    assert code == 0, err
    assert {p: p.read_bytes() for p in before} == before  # items/ still agree with results/
    assert "left the analysis.json of 3 run item(s)" in stdout and f"evolens eval {run_dir}" in stdout


def test_a_corrupt_manifest_is_named(synthetic_run: Path, capsys) -> None:
    manifest = synthetic_run / "items" / "a" / "manifest.json"
    manifest.write_text("{not json")
    assert_user_error(run(capsys, "analyze", synthetic_run), f"cannot read {manifest}")
