"""The parameters of every detector, in one frozen, serialisable dataclass.

Layer numbering used throughout :mod:`evolens.analysis` and :mod:`evolens.experiments`: **layer numbers are
state indices**. State 0 is the embedding state (the input of the first decoder layer); state ``l`` (1 <= l <= L)
is the output of decoder layer ``l`` counted from 1 as in the paper ("the 18-th layer"), i.e. of
``decoder_layers[l - 1]``. A transition ``l`` (index into ``jsd[l]``) goes from state ``l`` to state ``l + 1``
and is made by decoder layer ``l + 1``. "Not found" is ``-1`` in arrays and ``None`` in scalars.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

from evolens.errors import SettingsError, check_positive_int

JsdReduction = Literal["bits", "paper"]
ProbCurve = Literal["generated", "top1"]
MutationRule = Literal["jsd", "top1", "either", "both"]
StageCritical = Literal["jsd", "prob"]

NOT_FOUND = -1


@dataclass(frozen=True)
class DetectorParams:
    """Thresholds of the critical-layer, mutation-layer and stage detectors (README, section "Detectors").

    Depth-dependent quantities are fractions of the number of decoder layers ``L`` so the same parameters work
    for any depth; see :meth:`n_persist` and :meth:`agreement_layers`.

    Attributes:
        first_layer: First state the detectors look at [1]. State 0 (the embedding state) is usually
            uninformative under the logit lens (its transition 0->1 carries a large JSD for every token), so it is
            skipped by default; ``0`` includes it. Transitions ``jsd[first_layer:]`` are analysed.
        jsd_reduction: Which JSD curve the detectors read: ``"bits"`` (eq. 3-4, in [0, 1]) or ``"paper"`` (the
            paper code's reduction) ["bits"]. Absolute thresholds named ``*_bits`` apply only to ``"bits"``.
        prob_curve: Probability curve of the probability-based critical layer: ``"generated"`` (the generated
            token, paper Fig. 2) or ``"top1"`` (the most probable token of each layer) ["generated"].
        prob_rel: Surge threshold relative to the curve's peak: theta = ``prob_rel`` * max_{l >= first} p[l] [0.5].
        prob_min_peak: A curve whose peak stays below this never "stands out" (no critical layer); also the
            minimum probability of the new top-1 token at a top-1 mutation [0.05].
        persistence: Minimum persistence, as a fraction of L: ``n_persist = max(2, round(persistence * L))``
            states (truncated at the last layer) [0.1]. Used by the probability surge (p stays >= theta), the
            JSD plateau (at least ``n_persist`` low transitions) and top-1 mutations (the new token stays top-1).
        jsd_drop_ratio: The JSD critical layer is accepted only if median JSD before it is at least this many
            times the median JSD after it [4.0].
        jsd_min_gap_bits: ... and (bits only) the two medians differ by at least this much [0.005].
        spike_ratio: A transition after the critical layer is a JSD spike if its JSD exceeds
            ``max(spike_ratio * level, level + spike_mads * scale, spike_min_bits)``, with ``level`` the median
            and ``scale`` 1.4826 * MAD of the transitions from the critical layer on [3.0].
        spike_mads: See ``spike_ratio`` [5.0].
        spike_min_bits: See ``spike_ratio``; bits only [0.01].
        spike_layer_ratio: A spike must also exceed this multiple of the *layer baseline* — the median JSD of the
            same transition over the tokens of the trace (or a baseline given for a dataset) — so a transition that
            jumps for every token (often the last layer) is a property of the layer, not a mutation of the token
            (the paper's Fig. 4 likewise scales each layer pair by its maximum over tokens) [2.0]; 0 turns it off.
        baseline_min_tokens: The trace's own layer baseline is used only when it has at least this many tokens
            (EOS left out); shorter traces (e.g. one-word answers) get no baseline unless one is given [8].
        mutation_rule: Which evidence makes a mutation layer: ``"jsd"`` (a spike), ``"top1"`` (the top-1 token
            changes and the new one persists), ``"either"`` or ``"both"`` ["either"].
        stage_critical: Which critical layer delimits the stages: ``"jsd"`` (paper §4.2: stages read off the JSD
            profile) or ``"prob"`` ["jsd"].
        stage_fallback: Use the other critical layer for a token whose ``stage_critical`` one was not found
            [True].
        agreement_tolerance: Probability- and JSD-based critical layers agree when they differ by at most
            ``max(1, round(agreement_tolerance * L))`` layers [0.05].
    """

    first_layer: int = 1
    jsd_reduction: JsdReduction = "bits"
    prob_curve: ProbCurve = "generated"
    prob_rel: float = 0.5
    prob_min_peak: float = 0.05
    persistence: float = 0.1
    jsd_drop_ratio: float = 4.0
    jsd_min_gap_bits: float = 0.005
    spike_ratio: float = 3.0
    spike_mads: float = 5.0
    spike_min_bits: float = 0.01
    spike_layer_ratio: float = 2.0
    baseline_min_tokens: int = 8
    mutation_rule: MutationRule = "either"
    stage_critical: StageCritical = "jsd"
    stage_fallback: bool = True
    agreement_tolerance: float = 0.05

    def __post_init__(self) -> None:
        if (
            isinstance(self.first_layer, bool)
            or not isinstance(self.first_layer, int)
            or self.first_layer < 0
        ):
            raise SettingsError(f"first_layer must be an integer >= 0, got {self.first_layer!r}")
        for name, options in (
            ("jsd_reduction", JsdReduction),
            ("prob_curve", ProbCurve),
            ("mutation_rule", MutationRule),
            ("stage_critical", StageCritical),
        ):
            if getattr(self, name) not in get_args(options):
                raise SettingsError(
                    f"{name} must be one of {list(get_args(options))}, got {getattr(self, name)!r}"
                )
        if not isinstance(self.stage_fallback, bool):
            raise SettingsError(f"stage_fallback must be a bool, got {self.stage_fallback!r}")
        _check_range("prob_rel", self.prob_rel, 0.0, 1.0, low_open=True)
        _check_range("prob_min_peak", self.prob_min_peak, 0.0, 1.0)
        _check_range("persistence", self.persistence, 0.0, 1.0)
        _check_range("agreement_tolerance", self.agreement_tolerance, 0.0, 1.0)
        _check_range("jsd_drop_ratio", self.jsd_drop_ratio, 1.0, math.inf)
        _check_range("spike_ratio", self.spike_ratio, 1.0, math.inf)
        _check_range("spike_mads", self.spike_mads, 0.0, math.inf)
        _check_range("jsd_min_gap_bits", self.jsd_min_gap_bits, 0.0, 1.0)
        _check_range("spike_min_bits", self.spike_min_bits, 0.0, 1.0)
        _check_range("spike_layer_ratio", self.spike_layer_ratio, 0.0, math.inf)
        check_positive_int("baseline_min_tokens", self.baseline_min_tokens)

    # ------------------------------------------------------------ depth
    def n_persist(self, n_layers: int) -> int:
        """Minimum persistence in states for a model of ``n_layers`` decoder layers: ``max(2, round(p * L))``."""
        return max(2, round(self.persistence * n_layers))

    def agreement_layers(self, n_layers: int) -> int:
        """Largest |critical_prob - critical_jsd| counted as agreement: ``max(1, round(tol * L))``."""
        return max(1, round(self.agreement_tolerance * n_layers))

    def check_depth(self, n_layers: int) -> None:
        """Raise :class:`SettingsError` if these parameters cannot analyse a model of ``n_layers`` layers."""
        if n_layers < 2:
            raise SettingsError(f"the detectors need at least 2 decoder layers, got {n_layers}")
        if self.first_layer > n_layers - 2:
            raise SettingsError(
                f"first_layer={self.first_layer} leaves fewer than 2 transitions of a {n_layers}-layer model; "
                f"use first_layer <= {n_layers - 2}"
            )

    # ------------------------------------------------------------ serialise
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DetectorParams:
        """Build from :meth:`to_dict` output; unknown keys are refused (a typo must not silently use a default)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise SettingsError(f"unknown detector parameter(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**dict(data))


def _check_range(name: str, value: Any, low: float, high: float, *, low_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high == math.inf else ']'}"
        raise SettingsError(f"{name} must be a finite number in {interval}, got {value!r}")
