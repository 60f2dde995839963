"""The report of a run directory: analyses (critical layers, mutations, stages), evaluation labels, statistics,
skip and geometry results beside the traces, dataset figures — and every new string escaped."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import evolens
from evolens.analysis import Annotations, TraceAnalysis
from evolens.analysis.compare import DiffOp, HallucinationCount
from evolens.cli import main
from evolens.errors import SettingsError
from evolens.experiments.skip import SkipReport, SkipResult, VariantOutput
from evolens.geometry import ReducerSettings, single_image_map
from evolens.report import build_report
from evolens.report.escape import text
from evolens.report.figures import summary_figures
from evolens.report.items import skip_flags, stage_runs
from evolens.trace import Trace

from .helpers import EVIL, NASTY, data_block, script_blocks, synthetic_analysis


def _none(values: pd.Series) -> list:
    return [None if pd.isna(v) else v for v in values]


def test_a_run_report_shows_analyses_labels_and_statistics(analysed_run: Path) -> None:
    html = build_report(analysed_run)
    data = data_block(html)
    results = evolens.RunResults(analysed_run)
    assert [item["id"] for item in data["items"]] == ["1", "2"]  # run order; item 3 failed
    series = {s["key"]: s for s in data["series"]}
    assert data["default_series"] == "critical layer" and data["toggle"] == ["critical layer", "stages"]
    assert series["stages"]["kind"] == "stages" and series["critical layer"]["kind"] == "layer"
    assert {"critical layer (probability)", "critical layer (JSD)", "top-1 from layer"} <= set(series)
    tokens = results.tokens()
    for item in data["items"]:
        analysis = results.analysis(item["id"])
        assert analysis is not None
        payload = item["analysis"]
        assert payload["crit"] == [None if c < 0 else int(c) for c in analysis.critical_layer]
        assert payload["crit_jsd"] == [None if c < 0 else int(c) for c in analysis.critical_layer_jsd]
        assert [[m["layer"] for m in ms] for ms in payload["mutations"]] == analysis.mutation_layers
        assert item["values"]["critical layer"] == payload["crit"]
        assert item["flags"]["mutation layer"] == [int(bool(m)) for m in analysis.mutation_layers]
        for step, runs in enumerate(payload["stages"]):  # the runs expand to the analysis' stages
            expanded = [stage for stage, a, b in runs for _ in range(a, b + 1)]
            assert expanded == analysis.stages[:, step].tolist()
        rows = tokens[tokens["item"] == item["id"]]
        assert item["labels"] == {"label": _none(rows["label"]), "object": _none(rows["object"])}
        assert item["flags"]["hallucinated"] == [int(v == "hallucinated") for v in rows["label"]]
        assert item["flags"]["grounded"] == [int(v == "grounded") for v in rows["label"]]
    first = data["items"][0]["analysis"]
    assert first["crit"][:2] == [2, None] and first["mutations"][0][0]["layer"] == 4
    before, after = first["mutations"][0][0]["before"], first["mutations"][0][0]["after"]
    assert str(before) in data["items"][0]["vocab"] and str(after) in data["items"][0]["vocab"]
    # the item: tokens marked, analysis notes, evaluation and annotations
    item_0 = html[html.index('id="item-0"') : html.index('id="item-1"')]
    assert re.search(r'<span class="tok [^"]*flag-mut[^"]*" data-step="0"', item_0)
    assert not re.search(r'<span class="tok [^"]*flag-mut[^"]*" data-step="1"', item_0)
    assert "critical layer found for" in html and "the run&#x27;s layer baseline" in html
    assert '<section class="evaluation">' in html and "dataset annotations" in html
    # the run summary: evaluation lines, statistics, the analyses' summary, failures, links to items
    summary = results.summary()
    assert "Run · " in html
    for line in summary["evaluation_lines"]:
        assert text(line) in html
    # the scores as a table with the benchmarks' own names and units, not a dump of keys
    scores = html[html.index('<table class="scores">') :]
    scores = scores[: scores.index("</table>")]
    assert "<th>benchmark</th><th>score</th><th>value</th><th>unit</th>" in scores
    assert "<td>AMBER generative</td><td>CHAIR</td>" in scores and "<td>%</td>" in scores
    assert "cog_hits" not in scores and "n_flagged" not in scores
    stats = results.statistics()
    assert stats is not None and "AUROC of “a mutation layer was detected”" in html
    assert f"{stats.all_tokens.n_tokens}" in html and "Analysis summary" in html
    assert "Failed items" in html and "ImageNotFoundError" in html
    assert (
        '<a href="#item-0">1</a>' in html
        and '<a href="#item-1">2</a>' in html
        and "<th>judgement</th>" in html
    )
    expected_figures = summary_figures(tokens, stats.n_layers, stats)
    assert all(text(f.caption) in html for f in expected_figures)
    # the dataset figures come first in the run's section, before its tables
    from matplotlib.figure import Figure

    from evolens.report.runs import load_run
    from evolens.report.sections import run_section

    section = run_section(load_run(analysed_run), [("the dataset picture", Figure())])
    assert section.index("the dataset picture") < section.index("<h3>Evaluation</h3>")
    # the item list can be filtered by judgement; rows and item sections carry what the filters read
    assert 'id="item-filters"' in html and 'select data-filter="verdict"' in html
    assert re.search(r'<tr data-row="0" data-verdict="(hallucinated|correct|—)" data-task="amber-', html)
    assert re.search(r'<section class="item" id="item-0" data-item="0" data-verdict=', html)
    # hostile dataset strings (a prompt, an annotation word) are escaped everywhere
    assert EVIL not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert all(EVIL not in block for block in script_blocks(html))


def test_the_report_command_picks_up_a_run(analysed_run: Path, tmp_path: Path, tmp_path_factory) -> None:
    out = tmp_path / "run.html"
    assert main(["report", str(analysed_run), "-o", str(out)]) == 0
    html = out.read_text()
    # where the model and the images lay on this machine is not shown (the test's temporary folders hold both)
    assert str(tmp_path_factory.getbasetemp()) not in html
    data = data_block(html)
    assert data["items"][0]["analysis"] is not None and data["items"][0]["labels"] is not None
    assert "Run · " in html and "Analysis summary" in html


def test_analysis_extras_are_checked_and_files_beside_traces_are_read(tiny_run, tmp_path: Path) -> None:
    _, traces = tiny_run
    trace = traces[0]
    n = trace.n_steps
    analysis = synthetic_analysis(trace, [2] * n, [[3]] + [[]] * (n - 1))
    data = data_block(build_report([trace], extras={trace.item_id: {"analysis": analysis}}))
    assert data["items"][0]["analysis"]["crit"] == [2] * n and data["flags"] == ["mutation layer"]
    assert data["items"][0]["analysis"]["stages"][0] == [[0, 0, 1], [1, 2, 2], [2, 3, 4]]
    assert stage_runs(analysis)[1] == [[0, 0, 1], [1, 2, 4]]
    other = synthetic_analysis(traces[1], [1] * traces[1].n_steps, [[]] * traces[1].n_steps)
    other = TraceAnalysis.from_dict({**other.to_dict(), "n_layers": 5})
    with pytest.raises(SettingsError, match="belongs to another trace"):
        build_report([trace], extras={trace.item_id: {"analysis": other}})
    with pytest.raises(SettingsError, match="labels must be one of"):
        build_report([trace], extras={trace.item_id: {"labels": {"labels": ["wrong"] * n}}})
    with pytest.raises(SettingsError, match="has 1 labels"):
        build_report([trace], extras={trace.item_id: {"labels": {"labels": ["grounded"]}}})
    # Files beside a trace directory: a foreign analysis and a broken skip.json become notes, not failures.
    directory = tmp_path / "dog"
    trace.save(directory)
    other.save(directory)
    (directory / "skip.json").write_text("{not json")
    html = build_report(directory)
    assert "analysis.json was not used" in html and "skip.json could not be read" in html
    assert data_block(html)["items"][0]["analysis"] is None


def _skip_result(trace: Trace) -> SkipResult:
    annotations = Annotations.of(ground_truth=["cat"], hallucination=["dog", EVIL])
    tokens_a, tokens_b = [" a", " dog", " runs"], [" a", " cat", " runs"]

    def variant(name: str, skipped: tuple[int, ...], tokens: list[str], diff: list[DiffOp]) -> VariantOutput:
        from evolens.analysis import count_hallucinations

        text = "".join(tokens)
        return VariantOutput(name, skipped, text, tokens, [1, 2, 3], "max_new_tokens", 1.0, 3 if not diff else 1,
                             diff, count_hallucinations(text, annotations, original="".join(tokens_a)))  # fmt: skip

    diff = [DiffOp("equal", 0, 1, 0, 1, [" a"], [" a"]), DiffOp("replace", 1, 2, 1, 2, [" dog"], [" cat"]),
            DiffOp("equal", 2, 3, 2, 3, [" runs"], [" runs"])]  # fmt: skip
    return SkipResult(
        trace.item_id,
        trace.prompt,
        None,
        trace.n_layers,
        "hook",
        None,
        [variant("original", (), tokens_a, []), variant(EVIL, (3, 4), tokens_b, diff)],
        annotations,
    )


def test_skip_and_geometry_results_beside_a_trace(tiny_run, tmp_path: Path) -> None:
    _, traces = tiny_run
    trace = traces[0]
    result = _skip_result(trace)
    assert skip_flags(result) == [[None, "hallucinated", None], [None, "corrected", None]]
    assert isinstance(result.variants[1].hallucination, HallucinationCount)
    directory = tmp_path / "dog"
    trace.save(directory)
    SkipReport([result], [], {}).save(directory)
    fmap = single_image_map(trace, settings=ReducerSettings(method="pca"), critical_layer=2)
    fmap.save(directory / "geometry.json")
    html = build_report(directory)
    assert html.count("<h3>Layer skipping</h3>") == 1
    assert (
        '<span class="skip-hallucinated"> dog</span>' in html
        and '<span class="skip-corrected"> cat</span>' in html
    )
    assert "the paper&#x27;s Fig. 5 view of these outputs" in html and "<th>similarity</th>" in html
    assert html.count("<h3>Feature geometry</h3>") == 1 and "trustworthiness" in html
    assert html.count('src="data:image/svg+xml;base64,') >= 2  # the Fig. 5 table and the map, drawn as SVG
    assert EVIL not in html and text(EVIL) in html


def test_new_strings_are_escaped(tiny_run) -> None:
    _, traces = tiny_run
    trace = traces[0]
    n = trace.n_steps
    extras = {
        trace.item_id: {
            "labels": {"labels": ["hallucinated"] + [None] * (n - 1), "objects": [EVIL] + [None] * (n - 1)},
            "evaluation": {
                "task": EVIL,
                "hallucinated": True,
                "answer": NASTY[3],
                "truth": NASTY[5],
                "mentions": [{"word": EVIL, "object": NASTY[0], "label": "hallucinated"}],
            },
            "annotations": {EVIL: [NASTY[5], EVIL], "note": NASTY[3]},
            "skip": _skip_result(trace),
        }
    }
    html = build_report([trace], extras=extras)
    assert EVIL not in html and "<img src=x" not in html and 'onmouseover="alert' not in html
    assert html.count(text(EVIL)) >= 4  # evaluation word, task, annotation name and value, skip variant
    blocks = script_blocks(html)
    assert len(blocks) == 2 and "</script" not in blocks[0].lower() and "<!--" not in blocks[0]
    item = data_block(html)["items"][0]
    assert item["labels"]["object"][0] == EVIL and item["flags"]["hallucinated"][0] == 1


def test_summary_figures_known_answers() -> None:
    tokens = pd.DataFrame(
        {
            "item": ["a"] * 6,
            "label": ["hallucinated", "grounded", "grounded", None, "hallucinated", None],
            "first": [True, True, True, False, True, False],
            "is_eos": [False] * 5 + [True],
            "critical_layer": [2, 2, 3, None, 1, 4],
            "critical_layer_prob": [1, 2, 3, None, None, 4],
            "critical_layer_jsd": [2, 2, 3, 1, 1, 4],
            "mutation_layers": [[3, 4], [], [4], [], [2], [4]],
        }
    )
    figures = summary_figures(tokens, 4)
    assert [f.name for f in figures] == ["critical_layers", "mutation_layers", "hallucinated_vs_grounded"]
    critical = figures[0].figure.axes[0]
    # the EOS token is left out: stage critical layers 2, 2, 3, 1 (one without)
    assert [p.get_height() for p in critical.containers[0]] == [0, 1, 2, 1, 0]
    mutation = figures[1].figure.axes[0]
    assert [p.get_height() for p in mutation.containers[0]] == [
        0,
        0,
        1,
        1,
        1,
    ]  # first mutation layers 3, 4, 2
    assert [p.get_height() for p in mutation.containers[1]] == [0, 0, 1, 1, 2]  # every one: 3, 4, 4, 2
    assert "5 generated tokens (4 with one)" in figures[0].caption and "3 of 5 tokens" in figures[1].caption
    no_labels = tokens.assign(label=None)
    assert [f.name for f in summary_figures(no_labels, 4)] == ["critical_layers", "mutation_layers"]
    no_layers = tokens.assign(critical_layer=None, mutation_layers=[[]] * 6)
    assert summary_figures(no_layers, 4) == []


def test_a_copied_run_item_keeps_its_run_and_duplicates_are_dropped(
    analysed_run: Path, tmp_path: Path
) -> None:
    item_dir = analysed_run / "items" / "1"
    data = data_block(build_report([analysed_run, item_dir]))
    assert [i["id"] for i in data["items"]] == ["1", "2"]
    alone = data_block(build_report(item_dir))  # an item directory on its own still finds its run's labels
    assert alone["items"][0]["labels"] is not None
    copy = tmp_path / "copy"
    shutil.copytree(item_dir, copy)
    outside = data_block(build_report(copy))  # outside its run: the analysis beside it, no labels
    assert outside["items"][0]["labels"] is None and outside["items"][0]["analysis"] is not None
    assert np.array_equal(
        np.array(outside["items"][0]["analysis"]["crit"], dtype=object),
        np.array(data["items"][0]["analysis"]["crit"], dtype=object),
    )
    assert json.loads((copy / "analysis.json").read_text())["kind"] == "evolens.trace_analysis"
