"""``evolens compress`` from the command line (issue 18), on a tiny model and a tiny exported toy set."""

from __future__ import annotations

from pathlib import Path

import pytest

from evolens import toy
from evolens.runs.compress import CompressResult
from tests.cli.helpers import assert_user_error, run

FAST = ("--max-new-tokens", "2", "--batch-size", "4", "--random-draws", "1")


@pytest.fixture(scope="module")
def toy_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return toy.export_testset(tmp_path_factory.mktemp("toy") / "set", n_typical=2, n_atypical=2)


def test_compress_writes_the_curve_and_its_figure_and_resumes(
    tiny_run, toy_set: Path, tmp_path: Path, capsys
) -> None:
    model, out = tiny_run[0] / "model", tmp_path / "c"
    args = ("compress", model, "-d", "toy", "-r", toy_set, "--stage", "2-3", "--k", "1-2", *FAST, "-o", out)
    code, stdout, err = run(capsys, *args)
    assert code == 0, err
    result = CompressResult.load(out / "compress.json")
    assert [(p.rule, p.k) for p in result.curve] == [
        ("full", 0), ("stage", 1), ("stage", 2), ("random", 1), ("random", 2), ("last", 1), ("last", 2)
    ]  # fmt: skip
    assert result.method == "rebuild" and result.settings["generation"]["max_new_tokens"] == 2
    assert len(list((out / "cells").iterdir())) == 8
    assert (out / "compress.png").read_bytes().startswith(b"\x89PNG") and (out / "compress.svg").is_file()
    assert (
        "stabilisation stage: decoder layers [2, 3] (given)" in stdout and "quality against speed" in stdout
    )
    code, stdout, err = run(capsys, *args)  # everything done: judged again, nothing generated
    assert code == 0, err
    assert "resuming" in stdout and "8 of 8 cells already done" in stdout
    assert_user_error(
        run(capsys, *args[:-2], "--draw-seed", "3", "-o", out),
        "holds a compress run with other settings (seed differ)",
    )


def test_bad_input_exits_2_with_one_line(tiny_run, toy_set: Path, tmp_path: Path, capsys) -> None:
    model = tiny_run[0] / "model"
    base = ("compress", model, "-d", "toy", "-r", toy_set, *FAST)
    assert_user_error(
        run(capsys, *base, "--stage", "0-2", "-o", tmp_path / "a"), "--stage 0-2 is out of range"
    )
    assert_user_error(run(capsys, *base, "--stage", "1-4", "-o", tmp_path / "a"), "every one of the 4")
    assert_user_error(
        run(capsys, *base, "--stage", "2-3", "--k", "3", "-o", tmp_path / "b"), "--k 3 is out of range"
    )
    assert_user_error(
        run(capsys, *base, "--stage", "2-3", "--k", "x", "-o", tmp_path / "b"), "--k: cannot read"
    )
    assert_user_error(run(capsys, *base, "--measure", "speed", "-o", tmp_path / "c"), "unknown measure")
    assert_user_error(
        run(capsys, *base, "--protocol", "mine", "-o", tmp_path / "c"), "unknown benchmark protocol"
    )
    code, _, err = run(capsys, *base, "--method", "prune", "-o", tmp_path / "d")
    assert code == 2 and "prune" in err
    assert not any(p.exists() for p in (tmp_path / "a", tmp_path / "b", tmp_path / "c", tmp_path / "d"))
