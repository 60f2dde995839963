"""Capture overhead: evolens's trace against plain ``generate`` on the same model and prompt (issue 8, item 3).

Three variants, interleaved and repeated (medians), greedy decoding, the same image and prompt:

* **generate** — ``model.generate`` with the settings evolens uses, no hooks;
* **capture** — :func:`evolens.capture.generate.generate_with_capture`: the same call with the residual-stream
  hooks recording every layer's state at every generated token (what tracing adds to generation);
* **trace** — ``lvlm.trace(...)``: capture + lens + every metric + the Trace object.

on the tiny random LLaVA of the tests and on a mid-size random LLaVA (12 layers, d = 768).

    .venv/bin/python bench/capture_overhead.py
    .venv/bin/python bench/capture_overhead.py --quick
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

import evolens
import models
from evolens.testing import save_tiny

PROMPT = "Please describe this image in detail."


def variants(lvlm: Any, image: Any, n_tokens: int) -> dict[str, Any]:
    prepared = models.prepare_generation(lvlm, [image], PROMPT, n_tokens)

    def capture() -> int:
        return int(prepared.capture()[0].generated_ids.shape[0])

    def trace() -> int:
        return lvlm.trace(image, PROMPT, max_new_tokens=n_tokens).n_steps

    return {"generate": prepared.generate, "capture": capture, "trace": trace}


def bench_model(name: str, directory: Path, n_tokens: int, repeats: int) -> dict[str, Any]:
    lvlm = evolens.load(directory, device="cpu")
    image = models.test_image()
    times, results = common.interleave(variants(lvlm, image, n_tokens), repeats, desc=name)
    med = {k: common.median(v) for k, v in times.items()}
    roles = lvlm.loaded.roles
    return {
        "model": name,
        "n_layers": roles.n_layers,
        "d_model": roles.d_model,
        "vocab": roles.vocab_size,
        "params": sum(p.numel() for p in lvlm.model.parameters()),
        "max_new_tokens": n_tokens,
        "tokens_generated": results,
        "times_s": times,
        "median_s": med,
        "capture_over_generate": med["capture"] / med["generate"],
        "trace_over_generate": med["trace"] / med["generate"],
        "tokens_per_s": {k: results[k] / v for k, v in med.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=32, help="max new tokens (default 32)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (default 5)")
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    common.set_threads(args.threads)
    if args.quick:
        args.tokens, args.repeats = 8, 2
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tiny = save_tiny("llava", Path(tmp) / "tiny", n_layers=4)
        out.append(bench_model("tiny llava (testing)", tiny, args.tokens, args.repeats))
        mid_geometry = models.Geometry(n_layers=4, hidden=256, intermediate=512, heads=4, kv_heads=4)
        mid = models.save_random_llava(Path(tmp) / "mid", mid_geometry if args.quick else models.MID)
        out.append(bench_model("mid llava (random)", mid, args.tokens, args.repeats))
    print(f"capture overhead, {torch.get_num_threads()} threads, {common.cpu_model()}")
    rows = []
    for r in out:
        for v in ("generate", "capture", "trace"):
            rows.append(
                [
                    r["model"],
                    f"L={r['n_layers']} d={r['d_model']}",
                    v,
                    r["tokens_generated"][v],
                    r["median_s"][v],
                    r["tokens_per_s"][v],
                    r["median_s"][v] / r["median_s"]["generate"],
                ]
            )
    print(common.table(["model", "size", "variant", "tokens", "median s", "tokens/s", "x generate"], rows))
    path = common.write_result("capture_overhead", {"settings": vars(args), "models": out}, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
