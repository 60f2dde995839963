"""Feature maps of saved traces as ``evolens embed`` makes them: which maps, where they go, their settings and stage
layers, and the numbers behind each picture in words.

A run of the command makes one single-image map per trace (Fig. 6) or one multi-image map across all of them
(Fig. 7); each is written as ``geometry.json`` (:class:`~evolens.geometry.FeatureMap`) in its target directory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from evolens.analysis.params import NOT_FOUND, DetectorParams
from evolens.errors import SettingsError
from evolens.files import check_writable
from evolens.geometry.build import MapOptions, multi_image_map, single_image_map
from evolens.geometry.detect import DetectedLayers, detect_stage_layers
from evolens.geometry.maps import FeatureMap
from evolens.geometry.numbers import NumbersSpace
from evolens.geometry.reduce import Method, ReducerSettings
from evolens.geometry.stages import paper_stage_groups

if TYPE_CHECKING:
    from evolens.trace import Trace

MAP_NAME = "geometry"
EmbedMode = Literal["auto", "single", "multi"]
MapCount = Literal["single", "multi"]
GroupStyle = Literal["stages", "paper"]


def map_count(mode: EmbedMode, n_traces: int, out_dir: Path | None) -> MapCount:
    """``"single"`` (a map per trace) or ``"multi"`` (one map across the traces); ``"auto"``: single for one trace.

    Raises:
        SettingsError: A map across traces without an output directory, or with fewer than 2 traces.
    """
    count: MapCount = mode if mode != "auto" else ("single" if n_traces == 1 else "multi")
    if count == "multi" and out_dir is None:
        raise SettingsError("a map across traces needs --out DIRECTORY")
    if count == "multi" and n_traces < 2:
        raise SettingsError(f"--mode multi needs at least 2 traces, found {n_traces}")
    return count


def reducer_settings(
    reducer: Method, *, paper: bool, figure: Literal[6, 7], overrides: dict[str, Any]
) -> ReducerSettings:
    """The reducer settings: the paper's t-SNE (``paper``) or evolens' defaults, with the options given (``None``:
    not given)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if paper:
        if reducer != "tsne":
            raise SettingsError("--paper is the paper's t-SNE; leave out --reducer or use --reducer tsne")
        return ReducerSettings.paper(figure, **given)
    return ReducerSettings(method=reducer, **given)


def map_targets(
    dirs: Sequence[Path], count: MapCount, out_dir: Path | None, *, overwrite: bool
) -> list[Path]:
    """The directory each map goes to: a single map beside its trace, or under ``out_dir`` (in a folder named
    after the trace when there are several); the map across traces in ``out_dir``.

    Raises:
        SettingsError: Two traces would share a directory, or a ``geometry.json`` exists and not ``overwrite``.
        StoreError: A target cannot be written.
    """
    if count == "multi":
        if out_dir is None:
            raise SettingsError("a map across traces needs --out DIRECTORY")
        targets = [out_dir]
    else:
        targets = [d if out_dir is None else out_dir if len(dirs) == 1 else out_dir / d.name for d in dirs]
        if len(set(targets)) != len(targets):
            raise SettingsError("several traces share a directory name; give them one at a time with --out")
    for target in targets:
        check_writable(target, directory=True)
        if (target / f"{MAP_NAME}.json").exists() and not overwrite:
            raise SettingsError(f"{target / f'{MAP_NAME}.json'} exists; pass --overwrite to replace it")
    return targets


def choose_stage_layers(
    traces: Sequence[Trace],
    params: DetectorParams | None = None,
    *,
    step: int | None = None,
    critical: int | None = None,
    mutation: int | None = None,
) -> DetectedLayers:
    """The stage layers of a map: the detected ones (:func:`~evolens.geometry.detect_stage_layers`), or, when
    ``critical`` or ``mutation`` is given, those two (-1 or ``None``: none), described as ``"given"``."""
    found = detect_stage_layers(traces, params, step=step)
    if critical is None and mutation is None:
        return found
    c = None if critical is None or critical == NOT_FOUND else critical
    m = None if mutation is None or mutation == NOT_FOUND else mutation
    return DetectedLayers(c, m, found.n_units, found.n_critical, found.n_mutation, "given")


