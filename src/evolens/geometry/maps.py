"""Feature maps of the paper's §5 — one image (Fig. 6, eq. 5) and across images (Fig. 7, eq. 6) — with their numbers.

A map has ``n_units x n_mapped_layers`` points. A *unit* is a generated token (one image) or an image (its answer
token). Points are ordered unit by unit: point ``p`` is unit ``p // n_mapped_layers`` at layer
``layers[p % n_mapped_layers]``. Layers are state indices (0 = embeddings, l = output of decoder layer l).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from evolens.analysis.params import DetectorParams
from evolens.errors import SettingsError, StoreError
from evolens.files import atomic_write_text
from evolens.geometry import measures
from evolens.geometry.detect import detect_stage_layers
from evolens.geometry.features import UnitStates, multi_image_states, single_image_states
from evolens.geometry.reduce import Projection, ReducerSettings, preprocess, reduce_2d
from evolens.geometry.stages import GroupsInput, StageGroup, given_layer, normalize_groups, stage_groups
from evolens.trace import Trace

if TYPE_CHECKING:
    import pandas as pd

SCHEMA = "evolens.geometry/1"
AUTO: Literal["auto"] = "auto"
LayerChoice = int | None | Literal["auto"]
MapKind = Literal["single_image", "multi_image"]
NumbersSpace = Literal["raw", "preprocessed"]


def _floats(values: Any) -> list[float | None]:
    """JSON-safe floats: NaN becomes null (JavaScript's JSON.parse rejects NaN)."""
    return [None if v != v else float(v) for v in np.asarray(values, dtype=np.float64).ravel().tolist()]


def _array(values: Sequence[float | None], shape: tuple[int, ...] | None = None) -> np.ndarray:
    arr = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return arr.reshape(shape) if shape is not None else arr


@dataclass(frozen=True)
class GeometryNumbers:
    """What the pictures show, as numbers (definitions in the README, "Feature geometry").

    Attributes:
        layers: The state index of each per-layer value.
        dispersion: ``[n_layers]`` RMS distance of the units to their centroid at each layer.
        relative_dispersion: ``[n_layers]`` dispersion over the RMS norm at the layer, in [0, 1].
        jump: Where the dispersion steps up (the neck/body boundary of Fig. 7).
        critical_layer: The critical layer it is compared with, if given.
        cka_adjacent: ``[n_layers - 1]`` linear CKA between ``layers[i]`` and ``layers[i + 1]``, units as samples.
        cka_matrix: ``[n_layers, n_layers]`` linear CKA between every pair of layers.
        linearity: ``[n_units]`` share of each unit's layer-trajectory variance on its first principal component.
        straightness: ``[n_units]`` chord / arc length of each unit's path through the layers.
        space: ``"raw"`` (the pre-norm states) or ``"preprocessed"`` (after the map's per-feature scaling).
    """

    layers: tuple[int, ...]
    dispersion: np.ndarray
    relative_dispersion: np.ndarray
    jump: measures.Jump
    critical_layer: int | None
    cka_adjacent: np.ndarray
    cka_matrix: np.ndarray
    linearity: np.ndarray
    straightness: np.ndarray
    space: NumbersSpace

    @property
    def jump_minus_critical(self) -> int | None:
        """Jump layer minus critical layer (0: they coincide, as the paper reports), or ``None``."""
        if self.jump.layer is None or self.critical_layer is None:
            return None
        return self.jump.layer - self.critical_layer

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": list(self.layers),
            "dispersion": _floats(self.dispersion),
            "relative_dispersion": _floats(self.relative_dispersion),
            "jump": self.jump.to_dict(),
            "critical_layer": self.critical_layer,
            "jump_minus_critical": self.jump_minus_critical,
            "cka_adjacent": _floats(self.cka_adjacent),
            "cka_matrix": [_floats(row) for row in self.cka_matrix],
            "linearity": _floats(self.linearity),
            "straightness": _floats(self.straightness),
            "space": self.space,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeometryNumbers:
        n = len(data["layers"])
        cka = np.array([_array(row) for row in data["cka_matrix"]], dtype=np.float64).reshape(n, n)
        crit = data.get("critical_layer")
        return cls(
            layers=tuple(int(i) for i in data["layers"]),
            dispersion=_array(data["dispersion"]),
            relative_dispersion=_array(data["relative_dispersion"]),
            jump=measures.Jump.from_dict(data["jump"]),
            critical_layer=None if crit is None else int(crit),
            cka_adjacent=_array(data["cka_adjacent"]),
            cka_matrix=cka,
            linearity=_array(data["linearity"]),
            straightness=_array(data["straightness"]),
            space=data["space"],
        )


def geometry_numbers(
    states: Any,
    layers: Sequence[int],
    *,
    critical_layer: int | None = None,
    jump: measures.JumpSettings | None = None,
    space: NumbersSpace = "raw",
) -> GeometryNumbers:
    """Every number of :class:`GeometryNumbers` from ``[n_layers, n_units, d]`` states.

    Args:
        states: Layer first, one row per entry of ``layers``.
        layers: State indices of the rows.
        critical_layer: Compared with the jump layer.
        jump: How the dispersion jump is found (default :class:`~evolens.geometry.measures.JumpSettings`: on the
            relative dispersion, the model's last layer left out).
        space: Recorded: which features the states are.
    """
    x = np.asarray(states, dtype=np.float64)
    ls = tuple(int(i) for i in layers)
    if x.ndim != 3 or x.shape[0] != len(ls):
        raise SettingsError(f"states must be [n_layers={len(ls)}, n_units, d], got shape {tuple(x.shape)}")
    jump = jump or measures.JumpSettings()
    spread = measures.dispersion(x)
    relative = measures.relative_dispersion(x)
    curve = relative if jump.curve == "relative" else spread
    n_detect = len(ls) - 1 if jump.exclude_final and len(ls) > 1 else len(ls)
    found = measures.jump_layer(curve[:n_detect], ls[:n_detect], jump)
    if x.shape[1] >= 2:
        cka = measures.cka_matrix(x)
        cka_adj = np.array([cka[i, i + 1] for i in range(len(ls) - 1)], dtype=np.float64)
    else:  # one unit: no variance across units, CKA is undefined
        cka = np.full((len(ls), len(ls)), np.nan)
        cka_adj = np.full(len(ls) - 1, np.nan)
    return GeometryNumbers(
        layers=ls,
        dispersion=spread,
        relative_dispersion=relative,
        jump=found,
        critical_layer=critical_layer,
        cka_adjacent=cka_adj,
        cka_matrix=cka,
        linearity=measures.linearity(x),
        straightness=measures.straightness(x),
        space=space,
    )


@dataclass(frozen=True)
class FeatureMap:
    """A 2-D map of features across layers, its labels and its numbers — what figures and reports read.

    Attributes:
        kind: ``"single_image"`` (Fig. 6: units are generated tokens) or ``"multi_image"`` (Fig. 7: units are
            images, each with its answer token).
        projection: The 2-D coordinates and how they were made (with their trustworthiness).
        layers: The mapped state indices (``1..L``, or ``0..L`` with the embedding state).
        n_layers: Decoder layers L of the model.
        point_layer: ``[n_points]`` state index of each point.
        point_unit: ``[n_points]`` unit index of each point.
        groups: Stage groups partitioning ``layers``.
        unit_tokens: The token of each unit (generated token / answer token).
        unit_steps: The generation step of each unit.
        unit_items: The item (image) of each unit.
        numbers: Dispersion, jump, CKA, linearity (see :class:`GeometryNumbers`).
        critical_layer: Given critical layer, if any.
        mutation_layer: Given (first) mutation layer, if any.
        source: Provenance: model info, prompts, image sources (empty for explicit tensors).
    """

    kind: MapKind
    projection: Projection
    layers: tuple[int, ...]
    n_layers: int
    point_layer: np.ndarray
    point_unit: np.ndarray
    groups: tuple[StageGroup, ...]
    unit_tokens: list[str]
    unit_steps: list[int]
    unit_items: list[str]
    numbers: GeometryNumbers
    critical_layer: int | None
    mutation_layer: int | None
    source: dict[str, Any]

    # ---------------------------------------------------------------- views
    @property
    def coords(self) -> np.ndarray:
        """``[n_points, 2]`` the map."""
        return self.projection.coords

    @property
    def n_points(self) -> int:
        return int(self.point_layer.shape[0])

    @property
    def n_units(self) -> int:
        return len(self.unit_tokens)

    @property
    def include_embedding(self) -> bool:
        return 0 in self.layers

    @property
    def point_group(self) -> np.ndarray:
        """``[n_points]`` index into :attr:`groups` of each point."""
        lookup = {layer: gi for gi, g in enumerate(self.groups) for layer in g.layers}
        return np.array([lookup[int(layer)] for layer in self.point_layer], dtype=np.int64)

    @property
    def unit_labels(self) -> list[str]:
        """A display label per unit: ``"step: token"`` (one image) or ``"item: answer"`` (across images)."""
        if self.kind == "single_image":
            return [f"{s}: {t}" for s, t in zip(self.unit_steps, self.unit_tokens, strict=True)]
        return [f"{i}: {t}" for i, t in zip(self.unit_items, self.unit_tokens, strict=True)]

    def points_frame(self) -> pd.DataFrame:
        """One row per point: ``x, y, layer, unit, group, token, step, item``."""
        import pandas as pd

        unit = self.point_unit
        group = self.point_group
        return pd.DataFrame(
            {
                "x": self.coords[:, 0],
                "y": self.coords[:, 1],
                "layer": self.point_layer,
                "unit": unit,
                "group": [self.groups[g].name for g in group],
                "token": [self.unit_tokens[u] for u in unit],
                "step": [self.unit_steps[u] for u in unit],
                "item": [self.unit_items[u] for u in unit],
            }
        )

    # ---------------------------------------------------------------- storage
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "kind": self.kind,
            "projection": self.projection.to_dict(),
            "layers": list(self.layers),
            "n_layers": self.n_layers,
            "point_layer": [int(i) for i in self.point_layer],
            "point_unit": [int(i) for i in self.point_unit],
            "groups": [g.to_dict() for g in self.groups],
            "unit_tokens": list(self.unit_tokens),
            "unit_steps": list(self.unit_steps),
            "unit_items": list(self.unit_items),
            "numbers": self.numbers.to_dict(),
            "critical_layer": self.critical_layer,
            "mutation_layer": self.mutation_layer,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureMap:
        if data.get("schema") != SCHEMA:
            raise StoreError(
                f"not an evolens feature map (schema {data.get('schema')!r}, expected {SCHEMA!r})"
            )
        if data.get("kind") not in ("single_image", "multi_image"):
            raise StoreError(f"unknown feature map kind {data.get('kind')!r}")
        crit, mut = data.get("critical_layer"), data.get("mutation_layer")
        fmap = cls(
            kind=data["kind"],
            projection=Projection.from_dict(data["projection"]),
            layers=tuple(int(i) for i in data["layers"]),
            n_layers=int(data["n_layers"]),
            point_layer=np.asarray(data["point_layer"], dtype=np.int64),
            point_unit=np.asarray(data["point_unit"], dtype=np.int64),
            groups=tuple(StageGroup.from_dict(g) for g in data["groups"]),
            unit_tokens=[str(t) for t in data["unit_tokens"]],
            unit_steps=[int(s) for s in data["unit_steps"]],
            unit_items=[str(s) for s in data["unit_items"]],
            numbers=GeometryNumbers.from_dict(data["numbers"]),
            critical_layer=None if crit is None else int(crit),
            mutation_layer=None if mut is None else int(mut),
            source=dict(data.get("source") or {}),
        )
        fmap._check()
        return fmap

    def _check(self) -> None:
        """Raise :class:`StoreError` when the arrays of a stored map do not fit together."""
        n = self.coords.shape[0]
        units = len(self.unit_tokens)
        problems = []
        if self.point_layer.shape != (n,) or self.point_unit.shape != (n,):
            problems.append(
                f"{n} coordinates but {self.point_layer.shape[0]} layers / {self.point_unit.shape[0]} units"
            )
        if len(self.unit_steps) != units or len(self.unit_items) != units:
            problems.append("unit_tokens, unit_steps and unit_items differ in length")
        if n and (self.point_unit.min() < 0 or self.point_unit.max() >= units):
            problems.append("a point refers to a unit that does not exist")
        if set(self.point_layer.tolist()) - set(self.layers):
            problems.append("a point refers to a layer that is not mapped")
        grouped = [layer for g in self.groups for layer in g.layers]
        if sorted(grouped) != sorted(self.layers):
            problems.append("the groups do not partition the mapped layers")
        if len(self.numbers.layers) != len(self.layers):
            problems.append("the numbers do not cover the mapped layers")
        if problems:
            raise StoreError("inconsistent feature map: " + "; ".join(problems))

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the map as one JSON file, atomically (NaN written as ``null``)."""
        target = Path(path)
        if target.is_dir():
            raise StoreError(f"{target} is a directory; give a file path such as {target / 'geometry.json'}")
        if target.exists() and not overwrite:
            raise StoreError(f"{target} already exists; pass overwrite=True to replace it")
        text = json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=False)
        return atomic_write_text(target, text)

    @classmethod
    def load(cls, path: str | Path) -> FeatureMap:
        """Read a map written by :meth:`save`."""
        target = Path(path)
        try:
            data = json.loads(target.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise StoreError(f"no feature map at {target}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreError(f"cannot read the feature map at {target}: {exc}") from None
        if not isinstance(data, dict):
            raise StoreError(f"{target} does not hold a feature map")
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError, IndexError, StoreError) as exc:
            raise StoreError(f"{target} is not a valid feature map: {exc}") from None


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
    kind: MapKind,
    units: UnitStates,
    *,
    critical_layer: int | None,
    mutation_layer: int | None,
    groups: GroupsInput | None,
    settings: ReducerSettings | None,
    numbers_space: NumbersSpace,
    jump: measures.JumpSettings | None,
) -> FeatureMap:
    settings = settings or ReducerSettings()
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
        jump=jump,
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
    include_embedding: bool = False,
    critical_layer: LayerChoice = AUTO,
    mutation_layer: LayerChoice = AUTO,
    groups: GroupsInput | None = None,
    settings: ReducerSettings | None = None,
    numbers_space: NumbersSpace = "raw",
    jump: measures.JumpSettings | None = None,
    params: DetectorParams | None = None,
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
    units = single_image_states(source, steps=steps, tokens=tokens, include_embedding=include_embedding)
    critical_layer, mutation_layer = _stage_layers(
        [source] if isinstance(source, Trace) else None, critical_layer, mutation_layer, params, None
    )
    return _build(
        "single_image",
        units,
        critical_layer=critical_layer,
        mutation_layer=mutation_layer,
        groups=groups,
        settings=settings,
        numbers_space=numbers_space,
        jump=jump,
    )


def multi_image_map(
    source: Sequence[Trace] | torch.Tensor | np.ndarray,
    *,
    step: int = 0,
    labels: Sequence[str] | None = None,
    tokens: Sequence[str] | None = None,
    include_embedding: bool = False,
    critical_layer: LayerChoice = AUTO,
    mutation_layer: LayerChoice = AUTO,
    groups: GroupsInput | None = None,
    settings: ReducerSettings | None = None,
    numbers_space: NumbersSpace = "raw",
    jump: measures.JumpSettings | None = None,
    params: DetectorParams | None = None,
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
    units = multi_image_states(
        source, step=step, labels=labels, tokens=tokens, include_embedding=include_embedding
    )
    traces = list(source) if not isinstance(source, torch.Tensor | np.ndarray) else None
    critical_layer, mutation_layer = _stage_layers(traces, critical_layer, mutation_layer, params, step)
    return _build(
        "multi_image",
        units,
        critical_layer=critical_layer,
        mutation_layer=mutation_layer,
        groups=groups,
        settings=settings,
        numbers_space=numbers_space,
        jump=jump,
    )
