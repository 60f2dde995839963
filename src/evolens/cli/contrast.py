"""``evolens contrast``: a generated (e.g. hallucinated) token against an alternative (e.g. the correct one),
layer by layer, from a saved trace (paper §3.2, Fig. 3)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from evolens.analysis.params import DetectorParams
from evolens.api import LoadOptions
from evolens.cli.common import ConfigOption, app, examples, out, quiet_transformers
from evolens.cli.options import (
    FigureOutput,
    TraceDirArg,
    cells,
    detector_options,
    figure_options,
    load_options,
    new_table,
    parse_words,
    say,
    trace_dirs,
)
from evolens.errors import SettingsError
from evolens.files import check_writable, make_directory

if TYPE_CHECKING:
    from evolens.experiments.hallucination import TokenComparison


def print_comparisons(comparisons: Sequence[TokenComparison]) -> None:
    table = new_table(
        "generated vs alternative token across layers",
        (
            "step",
            "generated",
            "alternative",
            "source",
            "crossing",
            "critical",
            "mutation",
            "alt. led",
            "at mutation",
        ),
    )
    for c in comparisons:
        row = (
            str(c.step),
            repr(c.generated_token),
            repr(c.alternative_token),
            c.alternative_source,
            str(c.crossing_layer) if c.crossing_layer >= 0 else "–",
            str(c.critical_layer) if c.critical_layer >= 0 else "–",
            ", ".join(map(str, c.mutation_layers)) or "–",
            "yes" if c.alternative_led else "no",
            "yes" if c.crossing_at_mutation else "no",
        )
        table.add_row(*cells(*row))
    out.print(table)
    say(
        "crossing: the state where the generated token rises above the alternative for good; alt. led: the "
        "alternative was ahead between the critical and the first mutation layer (the Fig. 3 pattern)"
    )


@app.command(
    "contrast",
    epilog=examples(
        "evolens contrast runs/dog --step 12 --alternative camera",
        "evolens contrast runs/dog --step 12 --truth camera,dog,beach",
        "evolens contrast runs/dog --hallu water,frisbee --truth camera,dog -o figs/dog_contrast",
        "evolens contrast runs/dog --step 5 --alternative zebra --model llava-hf/llava-1.5-7b-hf",
    ),
)
@detector_options
@figure_options
@load_options
def contrast(
    trace_dir: TraceDirArg,
    step: Annotated[
        list[int] | None, typer.Option("--step", "-s", help="Generation step(s) to compare (repeat)")
    ] = None,
    alternative: Annotated[
        str | None, typer.Option(help="The alternative token (text or id); default: chosen automatically")
    ] = None,
    truth: Annotated[
        list[str] | None,
        typer.Option(
            help="Ground-truth words: the alternative is the one most probable before the mutation layer"
        ),
    ] = None,
    hallu: Annotated[
        list[str] | None,
        typer.Option(help="Hallucinated words: compare every step that generated one (instead of --step)"),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="The trace's model, to look words up and compute tokens the trace did not store"),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Output directory (contrast.json and the figure); default: the trace's"
        ),
    ] = None,
    ncols: Annotated[int, typer.Option(help="Panels per row when there are several", min=1)] = 2,
    config: ConfigOption = None,
    *,
    params: DetectorParams,
    figure_output: FigureOutput,
    load: LoadOptions,
) -> None:
    """Probability of the generated token against an alternative at every layer (paper Fig. 3): where they cross, the step's critical and mutation layers, and whether the alternative led before the mutation.

    The alternative is --alternative, else the --truth word most probable before the mutation layer, else the
    strongest competitor (another top-1 token of the step). Without --model, words are looked up among the tokens
    the trace stored. Writes contrast.json and contrast.png/.svg (default: into the trace directory).
    """
    from evolens.experiments import save_comparisons
    from evolens.experiments.contrast import check_request, contrast
    from evolens.trace import Trace
    from evolens.viz import token_comparison_figure

    dirs = trace_dirs([trace_dir])
    if len(dirs) != 1:
        raise SettingsError(f"{trace_dir} holds {len(dirs)} traces; give one trace directory, e.g. {dirs[0]}")
    check_writable(out_dir if out_dir is not None else dirs[0], directory=True)
    truth_words, hallu_words = parse_words(truth), parse_words(hallu)
    trace = Trace.load(dirs[0])
    check_request(trace, step or [], alternative, hallu_words)
    lvlm = None
    if model is not None:
        quiet_transformers()
        lvlm = load.open(model)
        wanted, have = trace.model.weights_hash, lvlm.loaded.weights_hash
        if wanted and have and wanted != have:
            raise SettingsError(
                f"--model {model} has other weights than the model that made the trace ({trace.model.source})"
            )
    comparisons = contrast(trace, step or [], alternative, truth_words, hallu_words, params, lvlm)
    target = out_dir if out_dir is not None else dirs[0]
    make_directory(target)
    print_comparisons(comparisons)
    say(f"wrote {save_comparisons(target / 'contrast.json', comparisons)}")
    figure_output.write(token_comparison_figure(comparisons, ncols=ncols), target / "contrast")
