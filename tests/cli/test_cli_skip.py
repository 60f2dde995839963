"""``evolens skip``: the Fig. 5 experiment from the command line, on images and on a dataset, with the tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evolens.analysis import Annotations
from evolens.cli.skip import parse_presets, parse_skip_sets
from evolens.errors import SettingsError
from evolens.experiments import SkipReport
from tests.cli.helpers import assert_user_error, run
from tests.data.fixtures import write_amber


def test_skip_on_images_writes_the_report_and_figure(tiny_run, tmp_path: Path, capsys) -> None:
    root, traces = tiny_run
    out = tmp_path / "skip"
    code, stdout, err = run(
        capsys, "skip", root / "model", "-i", root / "images" / "item0.png", "-i", root / "images" / "item1.png",
        "-p", "describe the image", "--preset", "skip1,skip3", "--critical", "1", "--mutation", "3",
        "--layers", "2-3", "--layers", "mid=2", "--truth", "user,tree", "--hallu", "water",
        "--max-new-tokens", "4", "-o", out,
    )  # fmt: skip
    assert code == 0, err
    report = SkipReport.load(out / "skip.json")
    assert [r.item_id for r in report.results] == ["0", "1"]
    first = report.results[0]
    assert [v.name for v in first.variants] == ["original", "skip1", "skip3", "layers 2-3", "mid"]
    assert first.variant("skip1").skipped == (2,)  # critical 1 -> mutation 3: layers 2 .. 2
    assert first.variant("skip3").skipped == (2, 3)  # critical 1 -> the last layer kept (round(5/32 * 4) = 1)
    assert first.variant("layers 2-3").skipped == (2, 3) and first.variant("mid").skipped == (2,)
    assert first.layers is not None and first.layers.source == "given"
    assert first.annotations == Annotations.of(["user", "tree"], ["water"])
    assert all(len(v.tokens) <= 4 for v in first.variants)
    assert first.variant("original").text == " ".join(t.strip() for t in traces[0].tokens[:4])
    assert {s.name for s in report.summary} == {"original", "skip1", "skip3", "layers 2-3", "mid"}
    assert report.settings["method"] == "hook" and report.settings["generation"]["max_new_tokens"] == 4
    assert (out / "skip.png").read_bytes().startswith(b"\x89PNG") and (out / "skip.svg").is_file()
    assert "item 0: critical 1, mutation [3] (given)" in stdout and "summary over 2 items" in stdout


def test_skip_text_only_on_a_causal_lm(tiny_llama_dir: Path, tmp_path: Path, capsys) -> None:
    code, _, err = run(
        capsys, "skip", tiny_llama_dir, "-p", "what color is the sky ?", "--layers", "2", "--max-new-tokens", "3",
        "-o", tmp_path, "-f", "png",
    )  # fmt: skip
    assert code == 0, err
    report = SkipReport.load(tmp_path / "skip.json")
    (result,) = report.results
    assert result.image is None and result.layers is None
    assert [v.name for v in result.variants] == ["original", "layers 2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["skip.json", "skip.png"]


def test_skip_on_a_dataset_uses_its_annotations(tiny_run, tmp_path: Path, capsys) -> None:
    data = write_amber(tmp_path / "amber")
    code, _, err = run(
        capsys, "skip", tiny_run[0] / "model", "-d", "amber", "-r", data, "--limit", "2", "--preset", "skip3",
        "--critical", "1", "--max-new-tokens", "3", "--batch-size", "1", "-o", tmp_path / "out",
    )  # fmt: skip
    assert code == 0, err
    report = SkipReport.load(tmp_path / "out" / "skip.json")
    assert [r.item_id for r in report.results] == ["1", "2"]
    assert report.results[0].annotations == Annotations.of(["dog", "person", "grass"], ["cat", "car", "sky"])
    assert report.results[1].annotations == Annotations.of(["beach", "sea"], ["dog", "person"])
    assert report.results[0].image is not None and report.results[0].image.endswith("AMBER_1.jpg")
    assert report.settings["items"] == 2 and report.settings["dataset"]["name"] == "amber"
    assert [s.n_items for s in report.summary] == [2, 2]  # merged over the two one-item batches


def test_parsers() -> None:
    assert parse_presets(None, have_layers=False) == ("skip1", "skip2", "skip3")
    assert parse_presets(None, have_layers=True) == ()
    assert parse_presets("skip3, skip1", have_layers=True) == ("skip3", "skip1")
    assert parse_presets("none", have_layers=False) == ()
    assert parse_skip_sets(["18-20,25", "late=30-31"]) == {
        "layers 18-20,25": (18, 19, 20, 25),
        "late": (30, 31),
    }
    with pytest.raises(SettingsError, match="taken"):
        parse_skip_sets(["a=1", "a=2"])
    with pytest.raises(SettingsError, match="backwards"):
        parse_skip_sets(["5-3"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--preset", "skip9"], "unknown preset"),
        (["--preset", "none"], "nothing to run"),
        (["--layers", "x-3"], "cannot read 'x-3'"),
        (["--mutation", "3"], "--mutation needs --critical"),
        (["-i", "{missing}"], "image file not found"),
        (["-i", "{image}", "-i", "{image}", "-p", "a", "-p", "b", "-p", "c"], "one per --image"),
        (["--layers", "1-4"], "cannot skip every one of the 4 decoder layers"),
        (["--layers", "5"], "layer 5 is out of range"),
        (["-d", "amber"], "--dataset needs --root"),
    ],
)
def test_user_errors_exit_2(tiny_run, tmp_path: Path, capsys, argv, message) -> None:
    root, _ = tiny_run
    names = {"missing": tmp_path / "missing.png", "image": root / "images" / "item0.png"}
    args = [a.format(**names) for a in argv]
    if "-p" not in args and "-d" not in args:
        args += ["-p", "describe the image"]
    result = run(capsys, "skip", root / "model", *args, "--max-new-tokens", "2", "-o", tmp_path / "out")
    assert_user_error(result, message)
    assert not (tmp_path / "out" / "skip.json").exists()


def test_config_file_sets_skip_and_detector_options(tiny_run, tmp_path: Path, capsys) -> None:
    root, _ = tiny_run
    config = tmp_path / "options.json"
    config.write_text(
        json.dumps({"skip": {"layers": ["3"], "max-new-tokens": 2, "spike_ratio": 7, "out": "res"}})
    )
    code, _, err = run(capsys, "skip", root / "model", "-p", "describe the image", "--config", config)
    assert code == 0, err
    report = SkipReport.load(tmp_path / "res" / "skip.json")
    assert report.settings["params"]["spike_ratio"] == 7
    assert [v.name for v in report.results[0].variants] == ["original", "layers 3"]


@pytest.fixture(scope="module")
def toy_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny exported toy test set: 2 typical + 2 atypical scenes, 32 items (captions, yes/no, one-word)."""
    from evolens import toy

    return toy.export_testset(tmp_path_factory.mktemp("toy") / "set", n_typical=2, n_atypical=2)


