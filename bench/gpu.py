"""On a GPU: evolens against plain generation and the peers a user would otherwise use, in one interleaved run.

Needs CUDA (exits with status 2 and one line otherwise). The model is built in memory on the GPU: a random LLaVA
at LLaVA-1.5-7B geometry (32 layers, d = 4096, FFN 11,008, vocabulary 32,000; a tiny vision tower), bfloat16.
For each batch size and length, greedy decoding of the same batch, interleaved (generate, peers, capture, analysis,
trace, generate, ...) and repeated (medians):

* **generate** — plain ``model.generate`` (no hooks);
* **hf_peer** — the hand-written alternative: ``generate(output_hidden_states=True, return_dict_in_generate=True)``,
  then final norm + language head on every layer's last-position state, softmax, the generated tokens'
  probabilities and adjacent-layer JSD (bits), on the GPU in float32, one item at a time;
* **nnsight_peer** — nnsight (when installed): generation saving every layer's last-position output at every
  step, then the same analysis;
* **capture** — generation with evolens's hooks, states left on the GPU (what ``trace`` does); **capture_spill**
  the same with the capture buffer forced into pinned host memory (``placement="host"``: the path a trace takes
  when its states would not fit on the device), every copy leaving the GPU as it is made;
* **analysis** — ``compute_batch_metrics`` on those states: lens + every metric of every item, on the GPU
  (the ``"whole"`` strategy); **analysis_blocked** the same with the CPU design (``"blocked"``), for comparison;
* **trace** — ``lvlm.trace`` end to end (states kept, moved to the CPU once per batch; on the GPU the analysis
  runs on a side stream while the batch generates); **trace_after** the same with the analysis after generation;
* **generate_compiled** — plain ``generate`` with Hugging Face's static cache and compiled forward (inductor,
  ``mode="reduce-overhead"``: CUDA graphs); **trace_compiled** — ``lvlm.trace`` with
  ``TraceOptions(compile=CompileOptions())``, the same static cache and a compiled step that also returns the
  states (``evolens.capture.compiled``). Their compiling happens in the untimed warm-up round of each length.

Reported: each as a multiple of generate, tokens/s (and against the bandwidth bound of reading the weights once
per decoding step), peak GPU memory above the model, CUDA kernel launches per generated token (``torch.profiler``,
one call each, ``--profile-tokens``), the largest difference of evolens's token probabilities and JSDs against the
peers', and a profile of ``trace``'s CPU time. Results go to ``--out`` (default ``bench/results/gpu.json``)
after every configuration.

    .venv/bin/python bench/gpu.py                 # on a CUDA machine (about 12 minutes on an H200)
    .venv/bin/python bench/gpu.py --long-repeats 1 --variants capture analysis trace   # a shorter run
    .venv/bin/python bench/gpu.py --cpu-dry-run   # checks the script on CPU with a small model (no GPU numbers)
    .venv/bin/python bench/gpu.py --tokens 128 --variants generate_compiled trace_compiled   # the compiled path
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import io
import pstats
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

import evolens.api
import models
from evolens.api import TraceOptions
from evolens.capture.compiled import CompileOptions
from evolens.metrics import MetricsStrategy, compute_batch_metrics, compute_layer_metrics

PROMPT = "Please describe this image in detail."
VARIANTS = (
    "generate",
    "hf_peer",
    "nnsight_peer",
    "capture",
    "capture_spill",
    "analysis",
    "analysis_blocked",
    "trace",
    "trace_after",
    "generate_compiled",
    "trace_compiled",
)
HBM_BYTES_PER_S = 4.8e12  # H200 datasheet; the bound is reported with the bandwidth used


def nnsight_wrapper(lvlm: Any) -> Any:
    """nnsight's wrapper of a copy of the model (once per process), or ``None`` when nnsight is not installed.

    nnsight patches the modules it wraps, so every later call through them pays its dispatch: the copy (same
    weights, so the same greedy tokens) keeps the model that every other variant runs untouched.
    """
    try:
        from nnsight import TransformersModel

        return TransformersModel(copy.deepcopy(lvlm.model), tokenizer=lvlm.tokenizer)
    except Exception as err:
        print(f"nnsight peer skipped: {type(err).__name__}: {err}", flush=True)
        return None


class Peers:
    """The hand-written HF path and nnsight's, on one prepared batch. Each returns per item ``(token_probs
    [L + 1, T], jsd_bits [L, T])`` on the CPU."""

    def __init__(self, lvlm: Any, prepared: Any, nnsight_model: Any = None) -> None:
        self.lvlm, self.prepared, self.nnsight = lvlm, prepared, nnsight_model
        roles = lvlm.loaded.roles
        self.norm, self.head = roles.final_norm, roles.lm_head

    def _analyse(self, hs: torch.Tensor, ids: torch.Tensor, last_normed: bool) -> list[tuple[Any, Any, Any]]:
        """``hs [L + 1, T, B, d]``, ``ids [B, T]``: the peer's analysis, one item at a time (float32)."""
        out = []
        for b in range(hs.shape[2]):
            x = hs[:, :, b]
            normed = torch.cat([self.norm(x[:-1]), x[-1:] if last_normed else self.norm(x[-1:])])
            p = self.head(normed).float().softmax(-1)
            steps = torch.arange(ids.shape[1], device=p.device)
            token_probs = p[:, steps, ids[b]]
            m = 0.5 * (p[:-1] + p[1:])
            log_m = m.clamp_min(1e-30).log2()

            def kl(a: torch.Tensor, log_m: torch.Tensor = log_m) -> torch.Tensor:
                return (a * (a.clamp_min(1e-30).log2() - log_m)).sum(-1)

            jsd = 0.5 * (kl(p[:-1]) + kl(p[1:]))
            out.append((token_probs.cpu(), jsd.cpu(), ids[b].cpu()))
        return out

    def hf(self) -> list[tuple[Any, Any, Any]]:
        prep = self.prepared
        with torch.inference_mode():
            gen = self.lvlm.model.generate(
                **prep.on_device,
                generation_config=prep.config,
                output_hidden_states=True,
                return_dict_in_generate=True,
            )
            # hidden_states: per step, per boundary [B, positions, d]; HF's last one is already normed
            hs = torch.stack([torch.stack([h[:, -1] for h in step]) for step in gen.hidden_states], 1)
            ids = gen.sequences[:, prep.on_device["input_ids"].shape[1] :]
            return self._analyse(hs, ids, last_normed=True)

    def nnsight_peer(self) -> list[tuple[Any, Any, Any]]:
        assert self.nnsight is not None
        nm, prep = self.nnsight, self.prepared
        layers = nm.model.language_model.layers
        with torch.inference_mode():
            with nm.generate(dict(prep.on_device), generation_config=prep.config) as tracer:
                states = [].save()  # type: ignore[attr-defined]
                for _ in tracer.all():
                    # the embeddings at the last position (a text token: no image features merged there)
                    first = nm.model.language_model.embed_tokens.output[:, -1]
                    states.append(torch.stack([first] + [layer.output[:, -1] for layer in layers]))
            hs = torch.stack(list(states), 1)  # [L + 1, T, B, d]
            ids = self.head(self.norm(hs[-1])).argmax(-1).T  # greedy: the last layer's arg-max, [B, T]
            return self._analyse(hs, ids, last_normed=False)


