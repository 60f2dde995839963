"""Dataset throughput: items/s of ``evolens run`` on the toy model, one process against two (issue 8, item 6).

An image folder of ``--items`` generated images is traced into a fresh run directory by the real command line:

* **1 process** — ``evolens run`` with every core (``OMP_NUM_THREADS`` = cores), and with one thread;
* **2 processes** — ``torchrun --standalone --nproc-per-node 2 ... evolens run`` on gloo, one thread each
  (README "Scale-out"): each rank takes every second batch.

The two launches alternate (``--repeats`` rounds; medians). Reported: tracing items/s (items over the slowest rank's
tracing time, from the command's own summary lines) and wall-clock items/s (process start to merged results:
imports, model load and the merge included).

The model is the built-in toy LVLM when ``evolens.toy`` ships one; otherwise a tiny random LLaVA with 8 layers
(``evolens.testing.save_tiny("llava", dir, n_layers=8)``) — the output says which.

    .venv/bin/python bench/dataset_throughput.py
    .venv/bin/python bench/dataset_throughput.py --quick
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

LAUNCH = "import sys\nfrom evolens.cli import main\nsys.exit(main(sys.argv[1:]))\n"
SUMMARY = re.compile(r"(?:rank (\d+)/(\d+): )?(\d+) traced, (\d+) failed.*?\(([\d.]+) items/s\)")


def toy_model_dir() -> tuple[Path | None, str]:
    """The shipped toy model's directory, when ``evolens.toy`` provides one."""
    try:
        import evolens.toy as toy
    except ImportError as err:
        return None, f"evolens.toy is not importable ({err})"
    for name in ("model_dir", "shipped_model_dir", "default_model_dir", "weights_dir"):
        fn = getattr(toy, name, None)
        if callable(fn):
            try:
                path = Path(fn())
            except Exception as err:  # a toy package still being built: say why and fall back
                return None, f"evolens.toy.{name}() failed: {type(err).__name__}: {err}"
            if (path / "config.json").is_file():
                return path, f"evolens.toy.{name}()"
            return None, f"evolens.toy.{name}() gave {path}, which holds no config.json"
    return None, "evolens.toy has no model_dir()"


def write_images(directory: Path, n: int) -> Path:
    import numpy as np
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(directory / f"img{i:03d}.png")
    return directory


def launch(
    n_procs: int,
    threads: int,
    model: Path,
    images: Path,
    out: Path,
    args: argparse.Namespace,
    launcher: Path,
) -> dict[str, Any]:
    bindir = Path(sys.executable).parent
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    run_args = [
        "run", str(model), "-d", "folder", "-r", str(images), "-p", "describe this image", "-o", str(out),
        "--max-new-tokens", str(args.tokens), "--batch-size", str(args.batch_size), "--device", "cpu",
        "--no-figures",
    ]  # fmt: skip
    if n_procs == 1:
        command = [str(bindir / "evolens"), *run_args]
    else:
        torchrun = shutil.which("torchrun", path=str(bindir)) or "torchrun"
        command = [torchrun, "--standalone", "--nproc-per-node", str(n_procs), str(launcher), *run_args]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    text = re.sub(r"\s+", " ", done.stdout + done.stderr)
    ranks = [(int(m.group(3)), float(m.group(5))) for m in SUMMARY.finditer(text)]
    if len(ranks) != n_procs:
        raise SystemExit(f"expected {n_procs} summary lines, found {len(ranks)} in:\n{done.stdout}")
    traced = sum(n for n, _ in ranks)
    slowest = max(n / rate for n, rate in ranks if rate > 0)
    shutil.rmtree(out)
    return {"wall_s": wall, "traced": traced, "tracing_s": slowest, "items_per_s": traced / slowest}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=24, help="max new tokens per item")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds (default 2)")
    parser.add_argument("--model", help="a model directory (default: the toy model, else a tiny LLaVA)")
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.items, args.tokens, args.repeats = 8, 8, 1
    from tqdm.auto import tqdm

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model: Path | None
        if args.model:
            model, source = Path(args.model), "--model"
        else:
            model, source = toy_model_dir()
            if model is None:
                from evolens.testing import save_tiny

                print(f"no toy model ({source}); using a tiny random LLaVA with 8 layers instead")
                model = save_tiny("llava", root / "tiny", n_layers=8)
                source = f"evolens.testing.save_tiny('llava', n_layers=8) — {source}"
        images = write_images(root / "images", args.items)
        launcher = root / "launch.py"
        launcher.write_text(LAUNCH)
        cores = os.cpu_count() or 1
        launches = {
            f"1 process x {cores} threads": (1, cores),
            "1 process x 1 thread": (1, 1),
            "2 processes x 1 thread": (2, 1),
        }
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in launches}
        with tqdm(total=len(launches) * args.repeats, desc="runs", unit="run") as bar:
            for r in range(args.repeats):
                for i, (name, (n, threads)) in enumerate(launches.items()):
                    out = root / f"run-{i}-{r}"
                    assert model is not None
                    runs[name].append(launch(n, threads, model, images, out, args, launcher))
                    bar.update(1)
    summary = {
        name: {
            "items_per_s": common.median([x["items_per_s"] for x in rs]),
            "wall_items_per_s": common.median([x["traced"] / x["wall_s"] for x in rs]),
            "wall_s": common.median([x["wall_s"] for x in rs]),
        }
        for name, rs in runs.items()
    }
    one, two = summary[f"1 process x {cores} threads"], summary["2 processes x 1 thread"]
    single = summary["1 process x 1 thread"]
    speedup = two["items_per_s"] / one["items_per_s"]
    wall_speedup = two["wall_items_per_s"] / one["wall_items_per_s"]
    over_single = {
        "tracing": two["items_per_s"] / single["items_per_s"],
        "wall": two["wall_items_per_s"] / single["wall_items_per_s"],
    }
    print(
        f"dataset throughput: {args.items} items, {args.tokens} new tokens, batch {args.batch_size}; model: {source}"
    )
    rows = [[k, v["items_per_s"], v["wall_items_per_s"], v["wall_s"]] for k, v in summary.items()]
    rows.append([f"2 processes / 1 process x {cores} threads", speedup, wall_speedup, "-"])
    rows.append(["2 processes / 1 process x 1 thread", over_single["tracing"], over_single["wall"], "-"])
    print(common.table(["launch", "tracing items/s", "wall items/s", "wall s"], rows))
    path = common.write_result(
        "dataset_throughput",
        {
            "settings": vars(args),
            "model_source": source,
            "runs": runs,
            "summary": summary,
            "two_over_one": {"tracing": speedup, "wall": wall_speedup},
            "two_over_one_single_thread": over_single,
        },
        args.out,
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
