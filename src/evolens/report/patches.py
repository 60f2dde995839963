"""An item's image-token lens in the report, read from ``patches.json`` beside its trace
(:class:`~evolens.metrics.patches.PatchLens`): a slider over the layers shows what each patch decodes to, and each
kept word's probability is drawn over the patches and the layers.

The slider is the page's own script (``assets/report.js``): every layer's grid is in the page, one shown at a time;
without the script the middle layer's grid shows.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from evolens.errors import SettingsError
from evolens.metrics.patches import PatchLens
from evolens.report.blocks import gallery
from evolens.report.escape import text
from evolens.trace import Trace

logger = logging.getLogger(__name__)


def trace_pixels(trace: Trace, image_root: Path | None) -> Any:
    """The trace's image as a PIL image when its file can be found and read (as is, or under ``image_root``),
    else ``None``."""
    if trace.image is None or trace.image.source.startswith("<"):
        return None
    from PIL import Image

    source = Path(trace.image.source)
    candidates = [source] + ([image_root / source, image_root / source.name] if image_root else [])
    for path in candidates:
        if path.is_file():
            try:
                with Image.open(path) as image:
                    return image.convert("RGB")
            except OSError as err:
                logger.warning("cannot read %s: %s", path, err)
    return None


def _layer_table(result: PatchLens, layer: int, cols: int, shown: bool) -> str:
    words = result.top1_words(layer)
    probs = result.topk_probs[layer, :, 0].tolist()
    cells = [
        f'<td title="p = {p:.3f}">{text(w.strip() or repr(w))}</td>'
        for w, p in zip(words, probs, strict=True)
    ]
    rows = "".join(f"<tr>{''.join(cells[r : r + cols])}</tr>" for r in range(0, len(cells), cols))
    hidden = "" if shown else " hidden"
    return f'<table class="patch-grid" data-layer="{layer}"{hidden}><tbody>{rows}</tbody></table>'


def patch_section(result: PatchLens, index: int, image: Any = None) -> str:
    """The section of item ``index``'s image-token lens: the layer slider over the patch grids, the kept words'
    heat maps (over ``image`` when given)."""
    from evolens.viz.patches import patch_word_figure

    if result.grid.known:
        cols = result.grid.cols
        layout = f"{result.grid.rows} × {cols} patches, as in the image"
    else:
        cols = max(1, math.ceil(math.sqrt(result.n_image_tokens)))
        layout = f"no patch grid ({result.grid.note}): image tokens in order, {cols} per row"
    start = result.n_layers // 2
    grids = "".join(_layer_table(result, layer, cols, layer == start) for layer in range(result.n_layers + 1))
    figures = []
    for word in result.words:
        try:
            figures.append(
                (f"P({word}) over the image tokens and layers", patch_word_figure(result, word, image=image))
            )
        except SettingsError as err:  # a word the figure cannot draw still leaves the grids
            logger.warning("cannot draw %r: %s", word, err)
    return (
        f'<section class="patches" data-item="{index}"><h3>Image-token lens</h3>'
        '<p class="hint">What each image token decodes to through the lens at a layer (top-1 token; hover for its '
        f"probability); {text(layout)}. Move the slider to change the layer (0 = embeddings).</p>"
        f'<p><label>layer <input type="range" class="patch-layer" min="0" max="{result.n_layers}" step="1" '
        f'value="{start}"></label> <output class="patch-layer-value">{start}</output></p>'
        f'<div class="patch-grids">{grids}</div>' + (gallery(figures) if figures else "") + "</section>"
    )
