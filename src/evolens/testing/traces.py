"""Real traces from a tiny random checkpoint, for tests of everything that reads traces (figures, reports, CLI)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from evolens.trace import Trace


def tiny_image(seed: int = 0, size: int = 48) -> Image.Image:
    """A small RGB image: grey background and one coloured square."""
    rng = np.random.default_rng(seed)
    canvas = np.full((size, size, 3), 128, dtype=np.uint8)
    y, x = rng.integers(4, size // 2, size=2)
    canvas[y : y + size // 3, x : x + size // 3] = rng.integers(0, 255, size=3)
    return Image.fromarray(canvas)


def tiny_traces(
    directory: str | Path,
    *,
    family: str = "llava",
    n_items: int = 2,
    max_new_tokens: int = 6,
    n_layers: int = 4,
    save: bool = True,
) -> list[Trace]:
    """Trace ``n_items`` prompts (with images saved as files under ``directory``) on a tiny random ``family`` model.

    The checkpoint goes to ``directory/model``, the images to ``directory/images``; with ``save`` every trace is
    also written to ``directory/traces/<item_id>``. The texts are gibberish: use these traces for plumbing, and
    synthetic tensors for behaviour with known answers.
    """
    from evolens.api import load
    from evolens.testing.tiny import save_tiny

    root = Path(directory)
    model_dir = root / "model"
    if not (model_dir / "config.json").is_file():
        save_tiny(family, model_dir, n_layers=n_layers)
    lvlm = load(model_dir, device="cpu")
    image_paths = []
    for i in range(n_items):
        path = root / "images" / f"item{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        tiny_image(i).save(path)
        image_paths.append(path)
    prompts = [f"describe image {i}" for i in range(n_items)]
    traces = lvlm.trace(
        images=list(image_paths),
        prompts=prompts,
        max_new_tokens=max_new_tokens,
        item_ids=[f"item{i}" for i in range(n_items)],
    )
    if save:
        for trace in traces:
            trace.save(root / "traces" / trace.item_id, overwrite=True)
    return traces