@dataclass(frozen=True)
class EmbedOptions:
    """How ``evolens embed`` maps a batch of traces (see :func:`~evolens.geometry.single_image_map`).

    Attributes:
        settings: The reducer.
        step: The answer token's generation step of a map across traces.
        groups: ``"stages"`` (from the critical and mutation layers) or ``"paper"`` (the paper's four groups).
        include_embedding: Map state 0 too.
        numbers_space: Compute the numbers on the raw or preprocessed states.
    """

    settings: ReducerSettings
    step: int = 0
    groups: GroupStyle = "stages"
    include_embedding: bool = False
    numbers_space: NumbersSpace = "raw"


def embed_map(
    traces: Sequence[Trace], count: MapCount, layers: DetectedLayers, options: EmbedOptions
) -> FeatureMap:
    """The map of one trace (``"single"``) or across ``traces`` (``"multi"``), coloured by ``layers``."""
    n_layers = traces[0].n_layers
    groups = paper_stage_groups(n_layers, layers.critical_layer) if options.groups == "paper" else None
    common: MapOptions = {
        "critical_layer": layers.critical_layer,
        "mutation_layer": layers.mutation_layer,
        "groups": groups,
        "settings": options.settings,
        "include_embedding": options.include_embedding,
        "numbers_space": options.numbers_space,
    }
    if count == "single":
        return single_image_map(traces[0], **common)
    return multi_image_map(traces, step=options.step, **common)


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "–" if value is None or not math.isfinite(value) else format(value, spec)


def describe_numbers(fmap: FeatureMap) -> list[str]:
    """The numbers behind the picture, one line each: the map, its groups, the dispersion jump against the critical
    layer, the relative dispersion by layer, path linearity, adjacent-layer CKA."""
    n, p = fmap.numbers, fmap.projection
    units = "tokens" if fmap.kind == "single_image" else "images"
    jump = n.jump
    detail = f"candidate {jump.candidate if jump.candidate is not None else '–'}, r2 {_fmt(jump.r2)}, ratio {_fmt(jump.ratio)}"
    crit = "no critical layer" if n.critical_layer is None else f"critical layer {n.critical_layer}"
    diff = n.jump_minus_critical
    rel = ", ".join(
        f"{layer}: {value:.3f}" for layer, value in zip(n.layers, n.relative_dispersion, strict=True)
    )
    lines = [
        f"map: {fmap.n_units} {units} x {len(fmap.layers)} layers = {fmap.n_points} points; {p.backend}, "
        f"trustworthiness {_fmt(p.trustworthiness)} (k = {p.trust_neighbors})"
        + (f", PCA kept {p.pca_retained:.0%} of the variance" if p.pca_retained is not None else ""),
        "stage groups: " + ", ".join(g.label for g in fmap.groups),
        f"dispersion jump ({jump.settings.curve}): "
        + (f"layer {jump.layer}" if jump.layer is not None else "none clear")
        + f" ({detail}); {crit}"
        + (f"; jump - critical = {diff:+d}" if diff is not None else ""),
        f"relative dispersion by layer: {rel}",
    ]
    lin, straight, cka = n.linearity, n.straightness, n.cka_adjacent
    lines.append(
        f"linearity of each {units[:-1]}'s path: median {_fmt(float(np.nanmedian(lin)))} "
        f"(min {_fmt(float(np.nanmin(lin)))}, max {_fmt(float(np.nanmax(lin)))}); straightness median "
        f"{_fmt(float(np.nanmedian(straight)))}"
        if np.isfinite(lin).any()
        else "linearity: undefined"
    )
    if np.isfinite(cka).any():
        low = int(np.nanargmin(cka))
        lines.append(
            f"adjacent-layer CKA: median {_fmt(float(np.nanmedian(cka)))}, lowest {_fmt(float(cka[low]))} between "
            f"layers {n.layers[low]} and {n.layers[low + 1]}"
        )
    else:
        lines.append(f"adjacent-layer CKA: undefined (one {units[:-1]}, or no variance across {units})")
    return lines
