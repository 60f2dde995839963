"""The options of a dataset run that the run pipeline owns: how the run is merged, and how ``evolens decode``
compares its strategies.

How the model loads is :class:`evolens.api.LoadOptions`, how items are traced :class:`evolens.api.TraceOptions` (decoding in its
:class:`~evolens.capture.generate.GenerationSettings`); the detector's parameters are
:class:`evolens.analysis.DetectorParams`. The command line builds these objects from its option groups
(:func:`evolens.cli.options.option_group`) and hands them on whole.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from evolens.analysis.params import DetectorParams
from evolens.api import TraceOptions
from evolens.data.protocols import DEFAULT_PROTOCOL, Protocol, check_protocol
from evolens.data.text import MethodName, check_text_method
from evolens.errors import SettingsError, check_positive_int
from evolens.hallucination.stats import LayerDetector, Unit

AUTO: Literal["auto"] = "auto"
#: The layer detector of a run: ``"auto"`` (the analysis with the run's detector parameters), any function
#: ``Trace -> TokenLayers``, or ``None`` (no layer columns, no statistics).
DetectorChoice = LayerDetector | Literal["auto"] | None
#: Draws dataset figures from the stored results in a results directory into ``<dir>/figures``; returns the files.
FigureWriter = Callable[[Path], Sequence[Path]]


@dataclass(frozen=True)
class FinalizeOptions:
    """How a finished run is merged into ``results/`` (:func:`evolens.finalize_run`).

    Attributes:
        method: Text tools for the benchmark evaluation: ``"auto"``, ``"exact"`` or ``"fallback"``.
        protocol: How answers are scored: ``"official"`` (the benchmarks' own scripts, exactly) or ``"evolens"``
            (README "Benchmark protocols"); recorded in ``results/evaluation.json`` and ``summary.json``.
        drop_unfinished: Drop a caption's unfinished last sentence before CHAIR (OPERA's practice); recorded in
            ``results/evaluation.json``.
        layer_detector: ``"auto"``: :func:`evolens.analysis.analyze_trace` on every item (written to
            ``items/<id>/analysis.json``); a function ``Trace -> TokenLayers``; or ``None`` (no layer columns, no
            statistics).
        detector_params: Parameters of the ``"auto"`` detector (None: the run's, from ``run.json``).
        unit: Unit of the hallucinated-vs-grounded statistics: ``"first_token"`` or ``"all_tokens"``.
        n_bootstrap: Bootstrap replicates of the statistics' and the analysis summary's intervals.
        merge_metrics: Also write the merged long table (one row per item x step x layer).
        figures: Draw the dataset figures into ``results/figures`` (PNG and SVG).
    """

    method: MethodName = "auto"
    protocol: Protocol = DEFAULT_PROTOCOL
    drop_unfinished: bool = False
    layer_detector: DetectorChoice = AUTO
    detector_params: DetectorParams | None = None
    unit: Unit = "first_token"
    n_bootstrap: int = 1000
    merge_metrics: bool = True
    figures: bool = True

    def __post_init__(self) -> None:
        check_protocol(self.protocol)
        if self.unit not in ("first_token", "all_tokens"):
            raise SettingsError(f"unit must be 'first_token' or 'all_tokens', got {self.unit!r}")
        check_positive_int("n_bootstrap", self.n_bootstrap)
        detector = self.layer_detector
        if isinstance(detector, str) and detector != AUTO:
            raise SettingsError(f"layer_detector must be 'auto', a function or None, got {detector!r}")
        if detector is not None and not isinstance(detector, str) and not callable(detector):
            raise SettingsError(
                f"layer_detector must be 'auto', a function or None, got {type(detector).__name__}"
            )
        params = self.detector_params
        if params is not None and not isinstance(params, DetectorParams):
            object.__setattr__(self, "detector_params", coerce_params(params))

    @property
    def auto(self) -> bool:
        """Whether the run's own analysis is the detector."""
        return self.layer_detector == AUTO

    def check_method(self) -> None:
        """Refuse an unknown text-tools method, or ``"exact"`` without its data — before any tracing (nothing is
        loaded for the others: a run that judges nothing never imports the tools)."""
        check_text_method(self.method)


def coerce_params(params: DetectorParams | Mapping[str, Any] | None) -> DetectorParams | None:
    """``params`` as :class:`DetectorParams` (a mapping is checked key by key; ``None`` stays ``None``)."""
    if params is None or isinstance(params, DetectorParams):
        return params
    if not isinstance(params, Mapping):
        raise SettingsError(
            f"detector_params must be DetectorParams or a mapping, got {type(params).__name__}"
        )
    return DetectorParams.from_dict(params)


def detector_from_spec(spec: str | None) -> DetectorChoice:
    """A layer detector named as the command line and run configurations name it: ``"auto"``, ``"none"`` (or
    ``None``), or ``"module:function"`` (a function ``Trace -> TokenLayers`` importable from ``module``)."""
    if spec is None or spec.lower() == "none":
        return None
    if spec.lower() == AUTO:
        return AUTO
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise SettingsError(f"--detector must be 'auto', 'none' or 'module:function', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise SettingsError(f"cannot import the detector module {module_name!r}: {err}") from None
    detector = getattr(module, attr, None)
    if not callable(detector):
        raise SettingsError(f"{module_name} has no callable {attr!r}")
    return detector


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


@dataclass(frozen=True)
class DecodeStrategy:
    """One strategy of the comparison: its name (the run's directory name) and how its items are traced (the
    decoding strategy travels in ``trace.decoding``; two strategies may also differ in any other tracing option)."""

    name: str
    trace: TraceOptions = field(default_factory=TraceOptions)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise SettingsError(
                f"a strategy name must be 1-64 letters, digits or '_.+-' (it names a directory), got {self.name!r}"
            )


@dataclass(frozen=True)
class DecodeOptions:
    """How the comparison is computed and what is written.

    Attributes:
        n_bootstrap: Replicates of the paired item bootstrap of each accuracy difference.
        level: Confidence level of the intervals.
        seed: Seed of the bootstrap.
        n_examples: Items with changed tokens shown per strategy (``decode.json``, the report).
        figures: Draw ``DIR/figures/decode.*`` (PNG, SVG).
        report: Write ``DIR/report.html``.
        reports: Also write each strategy's own run report, ``DIR/reports/<name>.html``.
        cost_rounds: Rounds of the interleaved cost sample (:mod:`evolens.runs.decode_cost`; 0: none).
    """

    n_bootstrap: int = 2000
    level: float = 0.95
    seed: int = 0
    n_examples: int = 5
    figures: bool = True
    report: bool = True
    reports: bool = True
    cost_rounds: int = 5

    def __post_init__(self) -> None:
        check_positive_int("n_bootstrap", self.n_bootstrap)
        if not 0.0 < self.level < 1.0:
            raise SettingsError(f"level must lie in (0, 1), got {self.level}")
        if self.n_examples < 0:
            raise SettingsError(f"n_examples must be >= 0, got {self.n_examples}")
        if self.cost_rounds < 0:
            raise SettingsError(f"cost_rounds must be >= 0, got {self.cost_rounds}")

    def comparison(self) -> dict[str, Any]:
        """The settings that change the numbers of the comparison."""
        return {"n_bootstrap": self.n_bootstrap, "level": self.level, "seed": self.seed}
