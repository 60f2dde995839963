"""Operations dispatched per generated token: a device-independent measure of launch overhead (CPU is enough).

On a GPU in eager mode each non-view ATen operation is at least one kernel launch, which costs a few microseconds
of CPU time however small it is; counting them on a CPU (``evolens.testing.dispatch.DispatchCounter``) tells how a
code path will behave there. Two stages:

* **analysis** — ``compute_layer_metrics`` with the ``"whole"`` strategy (the accelerator design, forced on the
  CPU) and the ``"blocked"`` one (the CPU design), at LLaVA-1.5-7B's 33 layer boundaries and 32,000-token
  vocabulary. The whole-chunk strategy runs with the chunk an H200 gets for this geometry (``--chunk-budget``,
  default 8 GiB: 254 steps); its count per token must not grow with the trace.
* **capture** — operations a decoding step adds to plain ``generate``: evolens's hooks, and
  ``output_hidden_states=True`` (what the hand-written peer uses), on a random 32-layer LLaVA of width 64.

    .venv/bin/python bench/dispatch_count.py            # 128 and 1,024 tokens (about 2 minutes)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

import models
from evolens.lens import LogitLens
from evolens.metrics import compute_layer_metrics
from evolens.metrics.compute import DEVICE_MAX_CHUNK_BYTES, auto_chunk_steps
from evolens.models.roles import LogitTransform
from evolens.testing.dispatch import DispatchCounter

N_LAYERS, VOCAB = 32, 32000


def analysis_ops(n_tokens: int, strategy: str, chunk_budget: int) -> dict[str, Any]:
    torch.manual_seed(0)
    d_model = 64  # the count depends on neither the width nor, at a given chunking, the vocabulary
    # "whole": the chunks an accelerator gets at 32,000 tokens (counted on a 1,024-token head, which a CPU
    # holds in memory); "blocked": the real vocabulary, which sets its block size
    vocab = 1024 if strategy == "whole" else VOCAB
    chunk = auto_chunk_steps(N_LAYERS + 1, VOCAB, chunk_budget, strategy) if strategy == "whole" else None
    lens = LogitLens(nn.RMSNorm(d_model), nn.Linear(d_model, vocab, bias=False), LogitTransform(), N_LAYERS)
    states = torch.randn(N_LAYERS + 1, n_tokens, d_model)
    targets = torch.randint(0, vocab, (n_tokens,))
    with DispatchCounter() as counter:
        compute_layer_metrics(states, lens, targets, strategy=strategy, chunk_steps=chunk)
    return {
        "stage": "analysis",
        "variant": strategy,
        "tokens": n_tokens,
        "ops": counter.compute_ops,
        "ops_per_token": counter.compute_ops / n_tokens,
        "top": counter.by_name.most_common(5),
    }


def capture_ops(lvlm: Any, n_tokens: int) -> list[dict[str, Any]]:
    prepared = models.prepare_generation(lvlm, [models.test_image()], "Please describe this image.", n_tokens)

    def hooks() -> Any:
        return prepared.capture(storage_device=None)

    def hidden_states() -> Any:
        with torch.inference_mode():
            return lvlm.model.generate(
                **prepared.on_device,
                generation_config=prepared.config,
                output_hidden_states=True,
                return_dict_in_generate=True,
            )

    counts = {}
    for name, fn in {
        "generate": prepared.generate,
        "evolens hooks": hooks,
        "output_hidden_states": hidden_states,
    }.items():
        with DispatchCounter() as counter:
            fn()
        counts[name] = counter.compute_ops
    return [
        {
            "stage": "capture",
            "variant": name,
            "tokens": n_tokens,
            "ops": counts[name],
            "ops_per_token": (counts[name] - counts["generate"]) / n_tokens,
        }
        for name in ("evolens hooks", "output_hidden_states")
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, nargs="+", default=[128, 1024])
    parser.add_argument(
        "--chunk-budget", type=int, default=DEVICE_MAX_CHUNK_BYTES, help="whole-chunk budget in bytes (8 GiB)"
    )
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    common.set_threads(args.threads)
    if args.quick:
        args.tokens = [16, 64]
    model, processor = models.random_llava(models.Geometry(N_LAYERS, 64, 128, 4, 4), dtype=torch.float32)
    lvlm = models.in_memory_lvlm(model, processor, "random 32-layer LLaVA, width 64")
    rows: list[dict[str, Any]] = []
    for n in args.tokens:
        rows += [analysis_ops(n, s, args.chunk_budget) for s in ("whole", "blocked")]
        rows += capture_ops(lvlm, n)
    table = common.table(
        ["stage", "variant", "tokens", "ops", "ops / token"],
        [[r["stage"], r["variant"], r["tokens"], r["ops"], r["ops_per_token"]] for r in rows],
    )
    print("operations dispatched (non-view ATen ops); capture: ops a decoding step adds to plain generate")
    print(table)
    path = common.write_result(
        "dispatch_count",
        {
            "settings": vars(args),
            "whole_chunk_steps": auto_chunk_steps(N_LAYERS + 1, VOCAB, args.chunk_budget, "whole"),
            "rows": rows,
        },
        args.out,
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
