"""``detect_run`` end to end on a small labelled run of the shipped toy LVLM, and the bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import evolens
from evolens.data import ImageFolder
from evolens.errors import SettingsError, StoreError
from evolens.hallucination.detect_results import ALL_ERRORS, DETECT_JSON, DetectOptions, DetectResult
from evolens.report import build_report
from evolens.runs.detect import FIGURE_NAMES, OTHER, PRIOR_DRIVEN, detect_run, error_groups
from tests.data.fixtures import write_folder
from tests.run_options import run_options

OPTIONS = DetectOptions(n_bootstrap=100, n_folds=2)


@pytest.fixture(scope="module")
def detected(toy_detect_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DetectResult]:
    run = tmp_path_factory.mktemp("detected") / "run"
    shutil.copytree(toy_detect_run, run)
    return run, detect_run(run, OPTIONS)


def test_detect_run_writes_the_result_and_its_figures(detected: tuple[Path, DetectResult]) -> None:
    run, result = detected
    assert DetectResult.load(run / "results" / DETECT_JSON) == result
    for name in FIGURE_NAMES:
        assert (run / "results" / "figures" / f"{name}.png").stat().st_size > 0
        assert (run / "results" / "figures" / f"{name}.svg").is_file()
    table = result.table(ALL_ERRORS)
    assert table is not None and table.n_hallucinated >= 2 and table.n_grounded > table.n_hallucinated
    assert [s.name for s in table.scores][-3:] == ["metric_probe", "hidden_probe_last", "hidden_probe_best"]
    assert result.hidden_curve is not None and result.hidden_curve.layers == list(
        range(9)
    )  # the toy's 8 layers
    # one owner per number: "mutation detected" scores as the run's layer statistics do
    statistics = evolens.RunResults(run).statistics()
    mutation = table.score("mutation_detected")
    assert statistics is not None and mutation is not None
    assert mutation.auroc.value == pytest.approx(statistics.auroc.value)
    assert table.n_hallucinated == statistics.hallucinated.n_tokens


def test_prior_driven_errors_get_a_table_of_their_own(detected: tuple[Path, DetectResult]) -> None:
    run, result = detected
    evaluation = json.loads((run / "results" / "evaluation.json").read_text())
    priors = {r["item_id"]: r["annotations"].get("prior") for r in map(json.loads, (run / "dataset" / "items.jsonl")
                                                                        .read_text().splitlines())}  # fmt: skip
    answered_prior = sum(
        bool(i["hallucinated"]) and i["answer"] is not None and i["answer"] == priors[i["item_id"]]
        for i in evaluation["items"]
    )
    assert result.tables[0].name == ALL_ERRORS
    groups = {t.name: t for t in result.tables[1:]}
    assert list(groups) == [PRIOR_DRIVEN, OTHER]
    assert groups[PRIOR_DRIVEN].n_hallucinated == answered_prior > 0  # one judged answer word per question
    all_errors = result.table()
    assert all_errors is not None
    assert sum(t.n_hallucinated for t in groups.values()) == all_errors.n_hallucinated
    assert all(t.n_grounded == all_errors.n_grounded for t in groups.values())


def test_error_groups_from_answers_and_priors() -> None:
    selected = pd.DataFrame({"item": ["a", "b", "c", "d"], "label": ["hallucinated", "hallucinated", "grounded",
                                                                     "hallucinated"]})  # fmt: skip
    answers = {"a": "Red", "b": "blue", "c": "green", "d": "no"}
    annotations = {"a": {"prior": "red"}, "b": {"prior": "red"}, "c": {"prior": "red"}, "d": {}}
    groups = error_groups(selected, answers, annotations)
    assert groups is not None and groups.tolist() == [PRIOR_DRIVEN, OTHER, None, OTHER]
    assert error_groups(selected, answers, {"a": {}}) is None


def test_the_report_shows_the_detectors(detected: tuple[Path, DetectResult]) -> None:
    run, result = detected
    html = build_report(run)
    assert "<h3>Hallucination detectors</h3>" in html and "hidden-state probe per layer" in html
    mutation = result.table().score("mutation_detected")  # type: ignore[union-attr]
    assert mutation is not None and f"{mutation.auroc.value:.3f} [" in html
    assert html.count("<figcaption>ROC curves,") == len(result.tables)


def test_a_run_saved_without_hidden_states_is_refused_for_the_hidden_probe(
    detected: tuple[Path, DetectResult], tmp_path: Path
) -> None:
    run, _ = detected
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("detect*"))
    manifest = json.loads((copy / "run.json").read_text())
    manifest["config"]["save"]["hidden_states"] = False
    (copy / "run.json").write_text(json.dumps(manifest))
    with pytest.raises(SettingsError, match="without hidden states"):
        detect_run(copy, OPTIONS)
    assert not (copy / "results" / DETECT_JSON).exists()
    result = detect_run(copy, DetectOptions(n_bootstrap=0, n_folds=2, hidden_probe=False), figures=False)
    assert result.hidden_curve is None and not (copy / "results" / "figures" / "detect_roc.png").exists()
    with pytest.raises(SettingsError, match="too few hallucinated tokens"):
        detect_run(copy, DetectOptions(n_bootstrap=0, n_folds=50, hidden_probe=False))


def test_an_item_that_lost_its_hidden_states_is_named(
    detected: tuple[Path, DetectResult], tmp_path: Path
) -> None:
    from safetensors.torch import load_file, save_file

    run, _ = detected
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("detect*"))
    for tensors in (copy / "items").glob("*/tensors.safetensors"):  # run.json still says they were saved
        save_file({k: v for k, v in load_file(tensors).items() if k != "hidden_states"}, tensors)
    with pytest.raises(StoreError, match="holds no hidden states"):
        detect_run(copy, OPTIONS)


def test_a_run_without_labels_is_refused(tmp_path: Path, tiny_llava) -> None:
    data = write_folder(tmp_path / "imgs", n=2)
    evolens.run(tiny_llava, ImageFolder(data, "describe"), tmp_path / "run",
                **run_options(max_new_tokens=2, device="cpu", progress=False, figures=False))  # fmt: skip
    with pytest.raises(SettingsError, match="no token is labelled"):
        detect_run(tmp_path / "run", OPTIONS)
    assert np.all([not p.name.startswith("detect") for p in (tmp_path / "run" / "results").iterdir()])
