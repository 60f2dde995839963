"""``evolens patches``: a trace saved with --prompt-positions decoded at its image tokens (patches.json, figures,
the report's section), and the bad inputs: one line, exit code 2."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from evolens.metrics.patches import PATCHES_FILE, PatchLens
from evolens.trace import Trace
from tests.cli.helpers import assert_user_error, run
from tests.conftest import make_image


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory, tiny_llava_dir: Path) -> Path:
    """A trace of the tiny LLaVA saved by ``evolens trace --prompt-positions``."""
    root = tmp_path_factory.mktemp("patches_cli")
    image = root / "img.png"
    make_image(0).save(image)
    code = run_plain("trace", tiny_llava_dir, "-i", image, "-p", "describe this image", "--max-new-tokens", "2",
                     "--prompt-positions", "--device", "cpu", "-o", root / "trace")  # fmt: skip
    assert code == 0
    return root / "trace"


def run_plain(*argv: str | Path) -> int:
    from evolens.cli import main

    return main([str(a) for a in argv])


def test_patches_writes_the_result_and_figures(capsys, traced: Path, tmp_path: Path) -> None:
    code, out, err = run(capsys, "patches", traced, "--word", "image", "--layers", "1,4", "-f", "png",
                         "-o", tmp_path / "figs", "--device", "cpu")  # fmt: skip
    assert code == 0, err
    result = PatchLens.load(traced / PATCHES_FILE)
    assert result.words == ["image"] and result.grid.known and result.n_layers == 4
    assert "image tokens x 5 layers" in out and "P(image): highest mean" in out
    written = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert written == ["patches_layer1.png", "patches_layer4.png", "patches_word0.png"]
    # again without --overwrite: refused; the report shows the section
    assert_user_error(run(capsys, "patches", traced, "--device", "cpu"), "pass --overwrite")
    from evolens.report import ReportOptions, build_report

    assert '<section class="patches"' in build_report([traced], ReportOptions(summary_figures=False))


def _without_prompt_states(traced: Path, target: Path) -> Path:
    trace = Trace.load(traced)
    replace(trace, prompt_hidden_states=None).save(target)
    return target


def _as_family(traced: Path, target: Path, family: str) -> Path:
    trace = Trace.load(traced)
    trace.save(target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["model"]["family"] = family
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def test_bad_inputs(capsys, traced: Path, tmp_path: Path) -> None:
    plain = _without_prompt_states(traced, tmp_path / "plain")
    assert_user_error(run(capsys, "patches", plain, "--device", "cpu"), "saved without prompt positions")
    mllama = _as_family(traced, tmp_path / "mllama", "mllama")
    assert_user_error(run(capsys, "patches", mllama, "--device", "cpu"), "cross-attention")
    fresh = _as_family(traced, tmp_path / "fresh", "llava")
    assert_user_error(
        run(capsys, "patches", fresh, "--word", "zzqxv", "--device", "cpu"), "not one token of this model"
    )
    assert not (fresh / PATCHES_FILE).exists()
    assert_user_error(run(capsys, "patches", fresh, "--layers", "9", "--device", "cpu"), "layers 0-4")
    assert_user_error(run(capsys, "patches", tmp_path / "nowhere", "--device", "cpu"), "")