def kernel_launches(fn: Callable[[], Any]) -> int:
    """CUDA kernels one call of ``fn`` launches (memory copies and sets not counted)."""
    from torch.profiler import ProfilerActivity, profile

    common.sync()
    activity = (
        ProfilerActivity.CUDA if torch.cuda.is_available() else ProfilerActivity.CPU
    )  # dry run: 0 kernels
    with profile(activities=[activity]) as prof:
        fn()
        common.sync()
    names = [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    return sum(1 for name in names if not name.lower().startswith(("memcpy", "memset")))


def cpu_profile(fn: Callable[[], Any], rows: int = 25) -> str:
    """cProfile of one call, by cumulative time."""
    profiler = cProfile.Profile()
    profiler.enable()
    fn()
    common.sync()
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(rows)
    return text.getvalue()


def bench_config(
    lvlm: Any,
    nnsight_model: Any,
    batch: int,
    n_tokens: int,
    repeats: int,
    profile_tokens: int | None,
    wanted: tuple[str, ...] = VARIANTS,
) -> dict[str, Any]:
    image = models.test_image()
    images, prompts = [image] * batch, [PROMPT] * batch
    prepared = models.prepare_generation(lvlm, images, PROMPT, n_tokens)
    peers = Peers(lvlm, prepared, nnsight_model)
    device = next(lvlm.model.parameters()).device
    lens = lvlm.lens()
    captured: list[Any] = []
    outputs: dict[str, Any] = {}

    def make_capture(prep: Any) -> Callable[[], int]:
        def capture() -> int:
            captured[:] = prep.capture(storage_device=None)
            return sum(int(c.generated_ids.shape[0]) for c in captured)

        return capture

    def analysis(strategy: MetricsStrategy = "auto") -> int:
        metrics = compute_batch_metrics(
            [c.hidden_states for c in captured], lens, [c.generated_ids for c in captured], strategy=strategy
        )
        return sum(m.n_steps for m in metrics)

    def trace() -> int:
        outputs["trace"] = lvlm.trace(
            images=images, prompts=prompts, max_new_tokens=n_tokens, batch_size=batch
        )
        return sum(t.n_steps for t in outputs["trace"])

    def trace_after() -> int:
        """``trace`` with the analysis after the generation instead of during it (no side stream)."""
        during = evolens.api.batch.analyse_during_generation
        evolens.api.batch.analyse_during_generation = lambda model, lens: False  # type: ignore[assignment]
        try:
            traces = lvlm.trace(images=images, prompts=prompts, max_new_tokens=n_tokens, batch_size=batch)
        finally:
            evolens.api.batch.analyse_during_generation = during  # type: ignore[assignment]
        return sum(t.n_steps for t in traces)

    compile_options = CompileOptions()

    def trace_compiled() -> int:
        options = TraceOptions.from_flat(max_new_tokens=n_tokens, batch_size=batch, compile=compile_options)
        outputs["trace_compiled"] = lvlm.trace(images=images, prompts=prompts, options=options)
        return sum(t.n_steps for t in outputs["trace_compiled"])

    def hf_peer() -> int:
        outputs["hf_peer"] = peers.hf()
        return sum(int(p.shape[1]) for p, *_ in outputs["hf_peer"])

    def nnsight_peer() -> int:
        outputs["nnsight_peer"] = peers.nnsight_peer()
        return sum(int(p.shape[1]) for p, *_ in outputs["nnsight_peer"])

    every: dict[str, Callable[[], int]] = {"generate": prepared.generate, "hf_peer": hf_peer}
    if peers.nnsight is not None:
        every["nnsight_peer"] = nnsight_peer
    every.update(
        {
            "capture": make_capture(prepared),
            "capture_spill": lambda: sum(
                int(c.generated_ids.shape[0]) for c in prepared.capture(storage_device=None, placement="host")
            ),
            "analysis": analysis,
            # the CPU design on the GPU (items one after another, cache-sized blocks): what it replaced
            "analysis_blocked": lambda: analysis("blocked"),
            "trace": trace,
            "trace_after": trace_after,
            "generate_compiled": lambda: prepared.generate_compiled(compile_options),
            "trace_compiled": trace_compiled,
        }
    )
    variants = {
        name: fn for name, fn in every.items() if name in wanted or name in ("generate", "trace", "hf_peer")
    }
    peaks: dict[str, int] = {}
    base = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0

    def with_peak(name: str, fn: Callable[[], int]) -> Callable[[], int]:
        def run() -> int:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            result = fn()
            if device.type == "cuda":
                peaks[name] = max(peaks.get(name, 0), torch.cuda.max_memory_allocated(device) - base)
            return result

        return run

    times, tokens = common.interleave(
        {name: with_peak(name, fn) for name, fn in variants.items()},
        repeats,
        warmup=True,  # at every length: new sizes meet the caching allocator in the warm-up round
        desc=f"batch {batch} x {n_tokens} tokens",
    )
    med = {k: common.median(v) for k, v in times.items()}
    ours = common.evolens_numbers(outputs["trace"])
    # the same traces' states analysed again one item per chunk, the peers' GEMM shapes: what the differences
    # owe to the bfloat16 rounding of the head's output at other GEMM shapes
    one_chunk = [
        compute_layer_metrics(t.hidden_states, lens, t.generated_ids, chunk_steps=t.n_steps)
        for t in outputs["trace"]
    ]
    one_chunk_numbers = [(m.target_logprobs.exp(), m.jsd_bits, m.target_ids) for m in one_chunk]
    diffs_one_chunk = {
        peer: common.largest_differences(one_chunk_numbers, outputs[peer])
        for peer in ("hf_peer", "nnsight_peer")
        if peer in outputs
    }
    diffs = {
        peer: common.largest_differences(ours, outputs[peer])
        for peer in ("hf_peer", "nnsight_peer")
        if peer in outputs
    }
    # the JSD the peers compute (from probabilities, float32) against evolens's definition on the same numbers
    result: dict[str, Any] = {
        **common.generation_timings(batch, n_tokens, repeats, times, tokens),
        "analysis_share_of_generation": med["analysis"] / med["generate"] if "analysis" in med else None,
        "peak_gpu_bytes_above_model": peaks or None,
        "largest_difference_vs_peers": diffs,
        "largest_difference_vs_peers_one_chunk_per_item": diffs_one_chunk,
        # greedy decoding of the same batch: where a token differs, everything after it does too
        "first_different_step_vs_peers": {
            peer: common.first_different_steps(ours, outputs[peer])
            for peer in ("hf_peer", "nnsight_peer")
            if peer in outputs
        },
    }
    if "trace_compiled" in outputs:
        compiled_numbers = common.evolens_numbers(outputs["trace_compiled"])
        result["compiled_vs_eager_trace"] = {
            "largest_difference": common.largest_differences(compiled_numbers, ours),
            "first_different_step": common.first_different_steps(compiled_numbers, ours),
        }
    if profile_tokens:
        short = models.prepare_generation(lvlm, images, PROMPT, profile_tokens)
        profiled: dict[str, Callable[[], Any]] = {
            "generate": short.generate,
            "hf_peer": Peers(lvlm, short).hf,  # nnsight's launches are the model's plus its saves
            "capture": make_capture(short),
            "analysis": analysis,  # of the states the capture just before left
            "trace": lambda: lvlm.trace(
                images=images, prompts=prompts, max_new_tokens=profile_tokens, batch_size=batch
            ),
        }
        if "trace_compiled" in variants:  # CUDA graphs: the profiler sees the replayed graphs' kernels
            profiled["trace_compiled"] = lambda: lvlm.trace(
                images=images,
                prompts=prompts,
                options=TraceOptions.from_flat(
                    max_new_tokens=profile_tokens, batch_size=batch, compile=compile_options
                ),
            )
        launches = {}
        for name, fn in profiled.items():
            n = kernel_launches(fn)
            launches[name] = {
                "kernels": n,
                "per_generated_token": n / (profile_tokens * batch),
                "per_step": n / profile_tokens,
            }
        result["kernel_launches"] = launches
        result["trace_cpu_profile"] = cpu_profile(trace)
    return result


def bandwidth_bound(n_params: int, bytes_per_param: int = 2) -> float:
    """Decoding steps per second if each step only read the weights once at the datasheet bandwidth."""
    return HBM_BYTES_PER_S / (n_params * bytes_per_param)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tokens", type=int, nargs="+", default=[128, 512], help="max new tokens (default 128 512)"
    )
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes (default 1 8)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds at the first length (default 3)")
    parser.add_argument(
        "--long-repeats", type=int, default=2, help="rounds at the longer lengths (default 2)"
    )
    parser.add_argument(
        "--profile-tokens", type=int, default=64, help="tokens of the profiled calls (0: none)"
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(VARIANTS),
        choices=VARIANTS,
        help="what to time (generate, hf_peer and trace always run)",
    )
    parser.add_argument(
        "--cpu-dry-run", action="store_true", help="run on CPU with a small model to check the script"
    )
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    common.set_threads(args.threads)
    if args.cpu_dry_run:
        device, geometry = "cpu", models.Geometry(2, 256, 512, 4, 4, vocab=32000)
        args.tokens, args.batch, args.repeats, args.long_repeats = [6, 10], [1, 2], 1, 1
        args.profile_tokens = 4  # the profiling code runs (on a CPU it finds no CUDA kernels)
    elif not torch.cuda.is_available():
        print(
            "bench/gpu.py needs a CUDA GPU (torch.cuda.is_available() is False); no GPU numbers were measured"
        )
        return 2
    else:
        device, geometry = "cuda", models.LLAVA_7B
    if args.quick:
        args.tokens, args.batch, args.repeats = args.tokens[:1], args.batch[:1], 2
    model, processor = models.random_llava(geometry, dtype=torch.bfloat16, device=device)
    lvlm = models.in_memory_lvlm(model, processor, "random LLaVA-1.5-7B geometry")
    n_params = sum(p.numel() for p in model.parameters())
    nnsight_model = nnsight_wrapper(lvlm) if "nnsight_peer" in args.variants else None
    name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU (dry run: not a GPU measurement)"
    out = args.out or ("/tmp/evolens-gpu-dry-run.json" if args.cpu_dry_run else None)
    payload: dict[str, Any] = {
        "settings": vars(args),
        "device": name,
        "geometry": vars(geometry),
        "params": n_params,
        "bandwidth_bound_steps_per_s": bandwidth_bound(n_params),
        "results": [],
    }
    for i, n_tokens in enumerate(args.tokens):
        for batch in args.batch:
            first = i == 0
            payload["results"].append(
                bench_config(
                    lvlm,
                    nnsight_model,
                    batch,
                    n_tokens,
                    args.repeats if first else args.long_repeats,
                    profile_tokens=args.profile_tokens if first else None,
                    wanted=tuple(args.variants),
                )
            )
            path = common.write_result("gpu", payload, out)  # after every configuration: a timeout keeps them
            print(summary(payload), flush=True)
    print(f"wrote {path}")
    return 0


