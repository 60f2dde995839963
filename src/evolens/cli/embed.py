"""``evolens embed``: 2-D maps of every layer's features from saved traces (paper §5, Fig. 6 and 7) and the numbers
behind them. The maps, their settings and stage layers come from :mod:`evolens.geometry.embed`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from evolens.analysis.params import DetectorParams
from evolens.cli.common import ConfigOption, app, examples
from evolens.cli.options import (
    FigureOutput,
    detector_options,
    figure_options,
    load_traces,
    say,
    spinner,
    trace_dirs,
)
from evolens.files import make_directory
from evolens.geometry.embed import (
    MAP_NAME,
    EmbedMode,
    EmbedOptions,
    GroupStyle,
    choose_stage_layers,
    describe_numbers,
    embed_map,
    map_count,
    map_targets,
    reducer_settings,
)
from evolens.geometry.numbers import NumbersSpace
from evolens.geometry.reduce import Method

Mode = Annotated[
    EmbedMode,
    typer.Option(
        help="single: all tokens of each trace (Fig. 6); multi: one token across traces (Fig. 7); auto: single "
        "for one trace, multi for several"
    ),
]
OutDir = Annotated[
    Path | None,
    typer.Option(
        "--out",
        "-o",
        help="Output directory (geometry.json and the figure); default for single maps: each trace's directory",
    ),
]
Step = Annotated[int, typer.Option(help="multi: generation step of the answer token", min=0)]
Reducer = Annotated[Method, typer.Option(help="tsne, umap or pca")]
Paper = Annotated[
    bool, typer.Option(help="The paper's t-SNE settings (scikit-learn, perplexity 40 / 35, no PCA first)")
]
Perplexity = Annotated[
    float | None, typer.Option(help="t-SNE perplexity (needs 3 x perplexity + 1 points) [default: 30]")
]
Neighbors = Annotated[int | None, typer.Option(help="UMAP neighbourhood size [default: 15]")]
Preprocessing = Annotated[
    Literal["maxabs", "standardize", "none"] | None,
    typer.Option(help="Per-feature scaling before reducing [default: maxabs]"),
]
PcaDims = Annotated[int | None, typer.Option(help="PCA dimensions before t-SNE / UMAP [default: 50]")]
Iterations = Annotated[int | None, typer.Option(help="t-SNE iterations [default: 1000]")]
Seed = Annotated[int | None, typer.Option(help="Seed of every random step [default: 0]")]
Critical = Annotated[
    int | None, typer.Option(help="Critical layer (state index) instead of the detected median; -1: none")
]
Mutation = Annotated[
    int | None, typer.Option(help="Mutation layer (state index) instead of the detected median; -1: none")
]
Groups = Annotated[
    GroupStyle,
    typer.Option(
        help="Colour groups: stages (rapid evolution / stabilisation / mutation from the critical and mutation "
        "layers) or paper (the paper code's 1-2, 3-c, c+1..L-1, L)"
    ),
]
Embedding = Annotated[bool, typer.Option(help="Map state 0 (the embeddings) too")]
Space = Annotated[NumbersSpace, typer.Option(help="Compute the numbers on the raw or preprocessed states")]
ColorBy = Annotated[Literal["band", "layer"], typer.Option(help="Colour points by group (band) or by layer")]
Overwrite = Annotated[bool, typer.Option(help="Replace an existing geometry.json")]


@app.command(
    "embed",
    epilog=examples(
        "evolens embed runs/dog -o runs/dog_map",
        "evolens embed runs/dog --paper --groups paper",
        "evolens embed runs/flowers --mode multi --step 0 --paper -o runs/flowers_map",
        "evolens embed runs/dog --reducer pca --critical 18 --mutation 27 -o figs/dog_pca",
    ),
)
@detector_options
@figure_options
def embed(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Trace directories (with hidden states), or directories searched for traces"),
    ],
    mode: Mode = "auto",
    out_dir: OutDir = None,
    step: Step = 0,
    reducer: Reducer = "tsne",
    paper: Paper = False,
    perplexity: Perplexity = None,
    n_neighbors: Neighbors = None,
    preprocessing: Preprocessing = None,
    pca_dims: PcaDims = None,
    n_iter: Iterations = None,
    seed: Seed = None,
    critical: Critical = None,
    mutation: Mutation = None,
    groups: Groups = "stages",
    include_embedding: Embedding = False,
    numbers_space: Space = "raw",
    color_by: ColorBy = "band",
    overwrite: Overwrite = False,
    config: ConfigOption = None,
    *,
    params: DetectorParams,
    figure_output: FigureOutput,
) -> None:
    """Map every layer's features to 2-D (t-SNE, UMAP or PCA) from saved traces with hidden states: one image's tokens (paper Fig. 6) or one token across images (Fig. 7); print the numbers behind the picture.

    Stage groups come from the critical and mutation layers: the medians of the detected ones (README, "Detectors")
    unless --critical/--mutation are given. Writes geometry.json (FeatureMap) and geometry.png/.svg.
    """
    dirs = trace_dirs(paths)
    count = map_count(mode, len(dirs), out_dir)
    overrides = {"perplexity": perplexity, "n_neighbors": n_neighbors, "preprocessing": preprocessing}
    overrides |= {"pca_dims": pca_dims, "n_iter": n_iter, "seed": seed}
    settings = reducer_settings(
        reducer, paper=paper, figure=6 if count == "single" else 7, overrides=overrides
    )
    options = EmbedOptions(settings, step, groups, include_embedding, numbers_space)
    targets = map_targets(dirs, count, out_dir, overwrite=overwrite)
    traces = load_traces(dirs)
    for target, batch in zip(targets, [[t] for t in traces] if count == "single" else [traces], strict=True):
        layers = choose_stage_layers(
            batch, params, step=None if count == "single" else step, critical=critical, mutation=mutation
        )
        what = batch[0].item_id if count == "single" else f"{len(batch)} traces"
        with spinner(f"mapping {what} ({settings.method})"):
            fmap = embed_map(batch, count, layers, options)
        make_directory(target)
        saved = fmap.save(target / f"{MAP_NAME}.json", overwrite=overwrite)
        c, m = layers.critical_layer, layers.mutation_layer
        label = batch[0].item_id if count == "single" else f"{len(batch)} traces, step {step}"
        say(
            f"[{label}] critical {c if c is not None else 'none'}, mutation {m if m is not None else 'none'} ({layers.description})"
        )
        for line in describe_numbers(fmap):
            say(line)
        say(f"wrote {saved}")
        from evolens.viz import feature_map_figure

        figure_output.write(feature_map_figure(fmap, color_by=color_by), target / MAP_NAME)
