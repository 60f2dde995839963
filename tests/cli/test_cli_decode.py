"""``evolens decode`` on the command line: the tables it prints and writes, and one line with exit code 2 for bad
input (before any model loads)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evolens import toy
from evolens.hallucination.decode_results import DecodeResult
from tests.cli.helpers import assert_user_error, run


@pytest.fixture(scope="module")
def toy_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return toy.export_testset(tmp_path_factory.mktemp("toyset") / "set", n_typical=2, n_atypical=2)


def _argv(model: Path, data: Path, out: Path, strategies: str, *more: str) -> list[str | Path]:
    return [
        "decode", model, "-d", "toy", "-r", data, "-o", out, "--strategies", strategies, "--max-new-tokens", "2",
        "--limit", "8", "--device", "cpu", "--bootstrap", "50", "--cost-rounds", "1", "--no-reports", "--no-figures", *more,
    ]  # fmt: skip


def test_decode_prints_and_writes_the_tables(
    capsys: pytest.CaptureFixture[str], tiny_llava_dir: Path, toy_set: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cmp"
    code, stdout, err = run(capsys, *_argv(tiny_llava_dir, toy_set, out, "mutation-skip"))
    assert code == 0, err
    assert (
        "Mitigation table" in stdout and "Benchmark scores" in stdout and "AMBER generative: CHAIR" in stdout
    )
    assert "mutation-skip" in stdout and "time per token" in stdout
    result = DecodeResult.load(out)
    assert [s.name for s in result.strategies] == ["greedy", "mutation-skip"]  # greedy added, first
    assert result.strategy("mutation-skip").config["decoding"]["name"] == "mutation-skip"
    assert result.strategy("mutation-skip").paired is not None and result.dataset["n_items"] == 8
    assert (
        (out / "report.html").is_file() and not (out / "reports").exists() and not (out / "figures").exists()
    )
    stored = json.loads((out / "decode-run.json").read_text())["data"]
    assert [s["name"] for s in stored["strategies"]] == ["greedy", "mutation-skip"]
    # the same command again reuses both runs and writes the same comparison
    before = result.to_dict()
    code, _, err = run(capsys, *_argv(tiny_llava_dir, toy_set, out, "greedy,mutation-skip"))
    assert code == 0, err
    assert DecodeResult.load(out).to_dict() == before
    # other settings into the same directory: refused, nothing changed
    assert_user_error(
        run(capsys, *_argv(tiny_llava_dir, toy_set, out, "greedy,dola")),
        "holds a decoding comparison with other",
    )
    assert_user_error(
        run(capsys, *_argv(tiny_llava_dir, toy_set, out, "mutation-skip", "--max-new-tokens", "3")),
        "max_new_tokens",
    )
    assert DecodeResult.load(out).to_dict() == before


@pytest.mark.parametrize(
    ("strategies", "message"),
    [
        ("greedy", "besides the baseline"),
        ("greedy,nonsense", "unknown decoding strategy 'nonsense'"),
        ("dola,dola", "named twice"),
        ("", "no decoding strategy"),
    ],
)
def test_bad_strategies_exit_2(
    capsys: pytest.CaptureFixture[str], toy_set: Path, tmp_path: Path, strategies: str, message: str
) -> None:
    out = tmp_path / "cmp"
    assert_user_error(run(capsys, *_argv(tmp_path / "no-model", toy_set, out, strategies)), message)
    assert not out.exists()


def test_bad_parameter_and_directory_exit_2(
    capsys: pytest.CaptureFixture[str], toy_set: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cmp"
    model = tmp_path / "no-model"
    assert_user_error(
        run(capsys, *_argv(model, toy_set, out, "dola", "--decoding-param", "vcd.alpha=1")), "not among"
    )
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("keep")
    assert_user_error(
        run(capsys, *_argv(model, toy_set, tmp_path / "busy", "dola")), "holds no decoding comparison"
    )
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["mine.txt"]
    assert_user_error(run(capsys, *_argv(model, toy_set, out, "dola", "--level", "1.5")), "level must lie in")
    assert not out.exists()
