"""Float64 metrics through the API, storage, runs and the command line: recorded in the trace's manifest and, when
asked, in the run's configuration; traces and run directories written before the option existed still load and
resume with the default."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

import evolens
from evolens.cli import main
from evolens.errors import SettingsError
from tests.conftest import make_image
from tests.data.fixtures import write_folder


@pytest.fixture(scope="module")
def wide(tiny_llava) -> evolens.Trace:
    return tiny_llava.trace(
        make_image(6), "describe this image", max_new_tokens=5, lens="paper", metrics_dtype="float64"
    )


def test_float64_trace_is_stored_in_float64_and_loads_unchanged(wide, tiny_llava, tmp_path: Path) -> None:
    wide.save(tmp_path / "t")
    manifest = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert manifest["metrics_dtype"] == "float64" and manifest["lens"] == "paper"
    schema = pq.read_schema(tmp_path / "t" / "metrics.parquet")
    assert str(schema.field("jsd_next_paper").type) == "double"
    loaded = evolens.Trace.load(tmp_path / "t")
    assert loaded.metrics.metrics_dtype == "float64"
    for name, value in wide.metrics.tensors().items():
        assert torch.equal(getattr(loaded.metrics, name), value), name  # bit for bit
    lensed = tiny_llava.attach(loaded)
    assert lensed.lens.logits_dtype == torch.float64 and lensed.logits().dtype == torch.float64
    again = lensed.with_lens("paper").trace.metrics
    torch.testing.assert_close(again.jsd_paper, wide.metrics.jsd_paper, rtol=1e-12, atol=0.0)
    assert lensed.with_lens("logit").trace.metrics.metrics_dtype == "float64"


def test_a_trace_saved_before_the_option_loads_as_float32(tiny_llava, tmp_path: Path) -> None:
    trace = tiny_llava.trace(make_image(6), "describe this image", max_new_tokens=3)
    assert trace.metrics.metrics_dtype == "float32"
    trace.save(tmp_path / "t")
    path = tmp_path / "t" / "manifest.json"
    manifest = json.loads(path.read_text())
    assert manifest["metrics_dtype"] == "float32"
    del manifest["metrics_dtype"]  # as written before the option existed
    path.write_text(json.dumps(manifest))
    loaded = evolens.Trace.load(tmp_path / "t")
    assert loaded.metrics.metrics_dtype == "float32" and loaded.metrics.jsd_paper.dtype == torch.float32
    torch.testing.assert_close(loaded.metrics.jsd_bits, trace.metrics.jsd_bits)
    assert tiny_llava.attach(loaded).lens.logits_dtype == torch.float32


def test_run_config_records_float64_only(tmp_path: Path) -> None:
    assert "metrics_dtype" not in evolens.TraceOptions().run_config()
    assert "metrics_dtype" not in evolens.TraceOptions(metrics_dtype=torch.float32).run_config()
    assert evolens.TraceOptions(metrics_dtype="float64").run_config()["metrics_dtype"] == "float64"


def _run_args(tiny_llava_dir: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "run", str(tiny_llava_dir), "-d", "folder", "-r", str(data), "-p", "describe this image", "-o", str(out),
        "--max-new-tokens", "2", "--batch-size", "1", "--device", "cpu", *extra,
    ]  # fmt: skip


def _config(out: Path) -> dict:
    return json.loads(next(out.glob("run*.json")).read_text())["config"]["trace"]


def test_an_old_run_resumes_and_float64_is_a_different_configuration(
    tiny_llava_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_folder(tmp_path / "imgs", n=2)
    out = tmp_path / "run"
    assert main(_run_args(tiny_llava_dir, data, out)) == 0
    assert "metrics_dtype" not in _config(out)  # what a run written before the option holds
    shutil.rmtree(sorted((out / "items").iterdir())[0])  # one item left to do
    assert main(_run_args(tiny_llava_dir, data, out)) == 0  # resumes with the default options
    assert "1 traced" in capsys.readouterr().out
    assert main(_run_args(tiny_llava_dir, data, out, "--metrics-dtype", "float64")) == 2
    err = capsys.readouterr().err
    assert "different configuration" in err and "trace.metrics_dtype: None -> 'float64'" in err


def test_a_float64_run_records_it_and_resumes_with_it(
    tiny_llava_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_folder(tmp_path / "imgs", n=2)
    out = tmp_path / "run"
    args = _run_args(tiny_llava_dir, data, out, "--metrics-dtype", "float64", "--lens", "paper")
    assert main(args) == 0
    assert _config(out)["metrics_dtype"] == "float64"
    shutil.rmtree(sorted((out / "items").iterdir())[0])
    assert main(args) == 0
    assert "1 traced" in capsys.readouterr().out
    manifests = [json.loads(p.read_text()) for p in (out / "items").glob("*/manifest.json")]
    assert len(manifests) == 2 and {m["metrics_dtype"] for m in manifests} == {"float64"}
    assert main(_run_args(tiny_llava_dir, data, out, "--lens", "paper")) == 2
    assert "trace.metrics_dtype: 'float64' -> None" in capsys.readouterr().err
    with pytest.raises(SettingsError, match="cannot combine"):
        evolens.TraceOptions.from_flat(lens_dtype="bfloat16", metrics_dtype="float64")


def test_trace_command_takes_the_option(tiny_llava_dir: Path, tmp_path: Path) -> None:
    make_image(1).save(tmp_path / "a.png")
    args = ["trace", str(tiny_llava_dir), "-i", str(tmp_path / "a.png"), "-p", "describe this image"]
    args += [
        "-o",
        str(tmp_path / "t"),
        "--max-new-tokens",
        "2",
        "--device",
        "cpu",
        "--metrics-dtype",
        "float64",
    ]
    assert main(args) == 0
    assert json.loads((tmp_path / "t" / "manifest.json").read_text())["metrics_dtype"] == "float64"
    assert main([*args[:-1], "float16", "--overwrite"]) == 2
