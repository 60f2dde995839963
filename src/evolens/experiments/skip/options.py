"""What the layer-skip experiment runs: :class:`SkipOptions`, one frozen dataclass passed whole from the command
line to :func:`~evolens.experiments.skip.run.run_skip_chunked` and recorded (:meth:`SkipOptions.to_dict`) as the
settings a resumed run must match."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from evolens.analysis.layers import PRESETS
from evolens.analysis.params import DetectorParams
from evolens.api import TraceOptions
from evolens.experiments.skip.methods import SkipMethod


@dataclass(frozen=True)
class SkipOptions:
    """The variants asked for and how every generation runs (defaults in brackets; the arguments of
    :func:`~evolens.experiments.run_skip`).

    Attributes:
        presets: Paper presets (``skip1``, ``skip2``, ``skip3``), derived per item [all three].
        layers: Extra named skip sets (1-based decoder layers), the same for every item [None].
        critical: The critical layer (state index) for every item instead of detecting it [None].
        mutation: The mutation layers for every item instead of detecting them [None].
        params: Detector parameters of the detected layers [the defaults].
        method: ``"hook"`` or ``"rebuild"`` ["hook"].
        keep_last: Layers ``skip3`` keeps at the end [None: ``max(1, round(5 / 32 * L))``].
        mutation_min_fraction: See :func:`~evolens.analysis.layers.item_layers` [0.1].
        trace: How the originals are traced; the variants use its decoding and prompt options [None: the
            defaults without keeping hidden states].
    """

    presets: Sequence[str] = PRESETS
    layers: Mapping[str, Sequence[int]] | None = None
    critical: int | None = None
    mutation: Sequence[int] | None = None
    params: DetectorParams = field(default_factory=DetectorParams)
    method: SkipMethod = "hook"
    keep_last: int | None = None
    mutation_min_fraction: float = 0.1
    trace: TraceOptions | None = None

    def __post_init__(self) -> None:
        # The keyword API takes any sequences; tuples keep the options from changing under a caller's list.
        object.__setattr__(self, "presets", tuple(self.presets))
        if self.layers is not None:
            object.__setattr__(self, "layers", {str(k): tuple(v) for k, v in self.layers.items()})
        if self.mutation is not None:
            object.__setattr__(self, "mutation", tuple(self.mutation))

    @property
    def trace_options(self) -> TraceOptions:
        """:attr:`trace`, or the defaults without keeping hidden states."""
        return self.trace or TraceOptions(keep_hidden_states=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data of every option that changes a result (the trace's as
        :meth:`~evolens.api.TraceOptions.run_config` records them, with its ``batch_size``): what a resumed run
        must match."""
        trace = self.trace_options
        return {
            "presets": list(self.presets),
            "layers": {k: list(v) for k, v in self.layers.items()} if self.layers is not None else None,
            "critical": self.critical,
            "mutation": list(self.mutation) if self.mutation is not None else None,
            "params": self.params.to_dict(),
            "method": self.method,
            "keep_last": self.keep_last,
            "mutation_min_fraction": self.mutation_min_fraction,
            "trace": {**trace.run_config(), "batch_size": trace.batch_size},
        }
