"""Lens + metrics: evolens against the paper's code path and against this machine's GEMM speed (issue 8, items 1-2).

At LLaVA-1.5-7B geometry (d = 4096, vocabulary 32,000, 33 states; random final norm and head), for each number of
generated tokens, interleaved in one run and repeated (medians):

* **paper path** — what the paper's code does: the language head applied per layer per token (a matrix-vector
  product), softmax and JSD per adjacent pair in float64, every state's distribution kept in memory. It costs the
  same per token at any length, so at long lengths it runs on ``--paper-tokens`` evenly spread tokens and its
  time is scaled to the whole trace (the JSON says how many tokens were timed).
* **evolens** — ``compute_layer_metrics``: the head as one batched float32 GEMM per chunk, float32 metrics.
* **evolens fast** — the same with ``LogitLens.with_matmul_dtype(torch.bfloat16)``: bfloat16 GEMM, float32 norm,
  softmax and metrics.
* **matmul fp32 / bf16** — a bare ``torch.matmul`` of the lens's GEMM shape: the machine's GEMM speed, from which the
  GEMM-bound minimum of the stage follows (FLOPs / GFLOP/s).

Every evolens number is checked against the float64 paper path on the tokens it ran; the exact path must agree
within TOLERANCE (exit status 1 otherwise), the fast mode's error is reported.

    .venv/bin/python bench/lens_speed.py            # 64 and 256 tokens (~8 min on 2 busy cores)
    .venv/bin/python bench/lens_speed.py --quick    # 16 tokens, d = 1024
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

from evolens.lens import LogitLens
from evolens.metrics import LayerMetrics, auto_chunk_steps, compute_layer_metrics
from evolens.models.roles import LogitTransform

LN2 = math.log(2.0)

#: Largest |evolens float32 - float64 paper path| allowed (per (layer, step) value).
TOLERANCE = {
    "target_logprob_nats": 1e-3,
    "entropy_bits": 1e-3,
    "jsd_bits": 1e-4,
    "kl_to_last_bits": 1e-3,
    "jsd_paper_rel": 1e-3,  # relative to the largest paper value
}


def make_case(n_layers: int, d_model: int, vocab: int, n_steps: int, seed: int = 0) -> dict[str, Any]:
    """A random final norm and head, residual states that drift over layers, and the last layer's argmax."""
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    g = torch.Generator().manual_seed(seed)
    norm = LlamaRMSNorm(d_model, eps=1e-5)
    head = nn.Linear(d_model, vocab, bias=False)
    with torch.no_grad():
        norm.weight.copy_(0.5 + torch.rand(d_model, generator=g))
        head.weight.copy_(torch.randn(vocab, d_model, generator=g) * (3.0 / d_model**0.5))
    # a residual stream: each layer adds a random update, so adjacent layers are close and early/late differ
    states = torch.cumsum(torch.randn(n_layers + 1, n_steps, d_model, generator=g), 0)
    lens = LogitLens(norm, head, LogitTransform(), n_layers)
    with torch.inference_mode():
        targets = lens.logits(states[-1:]).argmax(-1)[0]
    return {"lens": lens, "states": states, "targets": targets}


@torch.inference_mode()
def paper_path(
    states: torch.Tensor, lens: LogitLens, targets: torch.Tensor, steps: list[int]
) -> dict[str, torch.Tensor]:
    """The paper's code path on ``steps``: head per layer per token, float64 softmax and JSD per pair, all kept."""
    n_boundaries = states.shape[0]
    kept: list[torch.Tensor] = []  # every distribution stays in memory, as in the paper's code
    out: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("logprob", "rank", "entropy", "jsd", "jsd_paper", "kl_last")
    }
    for t in steps:
        probs = []
        for layer in range(n_boundaries):
            logits = lens.lm_head(lens.final_norm(states[layer, t]))  # one [d] -> [vocab] product
            probs.append(torch.softmax(logits.double(), -1))
        p_all = torch.stack(probs)  # [L + 1, vocab] float64
        kept.append(p_all)
        target = int(targets[t])
        p_t = p_all[:, target]
        out["logprob"].append(p_t.log())
        out["rank"].append((p_all > p_t[:, None]).sum(-1) + 1)
        out["entropy"].append(-torch.special.xlogy(p_all, p_all).sum(-1) / LN2)
        last = p_all[-1]
        out["kl_last"].append((torch.special.xlogy(last, last) - last * p_all.log()).sum(-1) / LN2)
        jsd, paper = [], []
        for layer in range(n_boundaries - 1):  # per pair, float64
            p, q = p_all[layer], p_all[layer + 1]
            m = 0.5 * (p + q)
            jsd.append(
                0.5 * (torch.special.xlogy(p, p / m).sum() + torch.special.xlogy(q, q / m).sum()) / LN2
            )
            kl1 = F.kl_div(p.log(), m, reduction="none").mean(-1)
            kl2 = F.kl_div(q.log(), m, reduction="none").mean(-1)
            paper.append(0.5 * (kl1 + kl2))
        out["jsd"].append(torch.stack(jsd))
        out["jsd_paper"].append(torch.stack(paper))
    result = {k: torch.stack(v, dim=1) for k, v in out.items()}  # [layers, len(steps)]
    result["kept_bytes"] = torch.tensor(sum(p.numel() * p.element_size() for p in kept))
    return result


