"""Cost of the decoding strategies (issue 18): the time per generated token of each strategy as a multiple of greedy
decoding's, on the built-in toy LVLM (no download, CPU).

Every strategy traces the same held-out toy items — captions, yes/no and one-word questions (mostly one-token
answers: the prompt pass weighs heavily in the time per token), then captions only (longer answers) — with
``lvlm.trace`` — generation with the residual-stream capture, the lens and every metric, as ``evolens decode`` runs
them — and the strategies are interleaved (greedy, mutation-skip, ..., greedy, ...), each repeated, medians compared,
so a noisy machine slows all of them alike. A strategy's time per token is its median seconds over the tokens it
generated (each strategy may stop at other lengths); the multiple is that over greedy's.

    PYTHONPATH=src .venv/bin/python bench/decode.py
    PYTHONPATH=src .venv/bin/python bench/decode.py --quick
    PYTHONPATH=src .venv/bin/python bench/decode.py --strategies greedy,dola,vcd --tokens 48 --items 16
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

import evolens
from evolens import toy
from evolens.api import TraceOptions
from evolens.data.amber import GENERATIVE
from evolens.decoding import parse_strategies

ALL = "greedy,mutation-skip,mutation-recompute,critical-contrast,dola,vcd,icd"


def toy_items(root: Path, n_items: int, *, captions_only: bool) -> list[Any]:
    """The first ``n_items`` items of a held-out toy set: captions and questions interleaved by scene, or captions
    only (longer answers, so the per-call prompt pass weighs less in the time per token)."""
    n_scenes = max(4, n_items if captions_only else n_items // 8)
    data = toy.export_testset(root / "set", n_typical=2, n_atypical=n_scenes - 2)
    items = list(toy.ToyTestSet(data))
    captions = [i for i in items if i.annotations.get("task") == GENERATIVE]
    if captions_only:
        return captions[:n_items]
    others = [i for i in items if i.annotations.get("task") != GENERATIVE]
    mixed = [item for pair in zip(captions, others, strict=False) for item in pair] + others[len(captions) :]
    return mixed[:n_items]


def variants(lvlm: Any, items: list[Any], strategies: list[Any], n_tokens: int, batch: int) -> dict[str, Any]:
    images = [i.image for i in items]
    prompts = [i.prompt for i in items]

    def traced(strategy: Any) -> Any:
        options = TraceOptions.from_flat(max_new_tokens=n_tokens, batch_size=batch, keep_hidden_states=False)
        options = replace(options, decoding=strategy)

        def run() -> list[list[int]]:
            traces = lvlm.trace(images=images, prompts=prompts, options=options)
            return [[int(i) for i in t.generated_ids.tolist()] for t in traces]

        return run

    return {s.name: traced(s) for s in strategies}


def bench_set(lvlm: Any, items: list[Any], strategies: list[Any], args: Any, label: str) -> dict[str, Any]:
    """Time every strategy on ``items``, interleaved; print the table and return the numbers."""
    calls = variants(lvlm, items, strategies, args.tokens, args.batch)
    times, results = common.interleave(calls, args.repeats, desc=label)
    greedy_ids = results["greedy"]
    base = common.median(times["greedy"]) / sum(len(ids) for ids in greedy_ids)
    rows, per_strategy = [], []
    for s in strategies:
        ids = results[s.name]
        n_tokens = sum(len(x) for x in ids)
        median_s = common.median(times[s.name])
        per_token = median_s / n_tokens
        changed = sum(a != b for a, b in zip(ids, greedy_ids, strict=True))
        per_strategy.append(
            {
                "strategy": s.name,
                "parameters": s.to_dict(),
                "times_s": times[s.name],
                "median_s": median_s,
                "tokens_generated": n_tokens,
                "s_per_token": per_token,
                "multiple_of_greedy": per_token / base,
                "items_changed": changed,
            }
        )
        rows.append([s.name, n_tokens, median_s, 1000 * per_token, per_token / base, f"{changed}/{len(ids)}"])
    print(f"{label}: {len(items)} items, {torch.get_num_threads()} threads, {common.cpu_model()}")
    print(common.table(["strategy", "tokens", "median s", "ms/token", "x greedy", "items changed"], rows))
    return {"items": label, "n_items": len(items), "strategies": per_strategy}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--strategies", default=ALL, help=f"comma-separated (default: {ALL}); greedy is added"
    )
    parser.add_argument(
        "--param", action="append", default=[], help="a strategy parameter, e.g. vcd.alpha=0.5"
    )
    parser.add_argument("--tokens", type=int, default=32, help="max new tokens (default 32)")
    parser.add_argument("--items", type=int, default=16, help="toy items traced per call (default 16)")
    parser.add_argument("--batch", type=int, default=8, help="items per generate call (default 8)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (default 5)")
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    common.set_threads(args.threads)
    if args.quick:
        args.tokens, args.items, args.repeats = 12, 8, 2
    names = args.strategies if "greedy" in args.strategies.split(",") else f"greedy,{args.strategies}"
    strategies = parse_strategies(names, args.param)
    lvlm = evolens.load(toy.model_dir(), device="cpu")
    sets = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, captions_only in (("captions and questions", False), ("captions only", True)):
            items = toy_items(Path(tmp) / label.replace(" ", "-"), args.items, captions_only=captions_only)
            sets.append(bench_set(lvlm, items, strategies, args, label))
    settings = {**vars(args), "model": "evolens toy", "device": "cpu"}
    path = common.write_result("decode", {"settings": settings, "sets": sets}, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