def summary(payload: dict[str, Any]) -> str:
    """The table of the results so far."""
    rows, notes = [], []
    bound = payload["bandwidth_bound_steps_per_s"]
    for r in payload["results"]:
        for k, seconds in r["median_s"].items():
            peak = (r["peak_gpu_bytes_above_model"] or {}).get(k)
            launches = r.get("kernel_launches", {}).get(k, {}).get("per_generated_token")
            rows.append(
                [
                    r["batch"],
                    r["max_new_tokens"],
                    k,
                    seconds,
                    r["over_generate"][k],
                    r["tokens_per_s"][k],
                    r["tokens_per_s"][k] / (bound * r["batch"]),
                    "-" if peak is None else round(peak / 2**30, 2),
                    "-" if launches is None else round(launches, 1),
                ]
            )
        notes.append(
            f"batch {r['batch']} x {r['max_new_tokens']} tokens, largest |evolens - peer|: "
            + ", ".join(
                f"{peer}: token prob {d['token_prob']:.1e}, JSD {d['jsd_bits']:.1e} bits"
                for peer, d in r["largest_difference_vs_peers"].items()
            )
            + "".join(
                f"; one chunk per item vs {peer}: {d['token_prob']:.1e}, {d['jsd_bits']:.1e}"
                for peer, d in r.get("largest_difference_vs_peers_one_chunk_per_item", {}).items()
            )
            + "".join(
                f"; first differing token per item vs {peer}: {steps}"
                for peer, steps in r.get("first_different_step_vs_peers", {}).items()
            )
        )
        if "compiled_vs_eager_trace" in r:
            c = r["compiled_vs_eager_trace"]
            notes.append(
                f"batch {r['batch']} x {r['max_new_tokens']} tokens, compiled trace vs eager trace: token prob "
                f"{c['largest_difference']['token_prob']:.1e}, JSD {c['largest_difference']['jsd_bits']:.1e} bits; "
                f"first differing token per item: {c['first_different_step']}"
            )
    headers = [
        "batch",
        "tokens",
        "variant",
        "median s",
        "x generate",
        "tokens/s",
        "of bound",
        "peak GiB",
        "kernels/token",
    ]
    title = (
        f"{payload['device']}, {payload['params'] / 1e9:.2f} B params, bf16; 'of bound': tokens/s over the batch "
        f"times {payload['bandwidth_bound_steps_per_s']:.0f} decoding steps/s (the weights read once per step)"
    )
    return "\n".join([title, common.table(headers, rows), *notes])


if __name__ == "__main__":
    sys.exit(main())
