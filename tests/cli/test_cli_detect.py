"""``evolens detect``: the table, the files, and bad inputs as one line with exit code 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from evolens.hallucination.detect_results import DETECT_JSON, DetectResult
from tests.cli.helpers import assert_user_error, run


@pytest.fixture
def toy_copy(toy_detect_run: Path, tmp_path: Path) -> Path:
    shutil.copytree(toy_detect_run, tmp_path / "run", ignore=shutil.ignore_patterns("detect*"))
    return tmp_path / "run"


def test_detect_prints_the_tables_and_writes_the_result(
    toy_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "detect", toy_copy, "--folds", "2", "--bootstrap", "20", "--no-figures")
    assert code == 0, err
    result = DetectResult.load(toy_copy / "results" / DETECT_JSON)
    assert result.options.n_folds == 2 and result.options.n_bootstrap == 20
    for table in result.tables:
        assert f"{table.name}: {table.n_hallucinated} hallucinated vs {table.n_grounded} grounded" in out
    assert "hidden-state probe per layer" in out and "final_margin" in out and "metric_probe" in out
    assert not (toy_copy / "results" / "figures" / "detect_roc.png").exists()


def test_bad_inputs_get_one_line_and_exit_2(toy_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_user_error(
        run(capsys, "detect", toy_copy, "--folds", "40", "--bootstrap", "0"), "too few hallucinated"
    )
    manifest = json.loads((toy_copy / "run.json").read_text())
    manifest["config"]["save"]["hidden_states"] = False
    (toy_copy / "run.json").write_text(json.dumps(manifest))
    assert_user_error(run(capsys, "detect", toy_copy, "--bootstrap", "0"), "--no-hidden-probe")
    assert_user_error(run(capsys, "detect", toy_copy.parent / "nothing"), "not an evolens run directory")
    assert not (toy_copy / "results" / DETECT_JSON).exists()
    code, _, err = run(capsys, "detect", toy_copy, "--no-probes", "--bootstrap", "0", "--no-figures")
    assert code == 0, err
    assert [s.family for s in DetectResult.load(toy_copy / "results" / DETECT_JSON).signals].count(
        "probe"
    ) == 0
