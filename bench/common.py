"""Shared helpers of the benchmarks: the machine, interleaved timing, tables, JSON results.

Every benchmark reports *ratios taken within one run*: the compared variants are interleaved (A, B, C, A, B, C,
...), each is repeated, and the medians are compared, so a noisy, shared machine slows all of them alike.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or the platform's processor string)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    """The vector extensions relevant to GEMM speed (AVX-512, AMX...) that the CPU reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
                have = set(line.split(":", 1)[1].split())
                return [f for f in wanted if f in have]
    except OSError:
        pass
    return []


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import transformers

    import evolens

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cpu_flags": cpu_flags(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "transformers": transformers.__version__,
        "evolens": getattr(evolens, "__version__", "unknown"),
        "python": platform.python_version(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average": list(os.getloadavg()),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports kilobytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) * (1 if sys.platform == "darwin" else 1024)


def sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds one call of ``fn`` takes (CUDA synchronised), and its result."""
    sync()
    start = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - start, out


def interleave(
    variants: dict[str, Callable[[], Any]],
    repeats: int,
    *,
    warmup: bool = True,
    desc: str = "timing",
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Run every variant once per round, ``repeats`` rounds, and return each one's times and last result.

    With ``warmup`` one untimed round runs first (allocator, thread pool, oneDNN kernels).
    """
    from tqdm.auto import tqdm

    times: dict[str, list[float]] = {name: [] for name in variants}
    results: dict[str, Any] = {}
    rounds = repeats + (1 if warmup else 0)
    with tqdm(total=rounds * len(variants), desc=desc, unit="run", leave=False) as bar:
        for r in range(rounds):
            for name, fn in variants.items():
                seconds, results[name] = timed(fn)
                if r or not warmup:
                    times[name].append(seconds)
                bar.update(1)
    return times, results


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def generation_timings(
    batch: int, n_tokens: int, repeats: int, times: dict[str, list[float]], tokens: dict[str, int]
) -> dict[str, Any]:
    """The timings of interleaved generation variants (:func:`interleave`'s ``times`` and, as results, the tokens
    each generated) as the GPU and compiled-decoding benchmarks report them: medians, each as a multiple of the
    ``"generate"`` variant, and tokens/s."""
    med = {k: median(v) for k, v in times.items()}
    return {
        "batch": batch,
        "max_new_tokens": n_tokens,
        "tokens": tokens,
        "repeats": repeats,
        "times_s": times,
        "median_s": med,
        "over_generate": {k: v / med["generate"] for k, v in med.items()},
        "tokens_per_s": {k: tokens[k] / med[k] for k in med},
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table (right-aligned numbers, left-aligned text)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            if value == 0 or 1e-3 <= abs(value) < 1e5:
                return f"{value:.4g}" if abs(value) < 1 else f"{value:,.2f}"
            return f"{value:.3g}"
        return str(value)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], (int, float)) for row in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)
        )

    out = [line(list(headers)), line(["-" * w for w in widths])]
    out.extend(line(r) for r in cells)
    return "\n".join(out)


def write_result(name: str, payload: dict[str, Any], out: str | Path | None = None) -> Path:
    """Write ``payload`` (with the machine) as JSON to ``out`` or ``bench/results/<name>.json``."""
    path = Path(out) if out else RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"benchmark": name, "machine": machine(), **payload}
    path.write_text(json.dumps(body, indent=2, sort_keys=False) + "\n")
    return path


def add_common_args(parser: Any) -> None:
    """``--threads``, ``--repeats``, ``--quick`` and ``--out``: every benchmark has them."""
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a fast check")
    parser.add_argument("--out", help="JSON result path (default: bench/results/<name>.json)")


def evolens_numbers(traces: list[Any]) -> list[tuple[Any, Any, Any]]:
    """Per trace: the generated tokens' probabilities ``[L + 1, T]``, the JSD ``[L, T]`` (bits) and the tokens."""
    return [(t.metrics.target_logprobs.exp(), t.metrics.jsd_bits, t.generated_ids) for t in traces]


def first_different_steps(ours: list[tuple[Any, ...]], theirs: list[tuple[Any, ...]]) -> list[int | None]:
    """Per item, the first step whose generated token differs from the peer's (``None``: all equal)."""
    steps: list[int | None] = []
    for a, b in zip(ours, theirs, strict=True):
        n = min(len(a[2]), len(b[2]))
        differ = (a[2][:n].cpu() != b[2][:n].cpu()).nonzero()
        steps.append(int(differ[0, 0]) if differ.numel() else (None if len(a[2]) == len(b[2]) else n))
    return steps


def largest_differences(ours: list[tuple[Any, ...]], theirs: list[tuple[Any, ...]]) -> dict[str, float]:
    """Largest |difference| of token probabilities and JSD (bits) over every item, layer and common step."""
    prob, jsd = 0.0, 0.0
    for (p_a, j_a, *_), (p_b, j_b, *_) in zip(ours, theirs, strict=True):
        n = min(p_a.shape[1], p_b.shape[1])
        prob = max(prob, float((p_a[:, :n].double() - p_b[:, :n].double()).abs().max()))
        jsd = max(jsd, float((j_a[:, :n].double() - j_b[:, :n].double()).abs().max()))
    return {"token_prob": prob, "jsd_bits": jsd}
