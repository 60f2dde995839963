"""Speed of layer-skip generation: no skip vs the identity hook vs the rebuilt (shorter) stack.

The hook method keeps every layer running (its output is replaced by its input), so it costs about what plain
generation costs; the rebuilt stack drops the skipped layers' compute. This measures both on a random Llama of
a chosen size (no download) or on a model directory, greedy decoding, after one warm-up run.

    PYTHONPATH=src python bench/skip_speed.py --layers 16 --hidden 512 --skip-fraction 0.5
    PYTHONPATH=src python bench/skip_speed.py --model path/to/checkpoint --skip 19-27 --image dog.jpg
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Literal

import torch

from evolens.api import TraceOptions


def random_llama(directory: Path, n_layers: int, hidden: int) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    from evolens.testing import word_tokenizer

    tokenizer = word_tokenizer()
    config = LlamaConfig(
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=n_layers,
        num_attention_heads=max(1, hidden // 64),
        num_key_value_heads=max(1, hidden // 128),
        vocab_size=len(tokenizer),
        max_position_embeddings=4096,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = (
        None  # random weights: never stop early, every run makes the same tokens
    )
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def parse_layers(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="a model directory or hub id (default: a random Llama)")
    parser.add_argument("--layers", type=int, default=16, help="random model: decoder layers")
    parser.add_argument("--hidden", type=int, default=512, help="random model: width")
    parser.add_argument(
        "--skip", help="layers to skip, 1-based, e.g. 9-14 (default: --skip-fraction of the middle)"
    )
    parser.add_argument("--skip-fraction", type=float, default=0.5)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image", help="an image, for vision-language models")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 is steadiest on a shared machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import evolens
    from evolens.experiments.skip import generate_skipped

    with tempfile.TemporaryDirectory() as tmp:
        source = args.model or str(random_llama(Path(tmp), args.layers, args.hidden))
        lvlm = evolens.load(source, device=args.device)
        n = lvlm.n_layers
        if args.skip:
            skip = parse_layers(args.skip)
        else:
            k = max(1, round(args.skip_fraction * n))
            start = (n - k) // 2 + 1
            skip = list(range(start, start + k))
        images = [args.image] * args.batch if lvlm.is_vlm else [None] * args.batch
        prompts = ["describe the image in detail please"] * args.batch
        sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)

        def timed(layers: list[int], method: Literal["hook", "rebuild"]) -> tuple[float, list[int]]:
            times = []
            out = None
            for i in range(args.repeats + 1):
                sync()
                t0 = time.perf_counter()
                out = generate_skipped(
                    lvlm,
                    images,
                    prompts,
                    layers,
                    method=method,
                    options=TraceOptions.from_flat(max_new_tokens=args.new_tokens),
                )
                sync()
                if i:  # the first run warms up (and verifies the rebuilt stack)
                    times.append(time.perf_counter() - t0)
            assert out is not None
            return statistics.median(times), out[0].token_ids

        base, _ = timed([], "hook")
        hook, hook_ids = timed(skip, "hook")
        rebuilt, rebuilt_ids = timed(skip, "rebuild")
        tokens = args.batch * args.new_tokens
        print(
            f"model {source} ({lvlm.family}, L={n}, device {lvlm.loaded.device}, dtype {lvlm.loaded.dtype})"
        )
        print(
            f"skipping {len(skip)} of {n} layers {skip[0]}..{skip[-1]}; batch {args.batch}, {args.new_tokens} new tokens"
        )
        print(f"{'run':<12}{'seconds':>10}{'tokens/s':>12}{'speed-up':>10}")
        for name, seconds in (("no skip", base), ("hook", hook), ("rebuild", rebuilt)):
            print(f"{name:<12}{seconds:>10.3f}{tokens / seconds:>12.1f}{base / seconds:>10.2f}")
        print("hook and rebuild tokens identical:", hook_ids == rebuilt_ids)


if __name__ == "__main__":
    main()
