"""``evolens skip`` on a dataset keeps each finished batch in ``OUT/chunks`` and resumes from it; other settings
are refused in one line."""

from __future__ import annotations

from pathlib import Path

from tests.cli.helpers import assert_user_error, run
from tests.data.fixtures import write_amber


def test_dataset_skip_resumes_from_its_chunks(tiny_run, tmp_path: Path, capsys) -> None:
    data = write_amber(tmp_path / "amber")
    out = tmp_path / "out"
    argv = ["skip", tiny_run[0] / "model", "-d", "amber", "-r", data, "--limit", "3", "--preset", "skip3"]
    argv += ["--critical", "1", "--max-new-tokens", "3", "--batch-size", "2", "-f", "png", "-o", out]
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    chunks = out / "chunks"
    assert sorted(p.name for p in chunks.iterdir()) == ["00000.json", "00001.json", "settings.json"]
    first = (out / "skip.json").read_text()

    (chunks / "00001.json").unlink()
    (out / "skip.json").unlink()
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    assert (out / "skip.json").read_text() == first and (chunks / "00001.json").is_file()

    for other in (["--max-new-tokens", "4"], ["--keep-last", "2"], ["--method", "rebuild"], ["--limit", "2"]):
        result = run(capsys, *argv, *other)
        assert_user_error(result, "holds the chunks of a skip run with other settings")
    assert (out / "skip.json").read_text() == first


def test_image_items_over_one_batch_keep_no_chunks(tiny_run, tmp_path: Path, capsys) -> None:
    root, _ = tiny_run
    images = ["-i", root / "images" / "item0.png", "-i", root / "images" / "item1.png"]
    argv = [
        "skip",
        root / "model",
        *images,
        "-p",
        "describe the image",
        "--layers",
        "2",
        "--max-new-tokens",
        "2",
    ]
    code, _, err = run(capsys, *argv, "-f", "png", "-o", tmp_path / "one")
    assert code == 0, err
    assert not (tmp_path / "one" / "chunks").exists()
    code, _, err = run(capsys, *argv, "--batch-size", "1", "-f", "png", "-o", tmp_path / "two")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "two" / "chunks").iterdir()) == [
        "00000.json",
        "00001.json",
        "settings.json",
    ]
