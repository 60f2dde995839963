"""``evolens report``, ``evolens plot ...`` and the ``--config FILE`` mechanism: outputs and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import evolens.report
from evolens.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_report_command_writes_one_html_file(tiny_run, tmp_path: Path, capsys) -> None:
    root, _ = tiny_run
    out = tmp_path / "r.html"
    code, stdout, _ = run(capsys, "report", root, "-o", out, "--title", "tiny run")
    assert code == 0
    assert f"wrote {out} (2 items" in stdout
    html = out.read_text(encoding="utf-8")
    assert "<title>tiny run</title>" in html and html.count('class="item"') == 2
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]
    assert 'data-encoding="gzip+base64"' not in html
    code, _, _ = run(capsys, "report", root, "-o", out, "--compress", "--no-summary-figures")
    assert code == 0 and 'data-encoding="gzip+base64"' in out.read_text(encoding="utf-8")


def test_report_command_reads_extras_json(tiny_run, tmp_path: Path, capsys) -> None:
    root, traces = tiny_run
    trace = traces[0]
    (tmp_path / "fig.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"></svg>')
    extras = {
        "items": {
            trace.item_id: {
                "token_flags": {"hallucinated": [True] + [False] * (trace.n_steps - 1)},
                "figures": [{"title": "an svg", "figure": "fig.svg"}],  # relative to the JSON file
            }
        },
        "summary": {"statistics": {"CHAIR_s": 0.5}},
    }
    (tmp_path / "extras.json").write_text(json.dumps(extras))
    code, _, err = run(
        capsys, "report", root, "-o", tmp_path / "r.html", "--extras", tmp_path / "extras.json"
    )
    assert code == 0, err
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert (
        "tokens flagged hallucinated" in html and "data:image/svg+xml;base64," in html and "CHAIR_s" in html
    )
    (tmp_path / "bad.json").write_text('{"itemz": {}}')
    code, _, err = run(capsys, "report", root, "-o", tmp_path / "r.html", "--extras", tmp_path / "bad.json")
    assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["report", "{missing}"], "does not exist"),
        (["report", "{root}", "-o", "{tmp}/r.txt"], "ending in .html"),
        (
            ["report", "{root}", "-o", "{tmp}/r.html", "--from-layer", "-1"],
            "from_layer must be a layer index >= 0",
        ),
        (["report", "{empty}"], "no evolens trace"),
        (["plot", "jsd", "{trace}", "-o", "{tmp}/x.png", "--reduction", "nats"], "--reduction"),
        (["plot", "jsd", "{root}", "-o", "{tmp}/x.png"], "holds 2 traces"),
        (["plot", "tokens", "{trace}", "-o", "{tmp}/x.gif"], "suffix"),
        (["plot", "tokens", "{trace}", "-o", "{tmp}/x.png", "--step", "99"], "step must be in"),
        (["plot", "contrast", "{trace}", "-o", "{tmp}/x.png", "--step", "0", "--correct", "zebra"], "track="),
    ],
)
def test_user_errors_exit_2_with_one_line(tiny_run, tmp_path: Path, capsys, argv, message) -> None:
    root, traces = tiny_run
    (tmp_path / "empty").mkdir()
    names = {
        "missing": tmp_path / "missing",
        "root": root,
        "tmp": tmp_path,
        "empty": tmp_path / "empty",
        "trace": root / "traces" / traces[0].item_id,
    }
    code, _, err = run(capsys, *[a.format(**names) for a in argv])
    assert code == 2
    assert err.startswith("error:") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_usage_errors_exit_2(capsys) -> None:
    code, _, err = run(capsys, "plot", "jsd")
    assert code == 2 and "Missing" in err


def test_an_internal_error_exits_1(tiny_run, tmp_path: Path, capsys, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(evolens.report, "write_report", broken)
    code, _, err = run(capsys, "report", tiny_run[0], "-o", tmp_path / "r.html")
    assert code == 1 and "a bug" in err


def test_plot_commands_write_figures(tiny_run, tmp_path: Path, capsys) -> None:
    root, traces = tiny_run
    trace_dir = root / "traces" / traces[0].item_id
    assert run(capsys, "plot", "tokens", trace_dir, "-o", tmp_path / "fig2")[0] == 0
    assert (
        run(capsys, "plot", "tokens", trace_dir, "-o", tmp_path / "one.png", "-s", "2", "--from-layer", "1")[
            0
        ]
        == 0
    )
    assert run(capsys, "plot", "jsd", trace_dir, "-o", tmp_path / "fig4.pdf", "--reduction", "paper")[0] == 0
    assert (
        run(capsys, "plot", "jsd", trace_dir, "-o", tmp_path / "all", "-f", "svg", "--max-tokens", "0")[0]
        == 0
    )
    correct = traces[0].vocab[int(traces[0].metrics.candidate_ids[1, 0])]
    code, _, err = run(
        capsys, "plot", "contrast", trace_dir, "-o", tmp_path / "fig3.svg", "-s", "1", "--correct", correct,
        "--mutation-layer", "3",
    )  # fmt: skip
    assert code == 0, err
    assert run(capsys, "plot", "profile", root, "-o", tmp_path / "profile.png")[0] == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == [
        "all.svg",
        "fig2.png",
        "fig2.svg",
        "fig3.svg",
        "fig4.pdf",
        "one.png",
        "profile.png",
    ]
    assert (tmp_path / "fig4.pdf").read_bytes().startswith(b"%PDF")


def test_help_shows_examples(capsys) -> None:
    for argv in (["report", "--help"], ["plot", "jsd", "--help"], ["plot", "contrast", "--help"]):
        code, stdout, _ = run(capsys, *argv)
        assert code == 0
        assert "Examples:" in stdout and f"evolens {' '.join(argv[:-1])} " in stdout
    code, stdout, _ = run(capsys, "plot", "--help")
    assert code == 0 and all(name in stdout for name in ("tokens", "jsd", "contrast", "profile"))


# ----------------------------------------------------------------------------- --config


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("c.toml", 'title = "from toml"\n[report]\nmax-items = 1\n[plot]\ndpi = 50\n'),
        ("c.yaml", "title: from yaml\nreport:\n  max_items: 1\n"),
        ("c.json", '{"title": "from json", "report": {"max-items": 1}}'),
    ],
)
def test_config_file_sets_options(tiny_run, tmp_path: Path, capsys, name, content) -> None:
    config = tmp_path / name
    config.write_text(content)
    out = tmp_path / "r.html"
    code, _, err = run(capsys, "report", tiny_run[0], "-o", out, "--config", config)
    assert code == 0, err
    html = out.read_text(encoding="utf-8")
    assert f"<title>from {name.split('.')[1]}</title>" in html
    assert html.count('class="item"') == 1  # max-items from the [report] table


def test_command_line_wins_over_config_and_paths_are_relative_to_the_file(
    tiny_run, tmp_path: Path, capsys
) -> None:
    root, traces = tiny_run
    (tmp_path / "cfg").mkdir()
    config = tmp_path / "cfg" / "opts.toml"
    config.write_text('title = "config"\nout = "from-config.html"\n')
    code, _, err = run(capsys, "report", root, "--config", config, "--title", "command line")
    assert code == 0, err
    html = (tmp_path / "cfg" / "from-config.html").read_text(encoding="utf-8")
    assert "<title>command line</title>" in html
    plot = tmp_path / "cfg" / "plot.toml"
    plot.write_text(
        '[plot.jsd]\nreduction = "paper"\nout = "heat.svg"\n[plot.tokens]\nreduction = "ignored"\n'
    )
    code, _, err = run(capsys, "plot", "jsd", root / "traces" / traces[0].item_id, "--config", plot)
    assert code == 0, err
    assert "MaxAbs" in (tmp_path / "cfg" / "heat.svg").read_text()  # the paper view was used


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("typo.toml", 'titel = "x"\n', "unknown option 'titel'"),
        ("broken.toml", "title = \n", "cannot parse"),
        ("list.json", "[1, 2]", "mapping"),
        ("conf.ini", "title=x", "must end in"),
    ],
)
def test_bad_config_files_are_user_errors(tiny_run, tmp_path: Path, capsys, name, content, message) -> None:
    config = tmp_path / name
    config.write_text(content)
    code, _, err = run(capsys, "report", tiny_run[0], "-o", tmp_path / "r.html", "--config", config)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "report", tiny_run[0], "--config", tmp_path / "absent.toml")
    assert code == 2 and "does not exist" in err
