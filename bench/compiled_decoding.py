"""Compiled decoding on the CPU: a static KV cache and a ``torch.compile``-d decoding step, traced and plain
(issue 14, item 5), in one interleaved run.

On a GPU the point of the compiled step is CUDA graphs (``bench/gpu.py`` measures that); on a CPU inductor still
fuses the step's small operations and removes most of the Python work of an eager step, which dominates small and
mid-size models. Variants, greedy decoding of the same batch, interleaved and repeated (medians; one untimed round
first, which is also where the compiling happens):

* **generate** — plain eager ``model.generate``;
* **generate_compiled** — plain ``generate`` with Hugging Face's own static cache and compiled forward;
* **capture** / **capture_compiled** — generation with evolens's recording, eager / compiled steps;
* **trace** / **trace_compiled** — ``lvlm.trace`` end to end, eager / ``TraceOptions(compile=CompileOptions())``.

Also reported: the first call of each compiled variant (compiling included), and how far the compiled trace's
numbers are from the eager trace's (the same tokens; states, probabilities and JSD).

    .venv/bin/python bench/compiled_decoding.py --threads 2
    .venv/bin/python bench/compiled_decoding.py --quick
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

import models
from evolens.api import TraceOptions
from evolens.capture.compiled import CompileOptions

PROMPT = "Please describe this image in detail."
#: small: the toy LVLM's decoder sizes, where an eager step is mostly Python and dispatch; mid: more arithmetic
GEOMETRIES = {
    "small": models.Geometry(n_layers=8, hidden=128, intermediate=512, heads=4, kv_heads=4),
    "mid": models.MID,
}


def agreement(eager: list[Any], compiled: list[Any]) -> dict[str, Any]:
    """How far the compiled traces are from the eager ones: equal tokens, and the largest differences of the
    states, the generated tokens' probabilities and the adjacent-layer JSD (bits) over the common steps."""
    numbers, reference = common.evolens_numbers(compiled), common.evolens_numbers(eager)
    first_different = common.first_different_steps(numbers, reference)
    worst = common.largest_differences(numbers, reference)
    states = 0.0
    for a, b in zip(eager, compiled, strict=True):
        n = min(a.n_steps, b.n_steps)
        states = max(
            states, float((a.hidden_states[:, :n].float() - b.hidden_states[:, :n].float()).abs().max())
        )
    return {
        "same_tokens": all(step is None for step in first_different),
        "largest_difference": {"hidden_state": states, **worst},
    }


def bench_config(lvlm: Any, batch: int, n_tokens: int, repeats: int) -> dict[str, Any]:
    image = models.test_image()
    images, prompts = [image] * batch, [PROMPT] * batch
    prepared = models.prepare_generation(lvlm, images, PROMPT, n_tokens)
    options = CompileOptions()
    outputs: dict[str, Any] = {}

    def trace(compile_options: CompileOptions | None) -> int:
        opts = TraceOptions.from_flat(max_new_tokens=n_tokens, batch_size=batch, compile=compile_options)
        traces = lvlm.trace(images=images, prompts=prompts, options=opts)
        outputs["trace_compiled" if compile_options else "trace"] = traces
        return sum(t.n_steps for t in traces)

    def capture(compile_options: CompileOptions | None) -> int:
        return sum(int(c.generated_ids.shape[0]) for c in prepared.capture(compile_options=compile_options))

    variants = {
        "generate": prepared.generate,
        "generate_compiled": lambda: prepared.generate_compiled(options),
        "capture": lambda: capture(None),
        "capture_compiled": lambda: capture(options),
        "trace": lambda: trace(None),
        "trace_compiled": lambda: trace(options),
    }
    first_call_s = {}
    for name in ("generate_compiled", "capture_compiled", "trace_compiled"):
        start = time.perf_counter()
        variants[name]()
        first_call_s[name] = time.perf_counter() - start
    times, tokens = common.interleave(variants, repeats, desc=f"batch {batch} x {n_tokens} tokens")
    return {
        **common.generation_timings(batch, n_tokens, repeats, times, tokens),
        "first_call_s": first_call_s,
        "compiled_vs_eager_trace": agreement(outputs["trace"], outputs["trace_compiled"]),
    }


def summary(payload: dict[str, Any]) -> str:
    rows, notes = [], []
    for r in payload["results"]:
        for name, seconds in r["median_s"].items():
            first = r["first_call_s"].get(name)
            rows.append(
                [
                    r["geometry"]["hidden"],
                    r["batch"],
                    r["tokens"][name],
                    name,
                    seconds,
                    r["over_generate"][name],
                    r["tokens_per_s"][name],
                    "-" if first is None else round(first, 1),
                ]
            )
        agree = r["compiled_vs_eager_trace"]
        notes.append(
            f"d = {r['geometry']['hidden']}, batch {r['batch']} x {r['max_new_tokens']}: compiled trace vs eager trace, same tokens: "
            f"{agree['same_tokens']}; largest differences "
            + ", ".join(f"{k} {v:.1e}" for k, v in agree["largest_difference"].items())
        )
    headers = [
        "d_model",
        "batch",
        "generated",
        "variant",
        "median s",
        "x generate",
        "tokens/s",
        "first call s",
    ]
    title = f"random LLaVAs on {payload['machine_threads']} CPU threads, float32"
    return "\n".join([title, common.table(headers, rows), *notes])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=128, help="max new tokens (default 128)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes (default 1 8)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument(
        "--geometry",
        nargs="+",
        default=list(GEOMETRIES),
        choices=list(GEOMETRIES),
        help="decoder sizes (default: small mid)",
    )
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    common.set_threads(args.threads)
    if args.quick:
        args.tokens, args.batch, args.repeats = 32, [1], 2
    payload: dict[str, Any] = {
        "settings": vars(args),
        "machine_threads": torch.get_num_threads(),
        "results": [],
    }
    path = None
    for name in args.geometry:
        geometry = GEOMETRIES[name]
        # seed 1: the random mid-size decoder of seed 0 emits its EOS after 16 tokens
        model, processor = models.random_llava(geometry, seed=1)
        label = f"random LLaVA, {geometry.n_layers} layers, d = {geometry.hidden}"
        lvlm = models.in_memory_lvlm(model, processor, label)
        for batch in args.batch:
            result = bench_config(lvlm, batch, args.tokens, args.repeats)
            payload["results"].append({"model": label, "geometry": vars(geometry), **result})
            path = common.write_result("compiled_decoding", payload, args.out)
            print(summary(payload), flush=True)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
