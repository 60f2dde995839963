"""An output path that cannot be written is a user error: one line, exit code 2, and — for the commands that run a
model or read many traces — found before any work (the model named here does not even exist)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.helpers import assert_user_error, copy_traces, run


@pytest.fixture
def blocker(tmp_path: Path) -> Path:
    """A file where the commands are asked to create a directory."""
    path = tmp_path / "picture.png"
    path.write_bytes(b"")
    return path


def test_model_commands_check_the_output_before_loading(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, blocker: Path
) -> None:
    missing_model = tmp_path / "no-such-model"
    for argv in (
        ["skip", missing_model, "-p", "describe", "-o", blocker / "skip"],
        ["compare", missing_model, "-i", blocker, "-p", "describe", "-o", blocker / "cmp"],
        ["run", missing_model, "-d", "folder", "-r", tmp_path, "-p", "describe", "-o", blocker / "run"],
    ):
        assert_user_error(run(capsys, *argv), "picture.png is a file, not a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["picture.png"]


def test_trace_commands_refuse_unwritable_outputs(
    capsys: pytest.CaptureFixture[str], tiny_run: tuple[Path, list], tmp_path: Path, blocker: Path
) -> None:
    traces = copy_traces(tiny_run[0], tmp_path / "copy")
    one = next(traces.iterdir())
    for argv in (
        ["analyze", traces, "--summary", blocker / "summary.json"],
        ["analyze", traces, "--figure", blocker / "layers"],
        ["report", traces, "-o", blocker / "report.html"],
        ["report", traces, "-o", tmp_path],
        ["plot", "jsd", one, "-o", blocker / "jsd.png"],
        ["contrast", one, "--step", "1", "-o", blocker / "c"],
        ["embed", one, "--reducer", "pca", "-o", blocker / "e"],
        ["eval", tmp_path, "--json", blocker / "e.json"],
    ):
        result = run(capsys, *argv)
        code, _, err = result
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (argv, err)
        assert "picture.png" in err or "is a directory" in err, (argv, err)
    assert blocker.read_bytes() == b""
    assert not any(p.name.endswith(("report.html", "jsd.png")) for p in tmp_path.rglob("*"))
