"""``--compile`` on ``evolens trace`` and ``evolens run`` (issue 14): the compiled decoding path from the command
line gives the eager path's trace."""

from __future__ import annotations

from pathlib import Path

import torch

import evolens
from evolens.capture.compiled import CompileOptions
from evolens.cli.options import build_trace_options
from tests.cli.helpers import run


def test_the_flag_builds_the_default_compile_options() -> None:
    assert build_trace_options(compile=True).compile == CompileOptions()
    assert build_trace_options(compile=False).compile is None
    assert build_trace_options().compile is None


def test_trace_with_compile_equals_the_eager_trace(tmp_path: Path, capsys) -> None:
    toy_set = evolens.toy.export_testset(tmp_path / "set", n_typical=1, n_atypical=0)
    image = next((toy_set / "image").glob("*.png"))
    base = [
        "trace",
        evolens.toy.model_dir(),
        "-i",
        image,
        "-p",
        "describe the image .",
        "--max-new-tokens",
        "12",
    ]
    code, _, err = run(capsys, *base, "-o", tmp_path / "eager")
    assert code == 0, err
    code, _, err = run(capsys, *base, "-o", tmp_path / "compiled", "--compile")
    assert code == 0, err
    eager, compiled = (evolens.Trace.load(tmp_path / name) for name in ("eager", "compiled"))
    assert compiled.generated_ids.tolist() == eager.generated_ids.tolist()
    torch.testing.assert_close(compiled.token_probs(), eager.token_probs(), atol=1e-4, rtol=1e-4)