def agreement(metrics: LayerMetrics, ref: dict[str, torch.Tensor], steps: list[int]) -> dict[str, float]:
    """Largest differences between evolens metrics (at ``steps``) and the float64 paper path."""
    idx = torch.tensor(steps)

    def diff(name: str, key: str) -> float:
        return float((getattr(metrics, name)[:, idx].double() - ref[key]).abs().max())

    paper_scale = float(ref["jsd_paper"].abs().max())
    return {
        "target_logprob_nats": diff("target_logprobs", "logprob"),
        "entropy_bits": diff("entropy_bits", "entropy"),
        "jsd_bits": diff("jsd_bits", "jsd"),
        "kl_to_last_bits": diff("kl_to_last_bits", "kl_last"),
        "jsd_paper_rel": diff("jsd_paper", "jsd_paper") / paper_scale if paper_scale else 0.0,
        "rank_equal_share": float((metrics.target_ranks[:, idx] == ref["rank"]).double().mean()),
    }


def spread(n_steps: int, n: int) -> list[int]:
    n = min(n, n_steps)
    return sorted({round(i * (n_steps - 1) / max(1, n - 1)) for i in range(n)})


def bench_size(
    case: dict[str, Any], n_steps: int, repeats: int, paper_tokens: int, warmup: bool
) -> dict[str, Any]:
    lens: LogitLens = case["lens"]
    states = case["states"][:, :n_steps].contiguous()
    targets = case["targets"][:n_steps]
    n_boundaries, _, d_model = states.shape
    vocab = lens.vocab_size
    fast = lens.with_matmul_dtype(torch.bfloat16)
    chunk = min(n_steps, auto_chunk_steps(n_boundaries, vocab))
    rows = n_boundaries * chunk
    x32 = torch.randn(rows, d_model)
    weight = lens.lm_head.weight
    assert isinstance(weight, torch.Tensor)
    w32 = weight.detach()
    x16, w16 = x32.bfloat16(), w32.bfloat16()

    paper_steps = spread(n_steps, paper_tokens)
    blocks = [paper_steps[i::repeats] for i in range(repeats)]  # one block of tokens per round
    paper_refs: list[dict[str, torch.Tensor]] = []
    block_iter = iter(blocks)

    def paper_round() -> int:
        block = next(block_iter)
        paper_refs.append(paper_path(states, lens, targets, block))
        return len(block)

    variants = {
        "evolens": lambda: compute_layer_metrics(states, lens, targets),
        "evolens fast": lambda: compute_layer_metrics(states, fast, targets),
        "matmul fp32": lambda: torch.matmul(x32, w32.T),
        "matmul bf16": lambda: torch.matmul(x16, w16.T),
    }
    if warmup:
        common.interleave(variants, 0, warmup=True, desc=f"{n_steps} tokens: warm-up")
    times: dict[str, list[float]] = {k: [] for k in ("paper", *variants)}
    results: dict[str, Any] = {}
    from tqdm.auto import tqdm

    with tqdm(total=repeats * (1 + len(variants)), desc=f"{n_steps} tokens", unit="run", leave=False) as bar:
        for _ in range(repeats):
            seconds, n_done = common.timed(paper_round)
            times["paper"].append(seconds / n_done * n_steps)  # per-token cost x trace length
            bar.update(1)
            for name, fn in variants.items():
                seconds, results[name] = common.timed(fn)
                times[name].append(seconds)
                bar.update(1)
    # the rounds ran the blocks in order: their columns line up with the blocks' steps
    ref = {k: torch.cat([p[k] for p in paper_refs], dim=1) for k in paper_refs[0] if k != "kept_bytes"}
    flat_steps = [s for b in blocks for s in b]

    med = {k: common.median(v) for k, v in times.items()}
    flops = 2.0 * n_boundaries * n_steps * d_model * vocab
    gemm_flops = 2.0 * rows * d_model * vocab
    gflops = {
        "fp32": gemm_flops / med["matmul fp32"] / 1e9,
        "bf16": gemm_flops / med["matmul bf16"] / 1e9,
    }
    bound = {"evolens": flops / (gflops["fp32"] * 1e9), "evolens fast": flops / (gflops["bf16"] * 1e9)}
    return {
        "n_steps": n_steps,
        "n_states": n_boundaries,
        "d_model": d_model,
        "vocab": vocab,
        "chunk_steps": chunk,
        "repeats": repeats,
        "paper_tokens_timed": len(paper_steps),
        "paper_kept_bytes_full_trace": n_boundaries * n_steps * vocab * 8,
        "times_s": times,
        "median_s": med,
        "speedup_vs_paper": {k: med["paper"] / med[k] for k in ("evolens", "evolens fast")},
        "fast_vs_exact": med["evolens"] / med["evolens fast"],
        "lens_flops": flops,
        "matmul_gflops": gflops,
        "achieved_gflops": {k: flops / med[k] / 1e9 for k in ("evolens", "evolens fast")},
        "gemm_bound_s": bound,
        "times_gemm_bound": {k: med[k] / bound[k] for k in bound},
        "agreement": {
            "evolens": agreement(results["evolens"], ref, flat_steps),
            "evolens fast": agreement(results["evolens fast"], ref, flat_steps),
        },
    }


