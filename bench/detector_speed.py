"""The per-token detectors of a trace, token by token in loops (the definitions in ``evolens.testing.detectors``:
how evolens ran them before) against every token at once (what ``analyze_trace`` and the decoding rules do now).

Two tables. The JSD critical layer alone — the costliest detector: an L1 fit of two medians at each of ~L splits —
as a loop per token, one vectorised call per token (as a decoding rule did, row by row) and every token at once.
Then every detector ``analyze_trace`` runs (both critical layers, the stage critical layer, the stage medians and the
mutation layers over the trace's layer baseline), per token in loops against all at once. On synthetic curves of a
32-layer model (LLaVA-1.5-7B's depth) and an 80-layer one (70B class) — a high JSD segment, a drop at a random layer
to a low plateau, an occasional spike after; the probability surging at the drop; top-1 flips — the variants run
interleaved and must find the same layers.

    .venv/bin/python bench/detector_speed.py
    .venv/bin/python bench/detector_speed.py --quick      # 64 tokens, 3 rounds
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

from evolens.analysis import DetectorParams, critical_layer_from_jsd, critical_layers_from_jsd
from evolens.analysis.detectors import stage_critical_layer
from evolens.analysis.params import NOT_FOUND
from evolens.analysis.trace_analysis import _detect_steps
from evolens.testing.detectors import (
    loop_critical_layer,
    loop_critical_layer_from_prob,
    loop_mutation_layers,
)


def jsd_curves(n_layers: int, n_tokens: int, seed: int = 0) -> np.ndarray:
    """``[L, T]`` curves: log-uniform high JSD before a drop at a random layer in ``[L/4, L/2]``, a low plateau
    after it, a spike on one token in five."""
    rng = np.random.default_rng(seed)
    drop = rng.integers(n_layers // 4, n_layers // 2 + 1, n_tokens)
    layers = np.arange(n_layers)[:, None]
    high = 10 ** rng.uniform(np.log10(0.08), np.log10(0.5), (n_layers, n_tokens))
    low = 10 ** rng.uniform(np.log10(5e-4), np.log10(5e-3), (n_layers, n_tokens))
    jsd = np.where(layers < drop, high, low)
    spiked = rng.random(n_tokens) < 0.2
    at = rng.integers(n_layers // 2 + 2, n_layers, n_tokens)
    jsd[at[spiked], np.flatnonzero(spiked)] = 0.3
    return jsd


def token_curves(jsd: np.ndarray, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``[L + 1, T]`` probability of the generated token (low before the JSD drop, high after it), top-1 ids (the
    same token throughout, a flip at the last layers on one token in five) and their probabilities."""
    rng = np.random.default_rng(seed)
    n_layers, n_tokens = jsd.shape
    drop = (jsd < 0.05).argmax(axis=0)
    states = np.arange(n_layers + 1)[:, None]
    probs = np.where(
        states <= drop, rng.uniform(0.0, 0.02, (n_layers + 1, n_tokens)), rng.uniform(0.5, 0.95, 1)
    )
    ids = np.full((n_layers + 1, n_tokens), 3)
    flipped = rng.random(n_tokens) < 0.2
    ids[n_layers - 2 :, flipped] = 5
    return probs, ids, np.maximum(probs, 0.05)


def loop_detectors(
    jsd: np.ndarray,
    probs: np.ndarray,
    ids: np.ndarray,
    top1: np.ndarray,
    base: np.ndarray,
    params: DetectorParams,
) -> list[tuple[int, float | None, float | None, list[int]]]:
    """Every detector of ``analyze_trace``, token by token: each token's stage critical layer, the median JSD of
    its two stages (``None`` for a stage without a transition) and its mutation layers."""
    found = []
    first = params.first_layer
    for t in range(jsd.shape[1]):
        by_prob = loop_critical_layer_from_prob(probs[:, t], params)
        critical = stage_critical_layer(by_prob, loop_critical_layer(jsd[:, t], params), params)
        if critical == NOT_FOUND:
            found.append((critical, None, None, []))
            continue
        rapid = float(np.median(jsd[first:critical, t])) if critical > first else None
        plateau = float(np.median(jsd[critical:, t])) if critical < jsd.shape[0] else None
        layers = loop_mutation_layers(jsd[:, t], critical, params, ids[:, t], top1[:, t], base)
        found.append((critical, rapid, plateau, [m.layer for m in layers]))
    return found


