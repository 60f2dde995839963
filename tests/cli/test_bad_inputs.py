"""A table of bad inputs through the command line: exit code 2, one line on stderr, no traceback, nothing left.

Each case prepares its inputs in a folder of its own; what the command leaves there afterwards must be exactly
what the case prepared (no half-written run, trace or figure).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli.helpers import run
from tests.conftest import make_image
from tests.data.fixtures import write_folder

Case = Callable[[Path, Path, Path], list[str | Path]]  # (folder, tiny model, a saved trace) -> argv


def _image(folder: Path, name: str = "img.png") -> Path:
    path = folder / name
    make_image(0).save(path, format="PNG")
    return path


def _trace(model: Path, image: Path, out: Path | str) -> list[str | Path]:
    return ["trace", model, "-i", image, "-p", "describe this image", "-o", out, "--max-new-tokens", "2",
            "--device", "cpu"]  # fmt: skip


def huge_image(folder: Path, model: Path, trace: Path) -> list[str | Path]:
    from PIL import Image

    Image.new("L", (10000, 9000)).save(folder / "huge.png")
    return _trace(model, folder / "huge.png", folder / "out")


def empty_image(folder: Path, model: Path, trace: Path) -> list[str | Path]:
    (folder / "empty.png").write_bytes(b"")
    return _trace(model, folder / "empty.png", folder / "out")


def output_not_utf8(folder: Path, model: Path, trace: Path) -> list[str | Path]:
    return _trace(model, _image(folder), folder / os.fsdecode(b"out\xff"))


def truncated_weights(folder: Path, model: Path, trace: Path) -> list[str | Path]:
    broken = folder / "model"
    shutil.copytree(model, broken)
    weights = next(broken.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:1000])
    return _trace(broken, _image(folder), folder / "out")


def broken_remote_code(folder: Path, model: Path, trace: Path) -> list[str | Path]:
    custom = folder / "custom"
    custom.mkdir()
    auto_map = {"AutoConfig": "custom_code.CustomConfig"}
    (custom / "config.json").write_text(json.dumps({"model_type": "bad_lvlm", "auto_map": auto_map}))
    (custom / "custom_code.py").write_text("def broken(:\n")
    return [*_trace(custom, _image(folder), folder / "out"), "--trust-remote-code"]


def folder_with_a_name_that_is_not_utf8(folder: Path, model: Path, trace: Path) -> list[str | Path]:
    root = write_folder(folder / "imgs", n=2)
    make_image(1).save(root / os.fsdecode(b"caf\xff.png"), format="PNG")
    return ["run", model, "-d", "folder", "-r", root, "-p", "describe this image", "-o", folder / "run",
            "--max-new-tokens", "2", "--device", "cpu"]  # fmt: skip


def vqa_without_answer(folder: Path, model: Path, trace: Path) -> list[str | Path]:
    root = write_folder(folder / "imgs", n=2)
    jsonl = folder / "vqa.jsonl"
    jsonl.write_text(json.dumps({"image": "a/img0.png", "prompt": "what color ?", "task": "vqa"}) + "\n")
    return ["run", model, "-d", "folder", "-r", root, "--jsonl", jsonl, "-o", folder / "run",
            "--max-new-tokens", "2", "--device", "cpu"]  # fmt: skip


def _damaged_trace(folder: Path, trace: Path) -> Path:
    copy = folder / "trace"
    shutil.copytree(trace, copy)
    tensors = copy / "tensors.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:50])
    return copy


def analyze_truncated_trace(folder: Path, model: Path, trace: Path) -> list[str | Path]:
    return ["analyze", _damaged_trace(folder, trace), "--no-write"]


def report_truncated_trace(folder: Path, model: Path, trace: Path) -> list[str | Path]:
    return ["report", _damaged_trace(folder, trace), "-o", folder / "report.html"]


def embed_truncated_trace(folder: Path, model: Path, trace: Path) -> list[str | Path]:
    return ["embed", _damaged_trace(folder, trace), "-o", folder / "map"]


def corrupt_manifest(folder: Path, model: Path, trace: Path) -> list[str | Path]:
    copy = folder / "trace"
    shutil.copytree(trace, copy)
    (copy / "manifest.json").write_text("{")
    return ["analyze", copy, "--no-write"]


def config_of_the_wrong_type(folder: Path, model: Path, trace: Path) -> list[str | Path]:
    config = folder / "c.toml"
    config.write_text('max_new_tokens = "ten"\n')
    return [*_trace(model, _image(folder), folder / "out"), "--config", config]


CASES: dict[str, tuple[Case, str]] = {
    "huge image": (huge_image, "pixels: resize it"),
    "empty image": (empty_image, "image file is empty"),
    "output path not UTF-8": (output_not_utf8, "is not valid UTF-8"),
    "truncated weights": (truncated_weights, "is truncated"),
    "broken remote code": (broken_remote_code, "failed (trust_remote_code)"),
    "image name not UTF-8 in a folder run": (folder_with_a_name_that_is_not_utf8, "is not valid Unicode"),
    "vqa item without an answer": (vqa_without_answer, "needs a one-word 'answer'"),
    "analyze a truncated trace": (analyze_truncated_trace, "tensors.safetensors (corrupt or truncated?)"),
    "report a truncated trace": (report_truncated_trace, "tensors.safetensors (corrupt or truncated?)"),
    "embed a truncated trace": (embed_truncated_trace, "tensors.safetensors (corrupt or truncated?)"),
    "corrupt manifest": (corrupt_manifest, "manifest.json"),
    "config value of the wrong type": (config_of_the_wrong_type, "max_new_tokens = 'ten'"),
}


@pytest.fixture(scope="module")
def saved_trace(tiny_llava, tmp_path_factory: pytest.TempPathFactory) -> Path:
    trace = tiny_llava.trace(make_image(3), "describe this image", max_new_tokens=3)
    return trace.save(tmp_path_factory.mktemp("trace") / "t")


def _tree(folder: Path) -> list[Path]:
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


@pytest.mark.parametrize("name", CASES)
def test_bad_input_gets_one_line_and_exit_2_and_leaves_nothing(
    name: str, tmp_path: Path, tiny_llava_dir: Path, saved_trace: Path, capsys
) -> None:
    prepare, message = CASES[name]
    argv = prepare(tmp_path, tiny_llava_dir, saved_trace)
    before = _tree(tmp_path)
    code, _, err = run(capsys, *argv)
    assert code == 2, err
    assert "Traceback" not in err and err.startswith("error: "), err
    assert len(err.strip().splitlines()) == 1, err
    assert message in err, err
    assert _tree(tmp_path) == before, "the command left files behind"
