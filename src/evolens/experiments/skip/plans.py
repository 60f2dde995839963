"""What to skip for each item of the layer-skip experiment: the paper's presets from the item's critical and
mutation layers (detected from its traced original, or given), plus named skip sets the same for every item."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from evolens.analysis.layers import PRESETS, ItemLayers, item_layers, skip_presets
from evolens.analysis.params import DetectorParams
from evolens.analysis.trace_analysis import analyze_trace
from evolens.errors import SettingsError
from evolens.experiments.skip.methods import check_skip_layers
from evolens.experiments.skip.results import ORIGINAL

if TYPE_CHECKING:
    from evolens.trace import Trace

SkipPlan = dict[str, tuple[int, ...]]
"""Variant name -> the decoder layers it skips (1-based), in the order the variants run."""


@dataclass(frozen=True)
class SkipPlanner:
    """The variants asked for, checked (build it with :func:`plan_skips`); plans each item's skip sets.

    Attributes:
        n_layers: Decoder layers L.
        presets: Paper presets (``skip1``, ``skip2``, ``skip3``), derived per item.
        layers: Named skip sets, the same for every item (checked 1-based layers).
        critical: The critical layer given for every item (``None``: detected per item).
        mutation: The mutation layers given for every item, as given.
        given: ``critical`` and ``mutation`` as the items' layers (``None`` when not given).
        params: Detector parameters of the detected layers.
        keep_last: Layers ``skip3`` keeps at the end (``None``: the paper's share).
        mutation_min_fraction: See :func:`~evolens.analysis.layers.item_layers`.
    """

    n_layers: int
    presets: tuple[str, ...]
    layers: SkipPlan
    critical: int | None
    mutation: list[int] | None
    given: ItemLayers | None
    params: DetectorParams
    keep_last: int | None
    mutation_min_fraction: float

    def item_layers(self, trace: Trace) -> ItemLayers | None:
        """The layers the item's presets come from: given, or detected from its traced original (``None`` when
        there are no presets and none were given)."""
        if not self.presets or self.given is not None:
            return self.given
        return item_layers(analyze_trace(trace, self.params), min_fraction=self.mutation_min_fraction)

    def plan(self, layers: ItemLayers | None) -> SkipPlan:
        """One item's variants: the presets derived from its ``layers``, then the named skip sets."""
        plan = (
            skip_presets(layers, self.presets, keep_last=self.keep_last)
            if layers is not None and self.presets
            else {}
        )
        plan.update(self.layers)
        return plan

    def settings(self) -> dict[str, Any]:
        """How the variants were chosen, for a report's settings."""
        return {
            "presets": list(self.presets),
            "layers": {k: list(v) for k, v in self.layers.items()},
            "critical": self.critical,
            "mutation": self.mutation,
            "keep_last": self.keep_last,
            "mutation_min_fraction": self.mutation_min_fraction,
        }


def plan_skips(
    n_layers: int,
    presets: Sequence[str] = PRESETS,
    layers: Mapping[str, Sequence[int]] | None = None,
    *,
    critical: int | None = None,
    mutation: Sequence[int] | None = None,
    params: DetectorParams | None = None,
    keep_last: int | None = None,
    mutation_min_fraction: float = 0.1,
) -> SkipPlanner:
    """Check the variants asked for on a model with ``n_layers`` decoder layers (arguments of
    :func:`~evolens.experiments.run_skip`).

    Raises:
        SettingsError: an unknown preset, layers out of range, a skip set with every layer, variant names that
            collide (or are ``"original"``), ``mutation`` without ``critical``, ``critical`` not before
            ``mutation``, or nothing to run.
    """
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        raise SettingsError(f"unknown skip preset(s) {unknown}; use {list(PRESETS)}")
    extra = {str(name): check_skip_layers(skip, n_layers) for name, skip in (layers or {}).items()}
    names = [*presets, *extra]
    if ORIGINAL in names or len(set(names)) != len(names):
        raise SettingsError(f"variant names must be unique and not {ORIGINAL!r}; got {names}")
    given: ItemLayers | None = None
    if critical is not None or mutation is not None:
        if critical is None:
            raise SettingsError("mutation layers need the critical layer too (critical=...)")
        given = ItemLayers(n_layers, critical, tuple(sorted(set(mutation or ()))), source="given")
    if not names:
        raise SettingsError("nothing to run: give presets and/or layers")
    return SkipPlanner(
        n_layers=n_layers,
        presets=tuple(presets),
        layers=extra,
        critical=critical,
        mutation=list(mutation) if mutation is not None else None,
        given=given,
        params=params or DetectorParams(),
        keep_last=keep_last,
        mutation_min_fraction=mutation_min_fraction,
    )
