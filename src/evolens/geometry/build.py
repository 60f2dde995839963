"""Build feature maps of the paper's §5 from traces or tensors: one image (Fig. 6, eq. 5), across images (Fig. 7,
eq. 6).

The stage layers that colour a map are given, or (``"auto"``) found by the detectors of its traces.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypedDict

import numpy as np
import torch
from typing_extensions import Unpack

from evolens.analysis.params import DetectorParams
from evolens.errors import SettingsError
from evolens.geometry import measures
from evolens.geometry.detect import detect_stage_layers
from evolens.geometry.features import UnitStates, multi_image_states, single_image_states
from evolens.geometry.maps import FeatureMap, MapKind
from evolens.geometry.numbers import NumbersSpace, geometry_numbers
from evolens.geometry.reduce import ReducerSettings, preprocess, reduce_2d
from evolens.geometry.stages import GroupsInput, given_layer, normalize_groups, stage_groups
from evolens.trace import Trace

AUTO: Literal["auto"] = "auto"
LayerChoice = int | None | Literal["auto"]


class MapOptions(TypedDict, total=False):
    """The options every map takes (see :func:`single_image_map`); each defaults as documented there."""

    include_embedding: bool
    critical_layer: LayerChoice
    mutation_layer: LayerChoice
    groups: GroupsInput | None
    settings: ReducerSettings | None
    numbers_space: NumbersSpace
    jump: measures.JumpSettings | None
    params: DetectorParams | None


def _check_options(options: MapOptions) -> None:
    unknown = sorted(set(options) - set(MapOptions.__annotations__))
    if unknown:
        raise TypeError(
            f"unexpected keyword arguments {unknown}; a map takes {sorted(MapOptions.__annotations__)}"
        )


def _stage_layers(
    traces: Sequence[Trace] | None,
    critical_layer: LayerChoice,
    mutation_layer: LayerChoice,
    params: DetectorParams | None,
    step: int | None,
) -> tuple[int | None, int | None]:
    """Resolve ``"auto"``: the layer the detectors find in ``traces`` (none for explicit tensors)."""
    for name, value in (("critical_layer", critical_layer), ("mutation_layer", mutation_layer)):
        if isinstance(value, str) and value != AUTO:
            raise SettingsError(f"{name} must be a state index, None or 'auto', got {value!r}")
    if AUTO not in (critical_layer, mutation_layer):
        return critical_layer, mutation_layer  # type: ignore[return-value]
    found = detect_stage_layers(traces, params, step=step) if traces else None
    if critical_layer == AUTO:
        critical_layer = found.critical_layer if found else None
    if mutation_layer == AUTO:
        mutation_layer = found.mutation_layer if found else None
        # no critical layer, or a given one at or after the detected mutation layer: no mutation stage
        no_critical = critical_layer is None or critical_layer == -1
        if mutation_layer is not None and (no_critical or mutation_layer <= critical_layer):  # type: ignore[operator]
            mutation_layer = None
    return critical_layer, mutation_layer


def _build(
    kind: MapKind, units: UnitStates, traces: Sequence[Trace] | None, step: int | None, options: MapOptions
) -> FeatureMap:
    """The map of ``units``; ``traces`` (none for explicit tensors) give the ``"auto"`` stage layers."""
    critical_layer, mutation_layer = _stage_layers(
        traces,
        options.get("critical_layer", AUTO),
        options.get("mutation_layer", AUTO),
        options.get("params"),
        step,
    )
    settings = options.get("settings") or ReducerSettings()
    numbers_space = options.get("numbers_space", "raw")
    groups = options.get("groups")
    if numbers_space not in ("raw", "preprocessed"):
        raise SettingsError(f"numbers_space must be 'raw' or 'preprocessed', got {numbers_space!r}")
    critical_layer = given_layer("critical_layer", critical_layer, units.n_layers)
    mutation_layer = given_layer("mutation_layer", mutation_layer, units.n_layers, lowest=1)
    include_embedding = units.layers[0] == 0
    derived = stage_groups(
        units.n_layers, critical_layer, mutation_layer, include_embedding=include_embedding
    )
    chosen = normalize_groups(groups if groups is not None else derived, units.layers)

    n_mapped, n_units, d = units.states.shape
    what = f"points ({n_units} {'tokens' if kind == 'single_image' else 'images'} × {n_mapped} layers)"
    features = units.states.transpose(1, 0, 2).reshape(n_units * n_mapped, d)  # unit-major
    projection = reduce_2d(features, settings, what=what)

    if numbers_space == "preprocessed":
        scaled = preprocess(features, settings.preprocessing)
        number_states = scaled.reshape(n_units, n_mapped, d).transpose(1, 0, 2)
    else:
        number_states = units.states
    numbers = geometry_numbers(
        number_states,
        units.layers,
        critical_layer=critical_layer,
        jump=options.get("jump"),
        space=numbers_space,
    )
    layer_arr = np.asarray(units.layers, dtype=np.int64)
    return FeatureMap(
        kind=kind,
        projection=projection,
        layers=units.layers,
        n_layers=units.n_layers,
        point_layer=np.tile(layer_arr, n_units),
        point_unit=np.repeat(np.arange(n_units, dtype=np.int64), n_mapped),
        groups=chosen,
        unit_tokens=units.tokens,
        unit_steps=units.steps,
        unit_items=units.items,
        numbers=numbers,
        critical_layer=critical_layer,
        mutation_layer=mutation_layer,
        source=units.source,
    )


def single_image_map(
    source: Trace | torch.Tensor | np.ndarray,
    *,
    steps: Sequence[int] | None = None,
    tokens: Sequence[str] | None = None,
    **options: Unpack[MapOptions],
) -> FeatureMap:
    """Fig. 6 / eq. (5): every generated token's state at every layer of one trace, mapped together to 2-D.

    The states are the trace's pre-norm residual states (Hugging Face's last hidden state is normed and on another
    scale; evolens' is not). The numbers treat the tokens as units: dispersion of the tokens per layer and where it
    jumps, each token's path linearity, CKA between layers with the tokens as samples.

    Args:
        source: A trace with hidden states, or a ``[n_layers + 1, n_steps, d_model]`` tensor (state 0 = embeddings).
        steps: Which generated tokens to map (default all).
        tokens: Display strings for an explicit tensor's steps.
        include_embedding: Map state 0 too (the paper drops it; so does the default).
        critical_layer: State index where rapid evolution ends; sets the stage groups and is compared with the
            dispersion jump. ``"auto"`` (default): detected from the trace's metrics — the median over its tokens
            of :func:`~evolens.analysis.analyze_trace`'s critical layers (:func:`~evolens.geometry.detect_stage_layers`;
            none for an explicit tensor). ``None`` or -1: none.
        mutation_layer: The (first) mutation layer; sets the stage groups. ``"auto"`` (default): detected likewise
            (kept only after the critical layer). ``None`` or -1: none.
        groups: Explicit stage groups (``StageGroup`` s or ``{name: layers}``) partitioning the mapped layers;
            they replace the groups derived from the critical/mutation layers (see also
            :func:`~evolens.geometry.stages.paper_stage_groups`).
        settings: How to reduce (default :class:`ReducerSettings`; ``ReducerSettings.paper(6)`` for the paper's).
        numbers_space: Compute the numbers on the ``"raw"`` states (default) or the ``"preprocessed"`` ones.
        jump: How the dispersion jump is found (:class:`~evolens.geometry.measures.JumpSettings`).
        params: Detector parameters of the ``"auto"`` layers (default :class:`~evolens.analysis.DetectorParams`).

    Raises:
        InputError: No hidden states, or a tensor of the wrong shape.
        SettingsError: Bad steps, layers, groups or reducer settings; too few points for the perplexity.
    """
    _check_options(options)
    units = single_image_states(
        source, steps=steps, tokens=tokens, include_embedding=options.get("include_embedding", False)
    )
    return _build("single_image", units, [source] if isinstance(source, Trace) else None, None, options)


def multi_image_map(
    source: Sequence[Trace] | torch.Tensor | np.ndarray,
    *,
    step: int = 0,
    labels: Sequence[str] | None = None,
    tokens: Sequence[str] | None = None,
    **options: Unpack[MapOptions],
) -> FeatureMap:
    """Fig. 7 / eq. (6): the answer token's state at every layer for every image, mapped together to 2-D.

    Give the traces of one single-word question over many images ("What is the color of the flower?"). The
    numbers treat the images as units: per layer the dispersion of the images' features — small in the "neck" of
    the paper's guitar, large in its "body" — and the layer where it jumps, compared with ``critical_layer``.

    Args:
        source: Traces (each with hidden states) or a ``[n_layers + 1, n_images, d_model]`` tensor.
        step: Generation step of the answer token (default 0, the first generated token).
        labels: A name per image (default: item ids, or image sources when item ids repeat).
        tokens: Answer token per image, for an explicit tensor.
        include_embedding, critical_layer, mutation_layer, groups, settings, numbers_space, jump, params: As for
            :func:`single_image_map` (``ReducerSettings.paper(7)`` gives the paper's perplexity of 35); the
            ``"auto"`` layers are the medians over the images of the layers detected for the token at ``step``.

    Raises:
        InputError: Fewer than 2 images, a trace without hidden states, traces of differently shaped models.
        SettingsError: ``step`` out of range, bad layers, groups or settings; too few points for the perplexity.
    """
    _check_options(options)
    units = multi_image_states(
        source,
        step=step,
        labels=labels,
        tokens=tokens,
        include_embedding=options.get("include_embedding", False),
    )
    traces = list(source) if not isinstance(source, torch.Tensor | np.ndarray) else None
    return _build("multi_image", units, traces, step, options)
