"""Two CPU processes under torchrun (gloo) shard a run; the result equals a single-process run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import evolens
from evolens.data import ImageFolder
from evolens.errors import SettingsError
from evolens.parallel import DistInfo, dist_info, rank_device
from tests.data.fixtures import write_folder
from tests.run_options import run_options
from tests.runs.helpers import assert_same_run

LAUNCH = "import sys\nfrom evolens.cli import main\nsys.exit(main(sys.argv[1:]))\n"


def _torchrun() -> str | None:
    found = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    return found or shutil.which("torchrun")


@pytest.mark.skipif(
    _torchrun() is None or not torch.distributed.is_gloo_available(), reason="needs torchrun + gloo"
)
def test_two_process_sharded_run_equals_single_process(
    tmp_path: Path, tiny_llava_dir: Path, tiny_llava
) -> None:
    data = write_folder(
        tmp_path / "imgs", n=5, corrupt=True
    )  # 6 items = 3 batches of 2: rank 0 gets 2, rank 1 gets 1
    launch = tmp_path / "launch.py"
    launch.write_text(LAUNCH)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(evolens.__file__).parents[1]), *sys.path]),
        "OMP_NUM_THREADS": "1",
    }
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [
        str(_torchrun()),
        "--standalone",
        "--nproc-per-node",
        "2",
        str(launch),
        "run",
        str(tiny_llava_dir),
        "-d",
        "folder",
        "-r",
        str(data),
        "-p",
        "describe this image",
        "-o",
        str(tmp_path / "sharded"),
        "--max-new-tokens",
        "3",
        "--batch-size",
        "2",
        "--device",
        "cpu",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rank 0/2: 4 traced" in done.stdout and "rank 1/2: 1 traced, 1 failed" in done.stdout

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        evolens.run(
            tiny_llava,
            ImageFolder(data, "describe this image"),
            tmp_path / "single",
            **run_options(max_new_tokens=3, batch_size=2, device="cpu", progress=False),
        )
    finally:
        torch.set_num_threads(threads)
    assert_same_run(tmp_path / "single", tmp_path / "sharded")


def test_dist_info_reads_torchrun_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert dist_info() == DistInfo(0, 1, 0, 1)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    info = dist_info()
    assert info == DistInfo(3, 4, 1, 2) and info.is_distributed and not info.is_main
    assert rank_device(info, "cpu") == "cpu"
    if not torch.cuda.is_available():
        assert rank_device(info, "auto") == "cpu"
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(SettingsError, match="inconsistent launch"):
        dist_info()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(SettingsError, match="not an integer"):
        dist_info()


def test_device_map_with_several_processes_per_node_is_refused(
    tmp_path: Path, tiny_llava_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    if importlib.util.find_spec("accelerate") is None:
        with pytest.raises(SettingsError, match="accelerate"):
            evolens.run(
                tiny_llava_dir,
                ImageFolder(write_folder(tmp_path / "i", n=1), "p"),
                tmp_path / "r",
                **run_options(device_map="auto"),
            )
        return
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(SettingsError, match="one process per node"):
        evolens.run(
            tiny_llava_dir,
            ImageFolder(write_folder(tmp_path / "i", n=1), "p"),
            tmp_path / "r",
            **run_options(device_map="auto"),
        )
