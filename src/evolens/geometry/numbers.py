"""The numbers behind a feature map (README, "Feature geometry"): dispersion and its jump, CKA, path linearity.

States are ``[n_layers, n_units, d]``, layer first; layers are state indices (0 = embeddings, l = output of decoder
layer l).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from evolens.errors import SettingsError
from evolens.geometry import measures

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
