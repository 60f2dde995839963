"""``evolens run`` and ``evolens eval``: thin commands, one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evolens.cli import main
from tests.data.fixtures import AMBER_RESPONSES, write_amber, write_folder, write_json


def test_run_then_rerun_with_other_settings_then_eval(
    tmp_path: Path, tiny_llava_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_folder(tmp_path / "imgs", n=2)
    base = ["run", str(tiny_llava_dir), "-d", "folder", "-r", str(data), "-p", "describe this image"]
    base += ["-o", str(tmp_path / "run"), "--batch-size", "2", "--device", "cpu"]
    assert main([*base, "--max-new-tokens", "2"]) == 0
    captured = capsys.readouterr()
    assert "2 traced, 0 failed" in captured.out and "results in" in captured.out
    assert main([*base, "--max-new-tokens", "3"]) == 2
    err = capsys.readouterr().err
    assert "different configuration" in err and "trace.max_new_tokens: 2 -> 3" in err
    assert len(err.strip().splitlines()) == 1
    assert (
        main(["eval", str(tmp_path / "run"), "--method", "fallback", "--json", str(tmp_path / "e.json")]) == 0
    )
    assert json.loads((tmp_path / "e.json").read_text())["method"]["amber"] == "fallback"


def test_user_errors_are_one_line(
    tmp_path: Path, tiny_llava_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_folder(tmp_path / "imgs", n=1)
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text(json.dumps({"image": "../escape.png", "prompt": "p"}) + "\n")
    code = main(
        [
            "run",
            str(tiny_llava_dir),
            "-d",
            "folder",
            "-r",
            str(data),
            "--jsonl",
            str(jsonl),
            "-o",
            str(tmp_path / "r"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "outside the image root" in err and "bad.jsonl, line 1" in err
    assert main(["run", str(tiny_llava_dir), "-d", "pope", "-r", str(data), "-o", str(tmp_path / "r")]) == 2
    assert "--questions" in capsys.readouterr().err
    assert (
        main(
            [
                "run",
                str(tiny_llava_dir),
                "-d",
                "folder",
                "-r",
                str(data),
                "-p",
                "p",
                "-o",
                str(tmp_path / "r"),
                "--detector",
                "nope",
            ]
        )
        == 2
    )
    assert "module:function" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "imgs")]) == 2
    assert "not an evolens run directory" in capsys.readouterr().err


def _eval_responses(path: Path, responses: dict[str, str], *dataset: str) -> list[str]:
    """``evolens eval --responses FILE`` over ``dataset`` (its -d/-r/... options), the responses written to ``path``
    in AMBER's ``{id, response}`` form."""
    written = write_json(path, [{"id": int(k), "response": v} for k, v in responses.items()])
    return ["eval", "--responses", str(written), *dataset]


def test_eval_a_responses_file_in_amber_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_amber(tmp_path)
    amber = ("-d", "amber", "-r", str(data), "--queries", "query_all.json", "--method", "fallback")
    code = main(_eval_responses(tmp_path / "answers.json", AMBER_RESPONSES, *amber))
    out = capsys.readouterr().out
    assert code == 0
    assert "CHAIR 33.3  Cover 85.7  Hal 66.7  Cog 33.3" in out
    assert "accuracy 60.0  precision 100.0  recall 66.7  F1 80.0" in out


