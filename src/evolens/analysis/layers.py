"""From per-token detections to one set of layers per item, and the paper's layer-skip presets (§4.2, Fig. 5).

Skip sets are 1-based decoder layer numbers (``1..L``): skipping layer ``l`` replaces decoder layer ``l`` by the
identity, so state ``l`` equals state ``l - 1``. With item critical layer ``c`` and first mutation layer ``m``
(state indices, see :mod:`evolens.analysis.params`):

- ``skip1`` (critical -> mutation): layers ``c + 1 .. m - 1`` — state ``c`` goes straight into layer ``m``;
- ``skip2`` (the mutation layers only): every item mutation layer;
- ``skip3`` (critical -> last few): layers ``c + 1 .. L - keep_last`` — the last ``keep_last`` layers are kept
  (the paper keeps 5 of 32; default ``max(1, round(5 / 32 * L))``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from evolens.analysis.params import NOT_FOUND
from evolens.analysis.trace_analysis import TraceAnalysis
from evolens.errors import SettingsError, check_positive_int

PresetName = Literal["skip1", "skip2", "skip3"]
PRESETS: tuple[PresetName, ...] = ("skip1", "skip2", "skip3")
PAPER_KEEP_LAST = 5
PAPER_DEPTH = 32


@dataclass(frozen=True)
class ItemLayers:
    """One item's critical layer and mutation layers, summarised over its tokens.

    Attributes:
        n_layers: Decoder layers L.
        critical_layer: Median of the tokens' (stage) critical layers, rounded half up; -1 if no token has one.
        mutation_layers: Layers after ``critical_layer`` that are a mutation layer of at least ``min_fraction`` of
            the item's tokens — or, if none reaches it, the single most frequent one (lowest on ties); ascending,
            possibly empty.
        source: ``"detected"`` (from an analysis) or ``"given"`` (by the user).
    """

    n_layers: int
    critical_layer: int
    mutation_layers: tuple[int, ...]
    source: str = "detected"

    def __post_init__(self) -> None:
        check_critical_mutation(self.n_layers, self.critical_layer, self.mutation_layers)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mutation_layers"] = list(self.mutation_layers)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ItemLayers:
        return cls(
            int(data["n_layers"]),
            int(data["critical_layer"]),
            tuple(int(x) for x in data["mutation_layers"]),
            str(data.get("source", "detected")),
        )


def check_critical_mutation(n_layers: int, critical: int, mutation_layers: Sequence[int]) -> None:
    """Raise :class:`SettingsError` unless ``0 <= critical < L`` (or -1) and every mutation layer is in
    ``(critical, L]``."""
    check_positive_int("n_layers", n_layers)
    if critical != NOT_FOUND and not 0 <= critical < n_layers:
        raise SettingsError(f"critical layer must be in [0, {n_layers - 1}] (or -1), got {critical}")
    for m in mutation_layers:
        if not 1 <= m <= n_layers:
            raise SettingsError(f"mutation layer {m} is out of range [1, {n_layers}]")
        if critical == NOT_FOUND:
            raise SettingsError("mutation layers need a critical layer before them")
        if m <= critical:
            raise SettingsError(
                f"critical layer {critical} is not before mutation layer {m}; a mutation layer must come after "
                "the critical layer"
            )


def item_layers(
    analysis: TraceAnalysis, *, min_fraction: float = 0.1, include_eos: bool = False
) -> ItemLayers:
    """Summarise one analysed trace into an item's critical layer and mutation layers (see :class:`ItemLayers`)."""
    if not 0.0 <= min_fraction <= 1.0:
        raise SettingsError(f"min_fraction must be in [0, 1], got {min_fraction!r}")
    mask = analysis.step_mask(include_eos=include_eos)
    crit = analysis.critical_layer[mask]
    crit = crit[crit != NOT_FOUND]
    if crit.size == 0:
        return ItemLayers(analysis.n_layers, NOT_FOUND, ())
    critical = int(np.floor(float(np.median(crit)) + 0.5))
    critical = min(critical, analysis.n_layers - 1)
    counts = np.zeros(analysis.n_layers + 1, dtype=np.int64)
    for keep, layers in zip(mask, analysis.mutation_layers, strict=True):
        if keep:
            for layer in set(layers):
                counts[layer] += 1
    counts[: critical + 1] = 0
    n_tokens = int(mask.sum())
    chosen = [int(x) for x in np.nonzero(counts >= max(1, min_fraction * n_tokens))[0]]
    if not chosen and counts.any():
        chosen = [int(np.argmax(counts))]
    return ItemLayers(analysis.n_layers, critical, tuple(chosen))


def default_keep_last(n_layers: int) -> int:
    """The paper's "retain the final 5 layers" of 32, scaled: ``max(1, round(5 / 32 * L))``."""
    return max(1, round(PAPER_KEEP_LAST / PAPER_DEPTH * n_layers))


def skip_presets(
    layers: ItemLayers,
    names: Sequence[str] = PRESETS,
    *,
    keep_last: int | None = None,
) -> dict[str, tuple[int, ...]]:
    """The skip set (1-based decoder layer numbers) of each preset in ``names`` for one item.

    A preset whose layers do not exist for this item (no critical layer; no mutation layer for ``skip1`` and
    ``skip2``; critical and mutation layers adjacent) maps to an empty tuple: nothing to skip.

    Raises:
        SettingsError: an unknown preset name, or ``keep_last`` out of ``[1, L - 1]``.
    """
    n_layers = layers.n_layers
    unknown = [n for n in names if n not in PRESETS]
    if unknown:
        raise SettingsError(f"unknown skip preset(s) {unknown}; use {list(PRESETS)}")
    keep = default_keep_last(n_layers) if keep_last is None else keep_last
    if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep <= n_layers - 1:
        raise SettingsError(f"keep_last must be an integer in [1, {n_layers - 1}], got {keep!r}")
    c = layers.critical_layer
    mutation = layers.mutation_layers
    out: dict[str, tuple[int, ...]] = {}
    for name in names:
        if c == NOT_FOUND:
            out[name] = ()
        elif name == "skip1":
            out[name] = tuple(range(c + 1, min(mutation))) if mutation else ()
        elif name == "skip2":
            out[name] = tuple(mutation)
        else:
            out[name] = tuple(range(c + 1, n_layers - keep + 1))
    return out