def test_skip_on_the_toy_judges_every_task(toy_set: Path, tmp_path: Path, capsys) -> None:
    from evolens import toy
    from evolens.hallucination.skip_judged import SkipJudged

    out = tmp_path / "out"
    code, stdout, err = run(
        capsys, "skip", toy.model_dir(), "-d", "toy", "-r", toy_set, "--max-new-tokens", "6", "--show", "1",
        "-f", "png", "-o", out,
    )  # fmt: skip
    assert code == 0, err
    report = SkipReport.load(out / "skip.json")
    judged = SkipJudged.load(out / "skip_judged.json")
    assert judged.variants == ["original", "skip1", "skip2", "skip3"]
    assert judged.tasks == ["amber-generative", "amber-discriminative", "vqa", "all"]
    assert judged.row("original").quality.n_judged == len(report.results) == 32
    assert judged.row("original", "vqa").quality.n_prior > 0  # colour of an atypical heart or moon
    for variant in judged.variants[1:]:
        for task in judged.tasks:
            row = judged.row(variant, task)
            c = row.comparison
            assert c is not None and c.n_pairs == row.quality.n_judged and c.difference is not None
            assert c.corrected - c.broken == round(c.difference * c.n_pairs)
        assert judged.row(variant).n_ran == sum(r.variant(variant).ran for r in report.results)
    results = {r.item_id: r for r in report.results}
    for change in judged.changed:  # an item judged differently has a different text
        assert change.text == results[change.item_id].variant(change.variant).text != change.original
    assert judged.settings["protocol"] == "evolens" and judged.settings["dataset"]["name"] == "toy"
    assert "judged against the truth (32 items, evolens protocol)" in stdout
    assert any(line.split()[:2] == ["skip3", "vqa"] for line in stdout.splitlines())
    assert (out / "skip_judged.png").read_bytes().startswith(b"\x89PNG")


def test_skip_judges_under_the_protocol_asked_for(toy_set: Path, tmp_path: Path, capsys) -> None:
    from evolens import toy
    from evolens.hallucination.skip_judged import SkipJudged

    code, _, err = run(
        capsys, "skip", toy.model_dir(), "-d", "toy", "-r", toy_set, "--data-option", "tasks=amber", "--limit", "8",
        "--preset", "skip3", "--protocol", "official", "--max-new-tokens", "3", "-f", "png", "-o", tmp_path,
    )  # fmt: skip
    assert code == 0, err
    judged = SkipJudged.load(tmp_path / "skip_judged.json")
    assert judged.settings["protocol"] == "official" and judged.tasks == [
        "amber-generative",
        "amber-discriminative",
        "all",
    ]
    # AMBER's own script counts an answer that is not exactly "Yes" or "No" wrong; the toy answers lower-case
    assert judged.row("original", "amber-discriminative").quality.accuracy == 0.0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--data-option", "bogus=1"], "has no option --data-option bogus"),
        (["--data-option", "tasks=vqa,nope"], "tasks must be 'amber' and/or 'vqa'"),
        (["-p", "hello"], "has no option --prompt"),
        (["--protocol", "lenient"], "unknown benchmark protocol 'lenient'"),
        (["-d", "nosuch"], "unknown dataset kind 'nosuch'"),
    ],
)
def test_bad_dataset_input_exits_2(toy_set: Path, tmp_path: Path, capsys, argv, message) -> None:
    from evolens import toy

    args = ["-d", "toy", *argv] if "-d" not in argv else argv
    result = run(capsys, "skip", toy.model_dir(), *args, "-r", toy_set, "-o", tmp_path / "out")
    assert_user_error(result, message)
    assert not (tmp_path / "out").exists()
