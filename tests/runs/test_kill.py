"""``kill -9`` at any moment — tracing, writing an item, merging the analyses — run again: the finished run equals an
uninterrupted one (real subprocesses)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import evolens
from evolens.data import ImageFolder
from evolens.store.run import RunDirectory
from tests.data.fixtures import write_folder
from tests.run_options import run_options
from tests.runs.helpers import assert_same_run

SCRIPT = """
import os, signal, sys, time
mode, model, data, out = sys.argv[1:5]
import evolens
from evolens.store import run as run_module

if mode == "slow":  # give the test time to kill us between items
    real_trace = evolens.LVLM.trace
    def slow_trace(self, *args, **kwargs):
        time.sleep(0.5)
        return real_trace(self, *args, **kwargs)
    evolens.LVLM.trace = slow_trace
elif mode == "die-while-writing":  # SIGKILL ourselves with an item half written (files in, rename pending)
    real_save = run_module.save_trace
    calls = {"n": 0}
    def dying_save(trace, directory, **kwargs):
        path = real_save(trace, directory, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return path
    run_module.save_trace = dying_save
elif mode == "die-while-analysing":  # every item traced; SIGKILL while the merge writes the 2nd analysis.json
    from pathlib import Path
    from evolens import envelope as analysis_io  # analysis files are written through the envelope
    real_write = analysis_io.atomic_write_text
    calls = {"n": 0}
    def dying_write(path, text):
        calls["n"] += 1
        if calls["n"] == 2:
            target = Path(path)
            (target.parent / f".{target.name}.tmp-{os.getpid()}-killed").write_text(text[: len(text) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        return real_write(path, text)
    analysis_io.atomic_write_text = dying_write

evolens.run(model, evolens.ImageFolder(data, "describe this image"), out,
            trace=evolens.TraceOptions.from_flat(max_new_tokens=3, batch_size=2),
            load=evolens.LoadOptions(device="cpu"), progress=False)
"""


def _start(script: Path, mode: str, model: Path, data: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(evolens.__file__).parents[1]), *sys.path])}
    return subprocess.Popen(
        [sys.executable, str(script), mode, str(model), str(data), str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _finished(out: Path) -> int:
    items = out / "items"
    return sum(1 for p in items.iterdir() if not p.name.startswith(".")) if items.is_dir() else 0


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_mid_run_then_resume_equals_uninterrupted(
    tmp_path: Path, tiny_llava_dir: Path, tiny_llava
) -> None:
    data = write_folder(tmp_path / "imgs", n=7, corrupt=True)  # 8 items, 4 batches of 2, one corrupt image
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    out = tmp_path / "killed"

    # 1. Killed from outside while it works (after the first item is written, before the last).
    proc = _start(script, "slow", tiny_llava_dir, data, out)
    deadline = time.monotonic() + 120
    while _finished(out) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    first = _finished(out)
    assert 1 <= first < 7

    # 2. Killed by SIGKILL in the middle of writing an item: a temporary directory is left behind.
    proc = _start(script, "die-while-writing", tiny_llava_dir, data, out)
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert any(p.name.startswith(".") for p in (out / "items").iterdir()), "expected a half-written item"
    assert not (out / "results").exists()

    # 3. Killed while the finished run is merged (analyses half written, no results/).
    proc = _start(script, "die-while-analysing", tiny_llava_dir, data, out)
    proc.wait(timeout=240)
    assert proc.returncode == -signal.SIGKILL
    assert list(RunDirectory(out).status().values()).count("pending") == 0
    items = [p for p in (out / "items").iterdir() if not p.name.startswith(".")]
    assert sum((p / "analysis.json").is_file() for p in items) == 1
    assert any(q.name.startswith(".analysis.json.tmp-") for p in items for q in p.iterdir())
    assert not (out / "results").exists()

    # 4. The same call again (here, in this process) finishes the run.
    dataset = ImageFolder(data, "describe this image")
    options = {"max_new_tokens": 3, "batch_size": 2, "device": "cpu", "progress": False}
    resumed = evolens.run(tiny_llava, dataset, out, **run_options(**options))
    assert resumed.n_skipped == 8 and resumed.n_traced == 0
    assert all((p / "analysis.json").is_file() for p in items)
    status = RunDirectory(out).status()
    assert list(status.values()).count("done") == 7 and list(status.values()).count("failed") == 1

    # The uninterrupted reference.
    evolens.run(tiny_llava, dataset, tmp_path / "reference", **run_options(**options))
    assert_same_run(tmp_path / "reference", out)
