"""A new benchmark is one reader class and one ``register_reader`` line: ``evolens run`` reads it, its options
reach it through ``--data-option KEY=VALUE``, and a key it does not declare is one line and exit code 2."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from evolens.data import DataItem, Dataset, ReaderOption, register_reader, unregister_reader
from evolens.data.items import iter_json_lines, require_dir, resolve_inside
from evolens.errors import SettingsError
from tests.cli.helpers import assert_user_error, run
from tests.data.fixtures import write_folder, write_image


class QuestionLines(Dataset):
    """A tiny benchmark: ``ROOT/FILE`` holds one ``{"id", "image", "question", "answer"}`` per line."""

    name = "question-lines"
    options = (
        ReaderOption("file", Path, "the question file in ROOT", default="questions.jsonl"),
        ReaderOption("suffix", str, "appended to every question", default=""),
    )
    evaluators = ("vqa",)
    annotation_keys = MappingProxyType({"task": "'vqa'", "answer": "the one-word answer"})

    def __init__(self, root: str | Path, file: str | Path = "questions.jsonl", suffix: str = "") -> None:
        self.root = require_dir(Path(root), "question-lines folder")
        self.file, self.suffix = self.root / file, suffix

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "root": str(self.root), "file": str(self.file), "suffix": self.suffix}

    def __iter__(self) -> Iterator[DataItem]:
        for number, line in iter_json_lines(self.file, "question file"):
            image = resolve_inside(self.root, line["image"], where=f"{self.file}, line {number}")
            annotations = {"task": "vqa", "answer": line["answer"]}
            yield DataItem(str(line["id"]), image, line["question"] + self.suffix, annotations, line["image"])

    def __len__(self) -> int:
        return sum(1 for _ in iter_json_lines(self.file, "question file"))


@pytest.fixture
def question_lines(tmp_path: Path) -> Iterator[Path]:
    """The reader registered for one test, and a dataset of three questions for it."""
    register_reader(QuestionLines)
    root = tmp_path / "bench"
    lines = [
        {"id": f"q{i}", "image": f"img{i}.png", "question": "What colour is it?", "answer": "red"}
        for i in range(3)
    ]
    for i in range(3):
        write_image(root / f"img{i}.png", seed=i)
    (root / "val.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    try:
        yield root
    finally:
        unregister_reader(QuestionLines.name)


def test_a_reader_registered_in_a_test_runs_through_evolens_run(
    question_lines: Path, tmp_path: Path, tiny_llava_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code, stdout, err = run(
        capsys, "run", tiny_llava_dir, "-d", "question-lines", "-r", question_lines, "-o", out,
        "--data-option", "file=val.jsonl", "--data-option", "suffix= One word.", "--limit", "2",
        "--device", "cpu", "--max-new-tokens", "2", "--batch-size", "2", "--no-figures",
    )  # fmt: skip
    assert code == 0, err
    assert "2 traced, 0 failed" in stdout and "VQA (2 questions)" in stdout
    items = [json.loads(line) for line in (out / "dataset" / "items.jsonl").read_text().splitlines()]
    assert [i["prompt"] for i in items] == ["What colour is it? One word."] * 2
    manifest = json.loads((out / "run.json").read_text())
    assert (
        manifest["config"]["dataset"]["name"] == "question-lines"
        and manifest["config"]["dataset"]["limit"] == 2
    )
    assert manifest["dataset_source"]["suffix"] == " One word."
    assert json.loads((out / "results" / "evaluation.json").read_text())["vqa"]["n"] == 2


def test_a_data_option_the_reader_does_not_declare_is_one_line_and_exit_2(
    question_lines: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["run", "no-model", "-d", "question-lines", "-r", question_lines, "-o", tmp_path / "run"]
    assert_user_error(
        run(capsys, *base, "--data-option", "split=val"),
        "the 'question-lines' reader has no option --data-option split; it takes --data-option file, "
        "--data-option suffix",
    )
    assert_user_error(run(capsys, *base, "--data-option", "suffix"), "--data-option must be KEY=VALUE")
    assert_user_error(run(capsys, *base, "--prompt", "Describe."), "has no option --prompt")
    assert not (tmp_path / "run").exists()


def test_registering_the_name_again_is_refused(question_lines: Path) -> None:
    with pytest.raises(SettingsError, match="'question-lines' is registered already"):
        register_reader(QuestionLines)


def test_built_in_readers_take_data_options_and_flags_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_folder(tmp_path / "imgs", n=1)
    base = ["run", "no-model", "-d", "folder", "-r", root, "-o", tmp_path / "run"]
    assert_user_error(
        run(capsys, *base, "-p", "Describe.", "--data-option", "prompt=Other."),
        "the dataset option 'prompt' is given twice (--prompt and --data-option)",
    )
    assert_user_error(
        run(capsys, "eval", "--responses", tmp_path / "r.json", "-d", "pope", "-r", root),
        "the 'pope' reader needs --questions",
    )