def all_detectors(
    jsd: np.ndarray,
    probs: np.ndarray,
    ids: np.ndarray,
    top1: np.ndarray,
    base: np.ndarray,
    params: DetectorParams,
) -> list[tuple[int, float | None, float | None, list[int]]]:
    """The same, every token at once (``analyze_trace``'s own step)."""
    _, _, critical, rapid, plateau, mutations = _detect_steps(jsd, probs, ids, top1, params, base)
    return [
        (
            int(c),
            None if np.isnan(r) else float(r),
            None if np.isnan(p) else float(p),
            [m.layer for m in found],
        )
        for c, r, p, found in zip(critical, rapid, plateau, mutations, strict=True)
    ]


def compare(
    variants: dict[str, Callable[[], Any]], n_tokens: int, repeats: int, desc: str
) -> tuple[list[list[Any]], dict[str, Any], Any]:
    """Run ``variants`` interleaved (the first is the loop the others are compared with) and check they found the
    same: the table rows (variant, median s, ms/token, x faster than the loop), the summary and what they found."""
    times, found = common.interleave(variants, repeats, desc=desc)
    reference = next(iter(found.values()))
    if any(layers != reference for layers in found.values()):
        raise SystemExit(f"{desc}: the variants found different layers")
    med = {k: common.median(v) for k, v in times.items()}
    loop = next(iter(med.values()))
    rows = [[name, seconds, seconds / n_tokens * 1e3, loop / seconds] for name, seconds in med.items()]
    summary = {
        "tokens": n_tokens,
        "times_s": times,
        "median_s": med,
        "ms_per_token": {k: v / n_tokens * 1e3 for k, v in med.items()},
        "speedup_over_loop": {k: loop / v for k, v in med.items()},
    }
    return rows, summary, reference


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=512, help="tokens of the trace (default 512)")
    parser.add_argument("--layers", type=int, nargs="+", default=[32, 80])
    parser.add_argument("--repeats", type=int, default=5)
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    common.set_threads(args.threads)
    if args.quick:
        args.tokens, args.repeats = 64, 3
    params = DetectorParams()
    rows: list[list[Any]] = []
    results: dict[str, Any] = {}
    for n_layers in args.layers:
        jsd = jsd_curves(n_layers, args.tokens)
        columns = [np.ascontiguousarray(jsd[:, t]) for t in range(args.tokens)]
        variants = {
            "loop per token (before)": lambda cs=columns: [loop_critical_layer(c, params) for c in cs],
            "one call per token": lambda cs=columns: [critical_layer_from_jsd(c, params) for c in cs],
            "all tokens at once": lambda j=jsd: critical_layers_from_jsd(j, params).tolist(),
        }
        table, results[str(n_layers)], found = compare(
            variants, args.tokens, args.repeats, f"{n_layers} layers"
        )
        results[str(n_layers)]["found"] = int(sum(layer != NOT_FOUND for layer in found))
        rows += [[n_layers, args.tokens, *row] for row in table]
    print(f"JSD critical layers, {args.repeats} interleaved rounds, {common.cpu_model()}")
    print(common.table(["layers", "tokens", "variant", "median s", "ms/token", "x faster than loop"], rows))
    print("every variant found the same critical layers")

    rows, whole = [], {}
    for n_layers in args.layers:
        jsd = jsd_curves(n_layers, args.tokens)
        probs, ids, top1 = token_curves(jsd)
        base = np.median(jsd, axis=1)  # the trace's layer baseline, as analyze_trace takes it
        curves = (jsd, probs, ids, top1, base, params)
        variants = {
            "loop per token (before)": lambda c=curves: loop_detectors(*c),
            "all tokens at once": lambda c=curves: all_detectors(*c),
        }
        desc = f"{n_layers} layers, every detector"
        table, whole[str(n_layers)], layers = compare(variants, args.tokens, args.repeats, desc)
        whole[str(n_layers)]["critical_found"] = sum(token[0] != NOT_FOUND for token in layers)
        whole[str(n_layers)]["tokens_with_mutations"] = sum(bool(token[3]) for token in layers)
        rows += [[n_layers, args.tokens, *row] for row in table]
    print(f"every detector of analyze_trace, {args.repeats} interleaved rounds")
    print(common.table(["layers", "tokens", "variant", "median s", "ms/token", "x faster than loop"], rows))
    print("both found the same critical layers, stage medians and mutation layers")
    payload = {"settings": vars(args), "results": results, "every_detector": whole}
    path = common.write_result("detector_speed", payload, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
