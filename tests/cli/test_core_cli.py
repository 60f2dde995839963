"""The core commands: exit codes and one-line errors."""

from __future__ import annotations

import evolens
from evolens.cli import main


def test_families_lists_llava(capsys) -> None:
    assert main(["families"]) == 0
    assert "llava" in capsys.readouterr().out


def test_output_to_a_pipe_is_not_wrapped(capsys, monkeypatch) -> None:
    from evolens.models import get_family, supported_families

    monkeypatch.delenv("COLUMNS", raising=False)
    assert main(["families"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(" kind " in line and " notes " in line for line in lines)  # the header on one line
    for name in supported_families():  # every row whole: its name and the end of its notes on one line
        tail = get_family(name).description[-12:]
        assert any(f" {name} " in line and tail in line for line in lines), name


def test_trace_writes_a_trace(tiny_llava_dir, image_file, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    code = main(
        [
            "trace",
            str(tiny_llava_dir),
            "-i",
            str(image_file),
            "-p",
            "describe this image",
            "-o",
            str(out),
            "--max-new-tokens",
            "3",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    assert evolens.Trace.load(out).n_steps == 3


def test_user_errors_exit_2_with_one_line(tmp_path, tiny_llava_dir, capsys) -> None:
    assert main(["trace", str(tmp_path / "missing"), "-p", "hi", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert main(["trace", str(tiny_llava_dir), "-p", " ", "-o", str(tmp_path / "o")]) == 2
    assert (
        main(
            [
                "trace",
                str(tiny_llava_dir),
                "-p",
                "hi",
                "-i",
                str(tmp_path / "x.jpg"),
                "-o",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert main(["trace"]) == 2  # missing argument
    assert main(["no-such-command"]) == 2
    assert not (tmp_path / "o").exists()


def test_internal_errors_exit_1(monkeypatch, tiny_llava_dir, tmp_path) -> None:
    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(evolens.api.lvlm, "load_model", bug)
    assert main(["trace", str(tiny_llava_dir), "-p", "hi", "-o", str(tmp_path / "o")]) == 1


def test_a_wrong_type_in_a_config_file_names_the_file_and_the_key(tmp_path, capsys) -> None:
    from tests.cli.helpers import assert_user_error, run

    config = tmp_path / "c.toml"
    config.write_text('[analyze]\nn_boot = "many"\n')
    assert_user_error(run(capsys, "analyze", tmp_path, "--config", config), f"{config}: n_boot = 'many': ")
    config.write_text('[trace]\nmax_new_tokens = "ten"\n')
    assert_user_error(
        run(capsys, "trace", tmp_path / "model", "-p", "hi", "-o", tmp_path / "o", "--config", config),
        f"{config}: max_new_tokens = 'ten': ",
    )
