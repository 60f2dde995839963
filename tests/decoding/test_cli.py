"""``--decoding`` on ``evolens trace`` and ``evolens run`` (issue 18): recorded, resumable, bad input exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import evolens
from tests.cli.helpers import assert_user_error, run


@pytest.fixture(scope="module")
def toy_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return evolens.toy.export_testset(tmp_path_factory.mktemp("toyset") / "set", n_typical=1, n_atypical=1)


def test_trace_with_a_strategy_records_it(toy_set: Path, tmp_path: Path, capsys) -> None:
    image = toy_set / "image" / "toy_0002.png"
    code, stdout, err = run(
        capsys, "trace", evolens.toy.model_dir(), "-i", image, "-p", "what color is the heart ?",
        "-o", tmp_path / "t", "--decoding", "dola", "--decoding-param", "dola.layers=low", "--max-new-tokens", "3",
    )  # fmt: skip
    assert code == 0, err
    assert "decoding dola:" in stdout
    assert evolens.Trace.load(tmp_path / "t").decoding["strategy"] == {
        "name": "dola",
        "layers": "low",
        "beta": 0.1,
    }


def test_a_run_with_a_strategy_records_it_and_refuses_to_resume_with_another(
    toy_set: Path, tmp_path: Path, capsys
) -> None:
    base = [
        "run", evolens.toy.model_dir(), "-d", "toy", "-r", toy_set, "-o", tmp_path / "run", "--limit", "3",
        "--max-new-tokens", "3", "--no-figures", "--device", "cpu",
    ]  # fmt: skip
    code, _, err = run(capsys, *base, "--decoding", "icd")
    assert code == 0, err
    config = json.loads((tmp_path / "run" / "run.json").read_text())["config"]["trace"]
    assert config["decoding"]["name"] == "icd"
    code, _, err = run(capsys, *base, "--decoding", "vcd")
    assert code == 2 and "decoding" in err, err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--decoding", "beam"], "unknown decoding strategy 'beam'"),
        (["--decoding", "dola,vcd"], "takes one strategy"),
        (["--decoding-param", "dola.layers=low"], "needs --decoding"),
        (["--decoding", "vcd", "--decoding-param", "vcd.noise_step=5000"], "noise_step"),
    ],
)
def test_bad_strategies_are_one_line_and_exit_2(
    extra: list[str], message: str, tmp_path: Path, capsys
) -> None:
    argv = ["trace", "no-model", "-p", "what ?", "-o", tmp_path / "t", *extra]
    assert_user_error(run(capsys, *argv), message)
    assert not (tmp_path / "t").exists()
