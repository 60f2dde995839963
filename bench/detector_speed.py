"""The JSD critical layer of every generated token: a loop over each token's splits (the definition, how evolens
found it before), one vectorised call per token (as a decoding rule's step did, row by row) and every token of a
trace at once (``critical_layers_from_jsd``: what ``analyze_trace`` and the decoding rules do now).

The change point behind it is the costliest per-token detector: an L1 fit of two medians at each of ~L splits, a
median of each segment per split. On synthetic JSD curves of a 32-layer model (LLaVA-1.5-7B's depth) and an
80-layer one (70B class) — a high segment, a drop at a random layer to a low plateau, an occasional spike after —
the three run interleaved; all three must find the same layers.

    .venv/bin/python bench/detector_speed.py
    .venv/bin/python bench/detector_speed.py --quick      # 64 tokens, 3 rounds
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

from evolens.analysis import DetectorParams, critical_layer_from_jsd, critical_layers_from_jsd
from evolens.testing.detectors import loop_critical_layer


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
        times, found = common.interleave(variants, args.repeats, desc=f"{n_layers} layers")
        reference = found["loop per token (before)"]
        if any(layers != reference for layers in found.values()):
            raise SystemExit(f"{n_layers} layers: the variants found different critical layers")
        med = {k: common.median(v) for k, v in times.items()}
        base = med["loop per token (before)"]
        for name, seconds in med.items():
            rows.append([n_layers, args.tokens, name, seconds, seconds / args.tokens * 1e3, base / seconds])
        results[str(n_layers)] = {
            "tokens": args.tokens,
            "found": int(sum(layer != -1 for layer in reference)),
            "times_s": times,
            "median_s": med,
            "ms_per_token": {k: v / args.tokens * 1e3 for k, v in med.items()},
            "speedup_over_loop": {k: base / v for k, v in med.items()},
        }
    print(f"JSD critical layers, {args.repeats} interleaved rounds, {common.cpu_model()}")
    print(common.table(["layers", "tokens", "variant", "median s", "ms/token", "x faster than loop"], rows))
    print("every variant found the same critical layers")
    path = common.write_result("detector_speed", {"settings": vars(args), "results": results}, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