def bench_threads(case: dict[str, Any], n_steps: int, repeats: int, threads: list[int]) -> dict[str, Any]:
    """The fast-mode stage at several torch thread counts, interleaved."""
    lens = case["lens"].with_matmul_dtype(torch.bfloat16)
    states = case["states"][:, :n_steps].contiguous()
    targets = case["targets"][:n_steps]
    before = torch.get_num_threads()

    def at(n: int) -> Any:
        def go() -> Any:
            torch.set_num_threads(n)
            try:
                return compute_layer_metrics(states, lens, targets)
            finally:
                torch.set_num_threads(before)

        return go

    times, _ = common.interleave(
        {f"{n} threads": at(n) for n in threads}, repeats, desc="threads", warmup=False
    )
    return {"n_steps": n_steps, "times_s": times, "median_s": {k: common.median(v) for k, v in times.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, nargs="+", help="generated tokens per trace (default 64 256)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds per size (default 3)")
    parser.add_argument(
        "--paper-tokens", type=int, default=64, help="tokens the paper path runs on per size (default 64)"
    )
    parser.add_argument("--d-model", type=int, default=4096)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--layers", type=int, default=32, help="decoder layers (states = layers + 1)")
    parser.add_argument(
        "--compare-threads", type=int, nargs="*", default=None, help="thread counts to compare (default 1 2)"
    )
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    common.set_threads(args.threads)
    if args.quick:
        args.tokens = args.tokens or [16]
        args.d_model, args.paper_tokens = 1024, 16
    tokens = args.tokens or [64, 256]
    threads = args.compare_threads if args.compare_threads is not None else [1, 2]

    case = make_case(args.layers, args.d_model, args.vocab, max(tokens))
    sizes = [
        bench_size(case, n, args.repeats, args.paper_tokens, warmup=i == 0) for i, n in enumerate(tokens)
    ]
    thread_result = bench_threads(case, min(tokens), 2, threads) if len(threads) > 1 else None

    print(
        f"lens + metrics, d={args.d_model}, vocab={args.vocab}, {args.layers + 1} states; "
        f"{torch.get_num_threads()} threads, {common.cpu_model()}"
    )
    rows = []
    for s in sizes:
        med = s["median_s"]
        for name in ("paper", "evolens", "evolens fast"):
            rows.append(
                [
                    s["n_steps"],
                    name,
                    med[name],
                    med["paper"] / med[name],
                    s["achieved_gflops"].get(name, s["lens_flops"] / med[name] / 1e9),
                    s["times_gemm_bound"].get(name, med[name] / s["gemm_bound_s"]["evolens"]),
                ]
            )
    print(common.table(["tokens", "path", "median s", "speed-up", "GFLOP/s", "x GEMM bound"], rows))
    print()
    rows = [
        [
            s["n_steps"],
            f"{s['matmul_gflops']['fp32']:.1f}",
            f"{s['matmul_gflops']['bf16']:.1f}",
            s["chunk_steps"],
        ]
        for s in sizes
    ]
    print(common.table(["tokens", "matmul fp32 GFLOP/s", "matmul bf16 GFLOP/s", "chunk steps"], rows))
    print()
    keys = [*TOLERANCE, "rank_equal_share"]
    rows = []
    for s in sizes:
        for name in ("evolens", "evolens fast"):
            rows.append([s["n_steps"], name, *(f"{s['agreement'][name][k]:.2e}" for k in keys)])
    rows.append(["", "tolerance (exact)", *(f"{TOLERANCE[k]:.0e}" for k in TOLERANCE), "-"])
    print("largest |difference| from the float64 paper path")
    print(common.table(["tokens", "path", *keys], rows))
    if thread_result:
        print()
        print(f"fast mode, {thread_result['n_steps']} tokens, by torch threads:")
        base = thread_result["median_s"][f"{threads[0]} threads"]
        print(
            common.table(
                ["threads", "median s", f"vs {threads[0]}"],
                [[k, v, base / v] for k, v in thread_result["median_s"].items()],
            )
        )
    ok = all(s["agreement"]["evolens"][k] <= tol for s in sizes for k, tol in TOLERANCE.items())
    path = common.write_result(
        "lens_speed",
        {
            "settings": vars(args),
            "tolerance": TOLERANCE,
            "within_tolerance": ok,
            "sizes": sizes,
            "threads": thread_result,
        },
        args.out,
    )
    print(f"\nexact path within tolerance: {ok}; wrote {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
