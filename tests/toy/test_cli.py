"""``evolens toy ...`` and ``evolens demo`` on the shipped model: results written, bad input one line + exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evolens import toy
from tests.cli.helpers import assert_user_error, run


def test_path_prints_the_shipped_model(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "toy", "path")
    assert code == 0 and Path(out.strip()) == toy.model_dir()


def test_export_writes_a_readable_set_and_refuses_to_overwrite(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "toy", "export", "-o", tmp_path / "set", "--typical", "1", "--atypical", "2")
    assert code == 0, err
    assert (
        len(list((tmp_path / "set" / "image").iterdir())) == 3 and len(toy.ToyTestSet(tmp_path / "set")) == 24
    )
    assert_user_error(run(capsys, "toy", "export", "-o", tmp_path / "set"), "already exists")
    assert_user_error(
        run(capsys, "toy", "export", "-o", tmp_path / "x", "--typical", "0", "--atypical", "0"), "nothing"
    )


def test_bad_models_and_settings_are_user_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert_user_error(run(capsys, "toy", "eval", tmp_path), "not a saved toy model")
    assert_user_error(run(capsys, "toy", "eval", "--write-card"), "name a model")
    assert_user_error(
        run(capsys, "toy", "train", "-o", tmp_path / "m", "--recipe", "single", "--init-from", tmp_path),
        "not a saved toy model",
    )
    assert_user_error(
        run(capsys, "toy", "train", "-o", tmp_path / "m", "--init-from", tmp_path), "--recipe single"
    )
    assert_user_error(run(capsys, "toy", "train", "-o", tmp_path / "m", "--recipe", "best"), "--recipe")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "f").write_text("x")
    assert_user_error(run(capsys, "toy", "train", "-o", tmp_path / "taken"), "already exists")
    code, _, err = run(capsys, "toy", "train", "-o", tmp_path / "m", "--steps", "0")
    assert code == 2 and "Traceback" not in err


def test_demo_end_to_end(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_dir = tmp_path / "demo"
    code, out, err = run(capsys, "demo", "--out", out_dir, "--typical", "1", "--atypical", "1")
    assert code == 0, err
    summary = json.loads((out_dir / "run" / "results" / "summary.json").read_text())
    assert summary["done"] == 16 and summary["failed"] == 0
    assert (
        summary["evaluation"]["vqa"]["n"] == 8
        and summary["evaluation"]["amber_generative"]["n_responses"] == 2
    )
    assert any(p.endswith(".png") for p in summary["figures"])
    html = (out_dir / "report.html").read_text(encoding="utf-8")
    assert "what color is the" in html and "<script src=" not in html  # self-contained
    for expected in (
        "16 items traced now",
        "critical layer",
        "hallucinations found against the truth",
        "report:",
        "figures:",
    ):
        assert expected in out, out
    # a second demo resumes the finished run: nothing traced again, same summary
    code, out2, err = run(capsys, "demo", "--out", out_dir, "--typical", "1", "--atypical", "1")
    assert code == 0, err
    assert "0 items traced now, 16 already done before" in out2
    assert json.loads((out_dir / "run" / "results" / "summary.json").read_text()) == summary


def test_demo_directory_is_resumed_only_with_its_own_size(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    toy.export_testset(tmp_path / "demo" / "data", n_typical=1, n_atypical=1)
    assert_user_error(
        run(capsys, "demo", "--out", tmp_path / "demo"), "holds a demo of 1 typical + 1 atypical"
    )


def test_train_single_phase_writes_a_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    args = ["--recipe", "single", "--steps", "2", "--warmup-vision-steps", "1", "--batch-size", "4"]
    code, out, err = run(capsys, "toy", "train", "-o", tmp_path / "m", *args)
    assert code == 0, err
    assert (tmp_path / "m" / "model.safetensors").is_file() and "saved to" in out