def test_detector_options(tmp_path: Path, tiny_llava_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_folder(tmp_path / "imgs", n=1)
    out = tmp_path / "run"
    base = [
        "run",
        str(tiny_llava_dir),
        "-d",
        "folder",
        "-r",
        str(data),
        "-p",
        "describe this image",
        "-o",
        str(out),
    ]
    base += ["--device", "cpu", "--max-new-tokens", "2"]
    assert main([*base, "--detector-param", "first_layer=2", "--detector-param", "mutation-rule=jsd"]) == 0
    assert "analysis of 2 tokens from 1 items" in capsys.readouterr().out
    params = json.loads((out / "run.json").read_text())["config"]["analysis"]["params"]
    assert params["first_layer"] == 2 and params["mutation_rule"] == "jsd"
    analysis = json.loads(next((out / "items").iterdir()).joinpath("analysis.json").read_text())
    assert analysis["data"]["params"]["mutation_rule"] == "jsd"
    # evolens eval re-analyses with other parameters; --detector none drops the statistics.
    assert main(["eval", str(out), "--method", "fallback", "--detector-param", "first_layer=1"]) == 0
    summary = json.loads((out / "results" / "summary.json").read_text())
    assert (
        summary["analysis"]["params"]["first_layer"] == 1
        and summary["analysis"]["params"]["mutation_rule"] == "jsd"
    )
    capsys.readouterr()
    assert main(["eval", str(out), "--method", "fallback", "--detector", "none", "--no-figures"]) == 0
    assert json.loads((out / "results" / "summary.json").read_text())["statistics"] is None
    for bad, message in ((["--detector-param", "first_layers=2"], "unknown detector parameter"),
                         (["--detector-param", "first_layer"], "KEY=VALUE"),
                         (["--detector-param", "prob_rel=2"], "prob_rel must be")):  # fmt: skip
        assert main(["eval", str(out), *bad]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1


def test_run_and_eval_take_a_config_file(
    tmp_path: Path, tiny_llava_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_folder(tmp_path / "imgs", n=1)
    config = tmp_path / "opts.toml"
    config.write_text(
        'dataset = "folder"\nroot = "imgs"\nprompt = "describe this image"\n'
        '[run]\nmax-new-tokens = 2\ndevice = "cpu"\ndetector_param = ["first_layer=2"]\n'
        '[eval]\nmethod = "fallback"\n'
    )
    out = tmp_path / "run"
    assert main(["run", str(tiny_llava_dir), "--config", str(config), "-o", str(out)]) == 0
    assert "1 traced, 0 failed" in capsys.readouterr().out
    run_config = json.loads((out / "run.json").read_text())["config"]
    assert run_config["trace"]["max_new_tokens"] == 2
    assert run_config["analysis"]["params"]["first_layer"] == 2
    assert main(["eval", str(out), "--config", str(config)]) == 0
    assert json.loads((out / "results" / "evaluation.json").read_text())["method"]["amber"] == "fallback"
    capsys.readouterr()
    config.write_text("[eval]\nmethods = 'fallback'\n")
    assert main(["eval", str(out), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "unknown option 'methods'" in err and len(err.strip().splitlines()) == 1


def test_eval_scores_under_the_protocol_asked_for(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_amber(tmp_path)
    amber = ("-d", "amber", "-r", str(data), "--queries", "query_all.json")
    base = _eval_responses(tmp_path / "answers.json", AMBER_RESPONSES, *amber)
    assert main([*base, "--method", "fallback", "--protocol", "official"]) == 0
    out = capsys.readouterr().out
    # AMBER's script counts only an answer exactly "Yes" or "No": of the five ("Yes, there is.", "No.", "Yes",
    # "Maybe.", "no") only "Yes" is read, and its truth is "no" — none is right
    assert "AMBER discriminative (5 questions, official protocol): accuracy 0.0" in out
    assert main([*base, "--method", "fallback", "--protocol", "evolens"]) == 0
    assert "AMBER discriminative (5 questions, evolens protocol): accuracy 60.0" in capsys.readouterr().out
    assert main([*base, "--protocol", "paper"]) == 2
    err = capsys.readouterr().err
    assert "unknown benchmark protocol 'paper'" in err and len(err.strip().splitlines()) == 1


def test_eval_on_an_id_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.data.fixtures import COCO_RESPONSES, write_coco

    files = write_coco(tmp_path)
    coco = ("-d", "coco", "-r", str(files["root"]), "--method", "fallback")
    coco += ("--captions", str(files["captions"]), "--instances", str(files["instances"]))
    base = _eval_responses(tmp_path / "r.json", COCO_RESPONSES, *coco)
    (tmp_path / "ids.txt").write_text("22\n33\n", encoding="utf-8")
    assert main([*base, "--ids", str(tmp_path / "ids.txt")]) == 0
    assert "CHAIR (2 captions" in capsys.readouterr().out
    (tmp_path / "bad.txt").write_text("22\n99\n", encoding="utf-8")
    assert main([*base, "--ids", str(tmp_path / "bad.txt")]) == 2
    err = capsys.readouterr().err
    assert "1 of the 2 ids are not in the coco dataset ('99')" in err and len(err.strip().splitlines()) == 1
