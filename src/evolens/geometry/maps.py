"""Feature maps of the paper's §5 — one image (Fig. 6, eq. 5) and across images (Fig. 7, eq. 6) — with their numbers.

A map has ``n_units x n_mapped_layers`` points. A *unit* is a generated token (one image) or an image (its answer
token). Points are ordered unit by unit: point ``p`` is unit ``p // n_mapped_layers`` at layer
``layers[p % n_mapped_layers]``. Layers are state indices (0 = embeddings, l = output of decoder layer l).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from evolens.envelope import Envelope
from evolens.errors import StoreError
from evolens.geometry.numbers import GeometryNumbers
from evolens.geometry.reduce import Projection
from evolens.geometry.stages import StageGroup

if TYPE_CHECKING:
    import pandas as pd

SCHEMA = "evolens.geometry/1"
MapKind = Literal["single_image", "multi_image"]
ENVELOPE = Envelope(what="feature map", schema=SCHEMA, kinds=("single_image", "multi_image"), nested=False)


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
        """The stored form: every field in the flat :data:`ENVELOPE` (NaN as ``None``)."""
        return ENVELOPE.wrap(self.kind, self._fields())

    def _fields(self) -> dict[str, Any]:
        return {
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
        data = ENVELOPE.unwrap(data, "the data")
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
        return ENVELOPE.write(target, self.kind, self._fields())

    @classmethod
    def load(cls, path: str | Path) -> FeatureMap:
        """Read a map written by :meth:`save`."""
        target = Path(path)
        data = ENVELOPE.read(target)
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError, IndexError, StoreError) as exc:
            raise StoreError(f"{target} is not a valid feature map: {exc}") from None
