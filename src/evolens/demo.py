"""``make demo`` / ``evolens demo``: the main job end to end on a built-in model.

Until the trained toy LVLM ships, the demo traces a tiny *random* LLaVA built from a config (its text is
gibberish; the pipeline — load from a saved checkpoint, capture, lens, metrics, storage — is the real one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

DEMO_PROMPTS = ("describe this image", "what color is the circle ?")


def _demo_images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        canvas = np.full((64, 64, 3), 128, dtype=np.uint8)
        y, x = rng.integers(8, 40, size=2)
        canvas[y : y + 16, x : x + 16] = rng.integers(0, 255, size=3)
        images.append(Image.fromarray(canvas))
    return images


def run_demo(out_dir: Path, *, console: Any) -> list[Path]:
    """Trace the demo prompts on the built-in model, save every trace under ``out_dir``, print a summary."""
    import evolens
    from evolens.testing import save_tiny

    model_dir = out_dir / "model"
    if not (model_dir / "config.json").is_file():
        save_tiny("llava", model_dir, n_layers=8)
    lvlm = evolens.load(model_dir, device="cpu")
    images = _demo_images(len(DEMO_PROMPTS))
    traces = lvlm.trace(
        images=images, prompts=list(DEMO_PROMPTS), max_new_tokens=12, item_ids=["describe", "color"]
    )
    written = []
    for t in traces:
        path = t.save(out_dir / "traces" / t.item_id, overwrite=True)
        written.append(path)
        jsd = t.jsd().mean(dim=1)
        console.print(f"[bold]{t.item_id}[/bold]: {t.text!r}", highlight=False)
        console.print(
            f"  {t.n_steps} tokens x {t.n_layers + 1} layers; mean adjacent-layer JSD (bits): "
            + " ".join(f"{v:.3f}" for v in jsd.tolist()),
            highlight=False,
        )
    console.print(f"traces written under {out_dir / 'traces'}", highlight=False)
    return written
