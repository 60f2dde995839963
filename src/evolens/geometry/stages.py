"""Groups of layers ("stages") that colour the feature maps.

Layer numbers here are *state indices* on a trace's layer axis: 0 is the embedding state (the input of decoder
layer 0) and ``l`` the output of decoder layer ``l``, so a model of L decoder layers has states ``0..L``. These are
the paper's layer numbers (its "32-nd layer" is state 32 of LLaVA-1.5-7B).

Two ways to get groups besides giving them:

- :func:`stage_groups` derives them from a critical and a mutation layer (as the analysis detectors report them):
  rapid evolution ``[first, critical)``, stabilisation ``[critical, mutation)``, mutation ``[mutation, L]``.
- :func:`paper_stage_groups` reproduces what the paper's code hard-codes for its Fig. 6: layers 1-2, 3-18, 19-31
  and 32 of a 32-layer model (its critical layer, 18, closes the second group).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evolens.analysis.stages import MUTATION, RAPID, STABLE, STAGE_NAMES
from evolens.errors import SettingsError, check_positive_int


@dataclass(frozen=True)
class StageGroup:
    """A named set of layers (state indices, sorted, contiguous or not).

    Attributes:
        name: What the group is ("rapid evolution", "stabilisation", ...).
        layers: The state indices in the group, ascending.
    """

    name: str
    layers: tuple[int, ...]

    @property
    def label(self) -> str:
        """``name (first-last)`` for a contiguous group, ``name (a, b, ...)`` otherwise."""
        ls = self.layers
        if not ls:
            return self.name
        if len(ls) == 1:
            return f"{self.name} ({ls[0]})"
        if list(ls) == list(range(ls[0], ls[-1] + 1)):
            return f"{self.name} ({ls[0]}–{ls[-1]})"
        return f"{self.name} ({', '.join(map(str, ls))})"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "layers": list(self.layers)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageGroup:
        return cls(str(data["name"]), tuple(int(i) for i in data["layers"]))


GroupsInput = Sequence[StageGroup] | Mapping[str, Sequence[int]]


NOT_FOUND = -1  # the analysis detectors' "no such layer"


def given_layer(name: str, value: int | None, n_layers: int, lowest: int = 0) -> int | None:
    """Check a critical/mutation layer given by the user or a detector; ``None`` and -1 mean "not found".

    Raises:
        SettingsError: Not an integer, or outside ``[lowest, n_layers]``.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SettingsError(f"{name} must be an integer state index or None, got {value!r}")
    if int(value) == NOT_FOUND:
        return None
    if not lowest <= int(value) <= n_layers:
        raise SettingsError(
            f"{name} must be a state index in [{lowest}, {n_layers}] (l = output of decoder layer l), or None / -1 "
            f"for none, got {value!r}"
        )
    return int(value)


def stage_groups(
    n_layers: int,
    critical_layer: int | None = None,
    mutation_layer: int | None = None,
    *,
    include_embedding: bool = False,
) -> tuple[StageGroup, ...]:
    """Stage groups from a critical and (optionally) a mutation layer.

    The stages follow the analysis' definition: rapid evolution ``[first, critical)``, stabilisation
    ``[critical, mutation)`` and mutation ``[mutation, L]``, where ``first`` is 0 when the embedding state is
    included and 1 otherwise. Without a mutation layer, stabilisation runs to L; without either layer there is one
    group, "all layers". Empty groups (a critical layer equal to ``first``) are dropped.

    Args:
        n_layers: Decoder layers L (states ``0..L``).
        critical_layer: State index in ``[0, L]`` where the rapid evolution ends; ``None`` or -1 (the analysis
            detectors' "not found") for none.
        mutation_layer: State index in ``[1, L]`` of the (first) mutation layer, after ``critical_layer``;
            ``None`` or -1 for none.
        include_embedding: Whether state 0 is among the points being grouped.

    Raises:
        SettingsError: A layer out of range, or a mutation layer not after the critical layer.

    >>> [g.label for g in stage_groups(32, 18, 27)]
    ['rapid evolution (1–17)', 'stabilisation (18–26)', 'mutation (27–32)']
    """
    check_positive_int("n_layers", n_layers)
    critical_layer = given_layer("critical_layer", critical_layer, n_layers)
    mutation_layer = given_layer("mutation_layer", mutation_layer, n_layers, lowest=1)
    if critical_layer is not None and mutation_layer is not None and mutation_layer <= critical_layer:
        raise SettingsError(
            f"mutation_layer ({mutation_layer}) must come after critical_layer ({critical_layer})"
        )
    first = 0 if include_embedding else 1
    end = n_layers + 1
    if critical_layer is None and mutation_layer is None:
        return (StageGroup("all layers", tuple(range(first, end))),)
    bounds: list[tuple[str, int, int]] = []
    if critical_layer is not None:
        stop = mutation_layer if mutation_layer is not None else end
        bounds += [(STAGE_NAMES[RAPID], first, critical_layer), (STAGE_NAMES[STABLE], critical_layer, stop)]
    else:
        assert mutation_layer is not None
        bounds.append(("before mutation", first, mutation_layer))
    if mutation_layer is not None:
        bounds.append((STAGE_NAMES[MUTATION], mutation_layer, end))
    return tuple(StageGroup(name, tuple(range(a, b))) for name, a, b in bounds if b > a)


