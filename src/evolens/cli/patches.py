"""``evolens patches TRACE_DIR``: the image-token lens — what each image-token position decodes to at every layer."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from evolens.api import LVLM, LoadOptions
from evolens.cli.common import ConfigOption, app, examples, out, quiet_transformers
from evolens.cli.options import FigureOutput, figure_options, load_options, parse_layers, parse_words, say
from evolens.errors import SettingsError

if TYPE_CHECKING:
    from evolens.metrics.patches import PatchLens


def _word_ids(lvlm: LVLM, words: list[str]) -> list[int]:
    """One token id per word; a word that is no single known token of the model (bare or after a space) is
    refused."""
    unknown = lvlm.tokenizer.unk_token_id
    ids = []
    for word in words:
        encoded = [lvlm.tokenizer.encode(w, add_special_tokens=False) for w in (word, " " + word)]
        if not any(len(e) == 1 and e[0] != unknown for e in encoded):
            raise SettingsError(f"--word {word!r} is not one token of this model's vocabulary")
        ids.append(next(e[0] for e in encoded if len(e) == 1 and e[0] != unknown))
    return ids


def _summary(result: PatchLens, layers: tuple[int, ...]) -> None:
    grid = result.grid
    say(
        f"[{result.item_id}] {result.n_image_tokens} image tokens x {result.n_layers + 1} layers; "
        + (f"{grid.rows} x {grid.cols} patch grid" if grid.known else f"no patch grid: {grid.note}")
    )
    for layer in layers:
        top = result.topk_ids[layer, :, 0].tolist()
        common = max(set(top), key=top.count)
        say(
            f"layer {layer}: most patches decode to {result.vocab.get(common, common)!r} ({top.count(common)})"
        )
    for column, word in enumerate(result.words):
        probs = result.word_probs[..., column]
        layer = int(probs.mean(1).argmax())
        say(f"P({word}): highest mean over the patches at layer {layer} ({float(probs[layer].mean()):.4f})")


@app.command(
    "patches",
    epilog=examples(
        "evolens trace llava-hf/llava-1.5-7b-hf -i dog.jpg -p 'Describe the image.' --prompt-positions -o runs/dog",
        "evolens patches runs/dog --word dog --word grass --layers 8,16,24",
        "evolens patches runs/dog --model llava-hf/llava-1.5-7b-hf --word dog -o figs/dog_patches",
    ),
)
@figure_options
@load_options
def patches(
    trace_dir: Annotated[Path, typer.Argument(help="A trace directory saved with --prompt-positions")],
    word: Annotated[
        list[str] | None, typer.Option("--word", "-w", help="A word whose probability is mapped (repeat)")
    ] = None,
    layers: Annotated[
        str | None,
        typer.Option(help="Layers whose patch grid is drawn, e.g. 8,16,24 (default: the middle layer)"),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", "-o", help="Directory of the figures (default: TRACE_DIR)")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="The trace's model, for its norm and head (default: the source it recorded)"),
    ] = None,
    topk: Annotated[int, typer.Option(help="Top tokens kept per (layer, image token)", min=1)] = 5,
    chunk_positions: Annotated[
        int | None, typer.Option(help="Image tokens per lens chunk (default: from a 512 MiB budget)", min=1)
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing patches.json")] = False,
    config: ConfigOption = None,
    *,
    figure_output: FigureOutput,
    load: LoadOptions,
) -> None:
    """Decode every image-token position of a trace at every layer (the "what is in this patch" view, Neo et al.
    2024): writes TRACE_DIR/patches.json (the report shows it) and the figures — the patch grid labelled by its
    top-1 token at each of --layers, each --word's probability over the patches and layers.
    """
    from evolens.files import make_directory
    from evolens.metrics.patches import PATCHES_FILE
    from evolens.report.patches import trace_pixels
    from evolens.trace import Trace
    from evolens.trace.patches import check_patch_trace, image_token_lens
    from evolens.viz.patches import patch_grid_figure, patch_word_figure

    trace = Trace.load(trace_dir)
    check_patch_trace(trace)  # before the model loads
    target = trace_dir / PATCHES_FILE
    if target.exists() and not overwrite:
        raise SettingsError(f"{target} exists; pass --overwrite to replace it")
    chosen = parse_layers(layers) if layers else (trace.n_layers // 2,)
    if chosen[-1] > trace.n_layers:
        raise SettingsError(f"--layers: the trace has layers 0-{trace.n_layers}, got {chosen[-1]}")
    words = parse_words(word)
    quiet_transformers()
    with out.status(f"loading {model or trace.model.source}"):
        lvlm = load.open(model or trace.model.source)
    ids = _word_ids(lvlm, words)
    with out.status(f"decoding {trace.image_token_positions.numel()} image tokens"):
        result = image_token_lens(lvlm.attach(trace), ids, words, k=topk, chunk_positions=chunk_positions)
    say(f"wrote {result.save(target)}")
    _summary(result, chosen)
    figures = make_directory(out_dir or trace_dir)
    image = trace_pixels(trace, None)
    if result.grid.known:
        for layer in chosen:
            figure_output.write(
                patch_grid_figure(result, layer, image=image), figures / f"patches_layer{layer}"
            )
    for index, name in enumerate(words):
        figure_output.write(patch_word_figure(result, name, image=image), figures / f"patches_word{index}")
