"""Memory: peak RSS of a long trace's lens + metrics at 7B geometry, against holding the full tensor (item 4).

A 1,024-token trace at LLaVA-1.5-7B geometry (33 states, d = 4096, vocabulary 32,000). Each variant runs in a fresh
process, after the inputs exist (the ``[33, 1024, 4096]`` float32 states and the head: the baseline RSS), and
reports its peak resident set size above that baseline (the peak is reset through /proc/self/clear_refs once the
inputs are built, so their own temporaries do not count):

* **evolens** — ``compute_layer_metrics`` with the default chunk budget (``max_chunk_bytes`` = 512 MiB) and with
  128 MiB;
* **full tensor** — the lens on every step at once and ``log_softmax``: the ``[layers, steps, vocab]`` logits and
  log-probabilities held whole (4.3 GB each in float32), which a per-token path that keeps every state needs too
  (in float64, twice that).

The head's GEMM runs in bfloat16 in every variant by default (``--gemm bf16``; memory is the same up to the
bfloat16 copy of the head, 262 MB, and the run ~5x shorter); ``--gemm fp32`` for the exact path.

    .venv/bin/python bench/memory.py             # 1,024 tokens
    .venv/bin/python bench/memory.py --quick     # 256 tokens
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

MiB = 2**20


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> bool:
    """Reset this process's peak RSS (Linux: ``5`` to /proc/self/clear_refs); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_bytes() -> int:
    """Peak RSS since the last reset (VmHWM), else since the process started."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return common.peak_rss_bytes()


def run_variant(variant: str, n_steps: int, gemm: str, threads: int | None) -> dict[str, Any]:
    """Run one variant in this process (a fresh one) and return its numbers."""
    from lens_speed import make_case

    from evolens.metrics import compute_layer_metrics

    common.set_threads(threads)
    case = make_case(32, 4096, 32000, n_steps)
    lens = case["lens"]
    if gemm == "bf16":
        lens = lens.with_matmul_dtype(torch.bfloat16)
    states, targets = case["states"], case["targets"]
    baseline = _rss_bytes()
    reset = _reset_peak()  # the inputs' own temporaries (cumsum...) must not count
    start = time.perf_counter()
    if variant.startswith("evolens"):
        budget = int(variant.split("-")[1]) * MiB
        metrics = compute_layer_metrics(states, lens, targets, max_chunk_bytes=budget)
        kept = sum(t.numel() * t.element_size() for t in metrics.tensors().values())
    elif variant == "full":
        with torch.inference_mode():
            logits = lens.logits(states)
            logp = torch.log_softmax(logits, -1)
        kept = logits.numel() * logits.element_size() + logp.numel() * logp.element_size()
    else:
        raise SystemExit(f"unknown variant {variant!r}")
    seconds = time.perf_counter() - start
    peak = _peak_bytes()
    return {
        "variant": variant,
        "seconds": seconds,
        "baseline_rss": baseline,
        "peak_rss": peak,
        "peak_reset": reset,
        "peak_above_baseline": max(0, peak - baseline),
        "result_bytes": kept,
    }


def available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--gemm", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: run one variant, print JSON
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.tokens = 256
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.tokens, args.gemm, args.threads)))
        return 0

    from tqdm.auto import tqdm

    n_states, vocab = 33, 32000
    full_bytes = 2 * n_states * args.tokens * vocab * 4
    variants = ["evolens-512", "evolens-128", "full"]
    results: list[dict[str, Any]] = []
    for variant in tqdm(variants, desc="memory", unit="variant"):
        if variant == "full" and available_bytes() < 1.3 * full_bytes + 2**30:
            results.append({"variant": variant, "skipped": f"needs ~{full_bytes / 2**30:.1f} GiB free"})
            continue
        command = [sys.executable, __file__, "--variant", variant, "--tokens", str(args.tokens)]
        command += ["--gemm", args.gemm] + (["--threads", str(args.threads)] if args.threads else [])
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"lens + metrics memory, {args.tokens} tokens, 33 states, d=4096, vocab 32000, GEMM {args.gemm}")
    rows = []
    for r in results:
        if "skipped" in r:
            rows.append([r["variant"], "-", "-", "-", r["skipped"]])
            continue
        rows.append(
            [
                r["variant"],
                f"{r['baseline_rss'] / MiB:,.0f}",
                f"{r['peak_above_baseline'] / MiB:,.0f}",
                f"{r['result_bytes'] / MiB:,.1f}",
                f"{r['seconds']:.1f}",
            ]
        )
    print(common.table(["variant", "baseline MiB", "peak above MiB", "result MiB", "seconds"], rows))
    print(
        f"full [layers, steps, vocab] float32 logits + log-probs: {full_bytes / MiB:,.0f} MiB "
        f"(float64 probabilities of a keep-everything path: {full_bytes / MiB:,.0f} MiB)"
    )
    path = common.write_result(
        "memory",
        {"settings": vars(args), "full_tensor_bytes": full_bytes, "variants": results},
        args.out,
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