def paper_stage_groups(n_layers: int = 32, critical_layer: int | None = None) -> tuple[StageGroup, ...]:
    """The groups the paper's code hard-codes for Fig. 6: layers 1-2, 3-c, (c+1)-(L-1) and L.

    For LLaVA-1.5-7B (L = 32, c = 18) these are 1-2, 3-18, 19-31 and 32. Unlike :func:`stage_groups`, the
    critical layer closes the second group, as in the paper's figure. The embedding state is never included.

    Args:
        n_layers: Decoder layers L (at least 5, so every group is non-empty).
        critical_layer: c, in ``[3, L - 2]``; default 18 for 32 layers, else ``round(18 * L / 32)``.

    >>> [g.layers[0] for g in paper_stage_groups()], paper_stage_groups()[1].layers[-1]
    ([1, 3, 19, 32], 18)
    """
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 5:
        raise SettingsError(f"the paper's four groups need at least 5 layers, got {n_layers!r}")
    c = round(18 * n_layers / 32) if critical_layer is None else critical_layer
    if isinstance(c, bool) or not isinstance(c, int) or not 3 <= c <= n_layers - 2:
        raise SettingsError(
            f"critical_layer must be in [3, {n_layers - 2}] for the paper's groups, got {c!r}"
        )
    return (
        StageGroup("initial", (1, 2)),
        StageGroup(STAGE_NAMES[RAPID], tuple(range(3, c + 1))),
        StageGroup(STAGE_NAMES[STABLE], tuple(range(c + 1, n_layers))),
        StageGroup("final", (n_layers,)),
    )


def normalize_groups(groups: GroupsInput, layers: Sequence[int]) -> tuple[StageGroup, ...]:
    """Check user groups against the layers being mapped and return them as :class:`StageGroup` s.

    The groups must partition ``layers`` exactly: every mapped layer in one group, no layer twice, no layer that
    is not mapped (e.g. state 0 when the embedding state is left out).

    Raises:
        SettingsError: Overlapping, missing or unknown layers, an empty group, or duplicate names.
    """
    if isinstance(groups, Mapping):
        items = [StageGroup(str(k), tuple(int(i) for i in v)) for k, v in groups.items()]
    else:
        items = []
        for g in groups:
            if not isinstance(g, StageGroup):
                raise SettingsError(
                    f"groups must be StageGroup objects or a mapping name -> layers, got {g!r}"
                )
            items.append(g)
    if not items:
        raise SettingsError("groups is empty; give at least one group or leave it out")
    names = [g.name for g in items]
    if len(set(names)) != len(names):
        raise SettingsError(f"group names must be unique, got {names}")
    wanted = set(layers)
    seen: dict[int, str] = {}
    out = []
    for g in items:
        if not g.layers:
            raise SettingsError(f"group {g.name!r} has no layers")
        for layer in g.layers:
            if layer not in wanted:
                raise SettingsError(
                    f"group {g.name!r} has layer {layer}, which is not mapped (mapped: {min(wanted)}–{max(wanted)})"
                )
            if layer in seen:
                raise SettingsError(f"layer {layer} is in both group {seen[layer]!r} and group {g.name!r}")
            seen[layer] = g.name
        out.append(StageGroup(g.name, tuple(sorted(g.layers))))
    missing = sorted(wanted - set(seen))
    if missing:
        raise SettingsError(f"layers {missing} are in no group; the groups must cover every mapped layer")
    return tuple(out)
