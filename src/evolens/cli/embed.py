"""``evolens embed``: 2-D maps of every layer's features from saved traces (paper §5, Fig. 6 and 7) and the numbers
behind them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import typer

from evolens.analysis.params import NOT_FOUND, DetectorParams
from evolens.cli.common import ConfigOption, app, examples
from evolens.cli.options import (
    Dpi,
    FigureFormats,
    detector_options,
    load_traces,
    say,
    spinner,
    trace_dirs,
    write_figure,
)
from evolens.errors import SettingsError
from evolens.files import check_writable, make_directory
from evolens.geometry.detect import detect_stage_layers

if TYPE_CHECKING:
    from evolens.geometry import FeatureMap, ReducerSettings
    from evolens.trace import Trace

MAP_NAME = "geometry"


def detected_layers(
    traces: Sequence[Trace], params: DetectorParams, *, step: int | None
) -> tuple[int | None, int | None, str]:
    """The critical and first mutation layer of a map (:func:`evolens.geometry.detect_stage_layers`) and a line
    saying how they were found."""
    found = detect_stage_layers(traces, params, step=step)
    return found.critical_layer, found.mutation_layer, found.description


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "–" if value is None or not math.isfinite(value) else format(value, spec)


def print_numbers(fmap: FeatureMap) -> None:
    """The numbers behind the picture: dispersion jump vs critical layer, linearity, adjacent CKA, trustworthiness."""
    n = fmap.numbers
    p = fmap.projection
    units = "tokens" if fmap.kind == "single_image" else "images"
    say(
        f"map: {fmap.n_units} {units} x {len(fmap.layers)} layers = {fmap.n_points} points; {p.backend}, "
        f"trustworthiness {_fmt(p.trustworthiness)} (k = {p.trust_neighbors})"
        + (f", PCA kept {p.pca_retained:.0%} of the variance" if p.pca_retained is not None else "")
    )
    say("stage groups: " + ", ".join(g.label for g in fmap.groups))
    jump = n.jump
    detail = f"candidate {jump.candidate if jump.candidate is not None else '–'}, r2 {_fmt(jump.r2)}, ratio {_fmt(jump.ratio)}"
    crit = "no critical layer" if n.critical_layer is None else f"critical layer {n.critical_layer}"
    diff = n.jump_minus_critical
    say(
        f"dispersion jump ({jump.settings.curve}): "
        + (f"layer {jump.layer}" if jump.layer is not None else "none clear")
        + f" ({detail}); {crit}"
        + (f"; jump - critical = {diff:+d}" if diff is not None else "")
    )
    rel = ", ".join(
        f"{layer}: {value:.3f}" for layer, value in zip(n.layers, n.relative_dispersion, strict=True)
    )
    say(f"relative dispersion by layer: {rel}")
    lin, straight = n.linearity, n.straightness
    say(
        f"linearity of each {units[:-1]}'s path: median {_fmt(float(np.nanmedian(lin)))} "
        f"(min {_fmt(float(np.nanmin(lin)))}, max {_fmt(float(np.nanmax(lin)))}); straightness median "
        f"{_fmt(float(np.nanmedian(straight)))}"
        if np.isfinite(lin).any()
        else "linearity: undefined"
    )
    cka = n.cka_adjacent
    if np.isfinite(cka).any():
        low = int(np.nanargmin(cka))
        say(
            f"adjacent-layer CKA: median {_fmt(float(np.nanmedian(cka)))}, lowest {_fmt(float(cka[low]))} between "
            f"layers {n.layers[low]} and {n.layers[low + 1]}"
        )
    else:
        say(f"adjacent-layer CKA: undefined (one {units[:-1]}, or no variance across {units})")


def reducer_settings(
    reducer: str,
    *,
    paper: bool,
    figure: Literal[6, 7],
    overrides: dict[str, Any],
) -> ReducerSettings:
    """The reducer settings: the paper's t-SNE (``paper``) or evolens' defaults, with the options given."""
    from evolens.geometry import ReducerSettings

    given = {k: v for k, v in overrides.items() if v is not None}
    if paper:
        if reducer != "tsne":
            raise SettingsError("--paper is the paper's t-SNE; leave out --reducer or use --reducer tsne")
        return ReducerSettings.paper(figure, **given)
    return ReducerSettings(method=reducer, **given)  # type: ignore[arg-type]


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
def embed(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Trace directories (with hidden states), or directories searched for traces"),
    ],
    mode: Annotated[
        Literal["auto", "single", "multi"],
        typer.Option(
            help="single: all tokens of each trace (Fig. 6); multi: one token across traces (Fig. 7); auto: single "
            "for one trace, multi for several"
        ),
    ] = "auto",
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Output directory (geometry.json and the figure); default for single maps: each trace's directory",
        ),
    ] = None,
    step: Annotated[int, typer.Option(help="multi: generation step of the answer token", min=0)] = 0,
    reducer: Annotated[Literal["tsne", "umap", "pca"], typer.Option(help="tsne, umap or pca")] = "tsne",
    paper: Annotated[
        bool, typer.Option(help="The paper's t-SNE settings (scikit-learn, perplexity 40 / 35, no PCA first)")
    ] = False,
    perplexity: Annotated[
        float | None, typer.Option(help="t-SNE perplexity (needs 3 x perplexity + 1 points) [default: 30]")
    ] = None,
    n_neighbors: Annotated[int | None, typer.Option(help="UMAP neighbourhood size [default: 15]")] = None,
    preprocessing: Annotated[
        Literal["maxabs", "standardize", "none"] | None,
        typer.Option(help="Per-feature scaling before reducing [default: maxabs]"),
    ] = None,
    pca_dims: Annotated[
        int | None, typer.Option(help="PCA dimensions before t-SNE / UMAP [default: 50]")
    ] = None,
    n_iter: Annotated[int | None, typer.Option(help="t-SNE iterations [default: 1000]")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of every random step [default: 0]")] = None,
    critical: Annotated[
        int | None, typer.Option(help="Critical layer (state index) instead of the detected median; -1: none")
    ] = None,
    mutation: Annotated[
        int | None, typer.Option(help="Mutation layer (state index) instead of the detected median; -1: none")
    ] = None,
    groups: Annotated[
        Literal["stages", "paper"],
        typer.Option(
            help="Colour groups: stages (rapid evolution / stabilisation / mutation from the critical and mutation "
            "layers) or paper (the paper code's 1-2, 3-c, c+1..L-1, L)"
        ),
    ] = "stages",
    include_embedding: Annotated[bool, typer.Option(help="Map state 0 (the embeddings) too")] = False,
    numbers_space: Annotated[
        Literal["raw", "preprocessed"],
        typer.Option(help="Compute the numbers on the raw or preprocessed states"),
    ] = "raw",
    color_by: Annotated[
        Literal["band", "layer"], typer.Option(help="Colour points by group (band) or by layer")
    ] = "band",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing geometry.json")] = False,
    formats: FigureFormats = None,
    dpi: Dpi = 150,
    config: ConfigOption = None,
    *,
    params: DetectorParams,
) -> None:
    """Map every layer's features to 2-D (t-SNE, UMAP or PCA) from saved traces with hidden states: one image's tokens (paper Fig. 6) or one token across images (Fig. 7); print the numbers behind the picture.

    Stage groups come from the critical and mutation layers: the medians of the detected ones (README, "Detectors")
    unless --critical/--mutation are given. Writes geometry.json (FeatureMap) and geometry.png/.svg.
    """
    from evolens.geometry import multi_image_map, paper_stage_groups, single_image_map

    dirs = trace_dirs(paths)
    kind = mode if mode != "auto" else ("single" if len(dirs) == 1 else "multi")
    if kind == "multi" and out_dir is None:
        raise SettingsError("a map across traces needs --out DIRECTORY")
    if kind == "multi" and len(dirs) < 2:
        raise SettingsError(f"--mode multi needs at least 2 traces, found {len(dirs)}")
    settings = reducer_settings(
        reducer,
        paper=paper,
        figure=6 if kind == "single" else 7,
        overrides={
            "perplexity": perplexity,
            "n_neighbors": n_neighbors,
            "preprocessing": preprocessing,
            "pca_dims": pca_dims,
            "n_iter": n_iter,
            "seed": seed,
        },
    )
    if kind == "single":
        targets = [
            (d, d if out_dir is None else out_dir if len(dirs) == 1 else out_dir / d.name) for d in dirs
        ]
        if len({t for _, t in targets}) != len(targets):
            raise SettingsError("several traces share a directory name; give them one at a time with --out")
    else:
        assert out_dir is not None
        targets = [(dirs[0], out_dir)]
    for _, target in targets:
        check_writable(target, directory=True)
        if (target / f"{MAP_NAME}.json").exists() and not overwrite:
            raise SettingsError(f"{target / f'{MAP_NAME}.json'} exists; pass --overwrite to replace it")

    traces = load_traces(dirs)
    batches = [[t] for t in traces] if kind == "single" else [traces]
    for (_, target), batch in zip(targets, batches, strict=True):
        L = batch[0].n_layers
        c, m, how = detected_layers(batch, params, step=None if kind == "single" else step)
        if critical is not None or mutation is not None:
            c = None if critical is None or critical == NOT_FOUND else critical
            m = None if mutation is None or mutation == NOT_FOUND else mutation
            how = "given"
        chosen_groups = paper_stage_groups(L, c) if groups == "paper" and c is not None else None
        if groups == "paper" and chosen_groups is None:
            chosen_groups = paper_stage_groups(L)
        options: dict[str, Any] = {
            "critical_layer": c,
            "mutation_layer": m,
            "groups": chosen_groups,
            "settings": settings,
            "include_embedding": include_embedding,
            "numbers_space": numbers_space,
        }
        with spinner(
            f"mapping {batch[0].item_id if kind == 'single' else f'{len(batch)} traces'} ({settings.method})"
        ):
            fmap = (
                single_image_map(batch[0], **options)
                if kind == "single"
                else multi_image_map(batch, step=step, **options)
            )
        make_directory(target)
        saved = fmap.save(target / f"{MAP_NAME}.json", overwrite=overwrite)
        label = batch[0].item_id if kind == "single" else f"{len(batch)} traces, step {step}"
        say(
            f"[{label}] critical {c if c is not None else 'none'}, mutation {m if m is not None else 'none'} ({how})"
        )
        print_numbers(fmap)
        say(f"wrote {saved}")
        from evolens.viz import feature_map_figure

        write_figure(feature_map_figure(fmap, color_by=color_by), target / MAP_NAME, formats, dpi)
