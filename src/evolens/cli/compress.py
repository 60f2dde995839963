"""``evolens compress``: stage-based compression (issue 18) — quality against speed with k layers of the
stabilisation stage removed, against k random layers and the last k."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from evolens.analysis.params import DetectorParams
from evolens.api import LoadOptions, TraceOptions
from evolens.cli.common import ConfigOption, app, examples, out, quiet_transformers
from evolens.cli.dataset import dataset_options
from evolens.cli.options import (
    FigureOutput,
    cells,
    experiment_options,
    figure_options,
    new_table,
    parse_layers,
    progress_bar,
    say,
)
from evolens.data import DatasetOptions
from evolens.files import check_writable

if TYPE_CHECKING:
    from evolens.runs.compress import CompressResult, CurvePoint

KOpt = Annotated[
    str | None,
    typer.Option("--k", help="Layers to remove, e.g. 1,2,4 or 1-3 (default: 1 .. the stage's length)"),
]
DrawsOpt = Annotated[
    int, typer.Option(help="Random draws of k layers per k (averaged, with their spread)", min=1)
]
DrawSeedOpt = Annotated[int, typer.Option(help="Seed of the random draws")]
MethodOpt = Annotated[
    Literal["rebuild", "hook"] | None,
    typer.Option(
        help="rebuild (a shorter stack: saves compute) or hook (identity hooks: every family, saves none) "
        "(default: rebuild where the family supports it, else hook with a note)"
    ),
]
StageOpt = Annotated[
    str | None,
    typer.Option(help="The stage's layers, A-B (1-based decoder layers), instead of detecting them"),
]
ProtocolOpt = Annotated[str, typer.Option(help="Scoring: official or evolens (README: Benchmark protocols)")]
MeasureOpt = Annotated[
    str,
    typer.Option(
        help="Quality drawn: accuracy, accuracy_typical, accuracy_atypical, similarity or exact_match"
    ),
]


def _pct(value: float | None, sd: float | None = None) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.1f}" + (f" ±{100 * sd:.1f}" if sd is not None else "")


def _num(value: float | None, fmt: str, sd: float | None = None) -> str:
    if value is None:
        return "–"
    return f"{value:{fmt}}" + (f" ±{sd:{fmt}}" if sd is not None else "")


def _layers(point: CurvePoint) -> str:
    from evolens.viz.results import layer_ranges

    if point.rule == "random":
        return f"{point.n_cells} draws"
    return layer_ranges(point.layers[0]) if point.layers and point.layers[0] else "none"


def print_curve(result: CompressResult) -> None:
    """The curve as a table: one row per (rule, k), the random rows as mean ± SD over their draws."""
    stage = result.stage
    where = (
        f"critical layer {stage.critical_layer}, stage end {stage.stage_end} (median first mutation layer of the "
        f"{stage.tokens_with_mutation} tokens that mutate: {stage.mutation_layer})"
        if stage.source == "detected"
        else "given"
    )
    say(
        f"stabilisation stage: decoder layers {list(stage.layers)} ({where}); removal order {list(stage.order)} "
        f"(lowest median adjacent-layer JSD first); method {result.method}; {result.n_items} items"
    )
    columns = ["rule", "k", "layers", "tokens/s", "speed-up", "CPU speed-up", "accuracy %", "typical %",
               "atypical %", "prior answers", "similarity", "identical %"]  # fmt: skip
    table = new_table("quality against speed (against the full model timed in the same k loop)", columns)
    for p in result.curve:
        table.add_row(
            *cells(
                p.rule,
                str(p.k),
                _layers(p),
                _num(p.tokens_per_s, ".0f", p.tokens_per_s_sd),
                _num(p.speedup, ".2f", p.speedup_sd),
                _num(p.cpu_speedup, ".2f", p.cpu_speedup_sd),
                _pct(p.accuracy, p.accuracy_sd),
                _pct(p.accuracy_typical),
                _pct(p.accuracy_atypical),
                f"{p.prior_answers:.1f}/{p.n_prior}",
                _num(p.similarity, ".3f", p.similarity_sd),
                _pct(p.exact_match),
            )
        )
    out.print(table)


@app.command(
    "compress",
    epilog=examples(
        'evolens toy export -o toy_test --typical 50 --atypical 50 && evolens compress "$(evolens toy path)" '
        "-d toy -r toy_test -o runs/compress",
        "evolens compress llava-hf/llava-1.5-7b-hf -d amber -r AMBER/data --limit 500 --k 1-6 -o runs/compress",
        "evolens compress MODEL -d pope -r val2014 --questions pope.json --stage 19-27 --method hook -o runs/c",
    ),
)
@dataset_options(required=True, limit=True)
@experiment_options
@figure_options
def compress(
    model: Annotated[str, typer.Argument(help="Local model directory or hub id")],
    out_dir: Annotated[
        Path,
        typer.Option("--out", "-o", help="Compress directory (compress.json, cells/, the figure; resumed)"),
    ],
    k: KOpt = None,
    random_draws: DrawsOpt = 5,
    draw_seed: DrawSeedOpt = 0,
    method: MethodOpt = None,
    stage: StageOpt = None,
    protocol: ProtocolOpt = "evolens",
    measure: MeasureOpt = "accuracy",
    config: ConfigOption = None,
    *,
    params: DetectorParams,
    figure_output: FigureOutput,
    trace: TraceOptions,
    load: LoadOptions,
    data: DatasetOptions,
) -> None:
    """Generate with k decoder layers of the detected stabilisation stage removed (k = 1 .. its length), against k layers removed at random and the last k, and judge quality against speed.

    The stage comes from a traced greedy pass over the items (median critical layer to the median end of the
    tokens' stabilisation; README "Stage-based compression"), or --stage. Every (rule, k) generation is timed next
    to the full model and written to OUT/cells/ as it finishes, so a killed run resumes; OUT/compress.json holds the
    judged curve, OUT/compress.png/.svg its figure.
    """
    from evolens.data.protocols import check_protocol
    from evolens.runs.compress import finish_compress
    from evolens.runs.compress_cells import CompressOptions, prepare_compress, readable_items, run_cells
    from evolens.viz.compress import MEASURES, compress_figure

    check_writable(out_dir, directory=True)
    if measure not in MEASURES:
        from evolens.errors import SettingsError

        raise SettingsError(f"--measure: unknown measure {measure!r}; use one of {', '.join(MEASURES)}")
    options = CompressOptions(
        ks=parse_layers(k, "--k") if k is not None else None,
        random_draws=random_draws,
        seed=draw_seed,
        method=method,
        stage=stage,
        params=params,
        protocol=check_protocol(protocol),
    )
    trace = replace(trace, keep_hidden_states=False)
    dataset = data.open()
    items = readable_items(dataset, data.limit)
    quiet_transformers()
    lvlm = load.open(model)
    with progress_bar("tracing the items for their stage", len(items)) as advance:
        job = prepare_compress(
            lvlm, dataset, out_dir, options=options, trace=trace, items=items, on_items=advance
        )
    if job.method_note:
        say(f"note: {job.method_note}")
    todo = job.todo()
    if len(todo) < len(job.cells):
        say(f"resuming {out_dir}: {len(job.cells) - len(todo)} of {len(job.cells)} cells already done")
    with progress_bar("compress: (rule, k) cells", len(todo)) as advance:
        run_cells(lvlm, job, trace=trace, on_cell=lambda _: advance(1))
    with progress_bar("judging the cells", len(job.cells)) as advance:
        result = finish_compress(dataset, job, options, on_cell=lambda _: advance(1))
    print_curve(result)
    say(f"wrote {out_dir / 'compress.json'}")
    fig = compress_figure(
        [p.to_dict() for p in result.curve],
        measure=measure,
        title=f"stage-based compression: {lvlm.loaded.source}",
    )
    figure_output.write(fig, out_dir / "compress")
