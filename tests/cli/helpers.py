"""Running the command line in-process, and private copies of the shared tiny run (commands write into it)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from evolens.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    """``(exit code, stdout, stderr)`` of ``evolens ARGV``."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_user_error(result: tuple[int, str, str], message: str) -> None:
    """Exit code 2 with one line on stderr that contains ``message``, no traceback."""
    code, _, err = result
    assert code == 2, err
    assert err.startswith("error:") and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def copy_traces(root: Path, target: Path) -> Path:
    """A private copy of the tiny run's traces (``target/traces/<item>``)."""
    shutil.copytree(root / "traces", target / "traces")
    return target / "traces"
