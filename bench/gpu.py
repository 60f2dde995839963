"""On a GPU: a random LLaVA at LLaVA-1.5-7B geometry in bfloat16 — analysis vs generation, tokens/s traced (item 7).

Needs CUDA (exits with status 2 and one line otherwise). The model is built in memory on the GPU (32 layers,
d = 4096, FFN 11,008, vocabulary 32,000; a tiny vision tower), bfloat16, random weights. For each batch size,
interleaved and repeated (medians), greedy decoding of ``--tokens`` new tokens:

* **generate** — plain ``model.generate`` (no hooks);
* **capture** — generation with evolens's residual-stream hooks (states kept on the CPU, as ``trace`` does);
* **analysis** — ``compute_layer_metrics`` on the captured states: lens (bfloat16 GEMM on the GPU) + every metric;
* **trace** — ``lvlm.trace`` end to end.

Reported: analysis time as a share of generation time, capture overhead, tokens/s traced, peak GPU memory.

    .venv/bin/python bench/gpu.py                 # on a CUDA machine (about 2-3 minutes on an H100/H200)
    .venv/bin/python bench/gpu.py --cpu-dry-run   # checks the script on CPU with a small model (no GPU numbers)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

import models
from evolens.metrics import compute_layer_metrics

PROMPT = "Please describe this image in detail."


def bench_batch(lvlm: Any, batch: int, n_tokens: int, repeats: int) -> dict[str, Any]:
    image = models.test_image()
    images, prompts = [image] * batch, [PROMPT] * batch
    prepared = models.prepare_generation(lvlm, images, PROMPT, n_tokens)
    device = next(lvlm.model.parameters()).device
    captured: list[Any] = []

    def capture() -> int:
        captured[:] = prepared.capture()
        return sum(int(c.generated_ids.shape[0]) for c in captured)

    def analysis() -> int:
        lens = lvlm.lens()
        for c in captured:
            compute_layer_metrics(c.hidden_states, lens, c.generated_ids)
        return sum(int(c.generated_ids.shape[0]) for c in captured)

    def trace() -> int:
        traces = lvlm.trace(images=images, prompts=prompts, max_new_tokens=n_tokens, batch_size=batch)
        return sum(t.n_steps for t in traces)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, tokens = common.interleave(
        {"generate": prepared.generate, "capture": capture, "analysis": analysis, "trace": trace},
        repeats,
        desc=f"batch {batch}",
    )
    med = {k: common.median(v) for k, v in times.items()}
    return {
        "batch": batch,
        "max_new_tokens": n_tokens,
        "tokens": tokens,
        "times_s": times,
        "median_s": med,
        "analysis_share_of_generation": med["analysis"] / med["generate"],
        "capture_over_generate": med["capture"] / med["generate"],
        "trace_over_generate": med["trace"] / med["generate"],
        "tokens_per_s": {k: tokens[k] / med[k] for k in med},
        "peak_gpu_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=128, help="max new tokens (default 128)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes (default 1 8)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--cpu-dry-run", action="store_true", help="run on CPU with a small model to check the script"
    )
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    common.set_threads(args.threads)
    if args.cpu_dry_run:
        device, geometry = "cpu", models.Geometry(2, 256, 512, 4, 4, vocab=32000)
        args.tokens, args.batch, args.repeats = min(args.tokens, 8), [1, 2], 1
    elif not torch.cuda.is_available():
        print(
            "bench/gpu.py needs a CUDA GPU (torch.cuda.is_available() is False); no GPU numbers were measured"
        )
        return 2
    else:
        device, geometry = "cuda", models.LLAVA_7B
    if args.quick:
        args.tokens, args.batch, args.repeats = min(args.tokens, 32), args.batch[:1], 2
    model, processor = models.random_llava(geometry, dtype=torch.bfloat16, device=device)
    lvlm = models.in_memory_lvlm(model, processor, "random LLaVA-1.5-7B geometry")
    n_params = sum(p.numel() for p in model.parameters())
    results = [bench_batch(lvlm, b, args.tokens, args.repeats) for b in args.batch]
    name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU (dry run: not a GPU measurement)"
    print(
        f"{name}: random LLaVA, {geometry.n_layers} layers, d={geometry.hidden}, {n_params / 1e9:.2f} B params, bf16"
    )
    rows = []
    for r in results:
        for k in ("generate", "capture", "analysis", "trace"):
            rows.append([r["batch"], k, r["tokens"][k], r["median_s"][k], r["tokens_per_s"][k]])
        rows.append([r["batch"], "analysis / generate", "-", r["analysis_share_of_generation"], "-"])
    print(common.table(["batch", "variant", "tokens", "median s", "tokens/s"], rows))
    out = args.out or ("/tmp/evolens-gpu-dry-run.json" if args.cpu_dry_run else None)
    path = common.write_result(
        "gpu",
        {
            "settings": vars(args),
            "device": name,
            "geometry": vars(geometry) if hasattr(geometry, "__dict__") else str(geometry),
            "params": n_params,
            "batches": results,
        },
        out,
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
