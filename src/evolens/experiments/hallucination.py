"""Hallucinated vs correct tokens (paper §3.2, Fig. 3): two probability curves, where they cross, and whether
the generated token's step has a mutation layer.

Works on traces (fresh or loaded); an alternative token that the trace did not keep (not tracked, not a
candidate) needs the lens, i.e. a fresh trace or ``trace.attach(lvlm.lens())``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from evolens.analysis.params import DetectorParams

if TYPE_CHECKING:
    from evolens.analysis.trace_analysis import TraceAnalysis
    from evolens.api import LVLM
    from evolens.trace import Trace

AlternativeSource = Literal["given", "ground_truth", "competitor"]


@dataclass(frozen=True)
class TokenComparison:
    """The generated token of one step against an alternative token, layer by layer (Fig. 3).

    Attributes:
        item_id: The trace's item.
        step: Generation step.
        generated_id: The generated (e.g. hallucinated) token id.
        generated_token: Its display string.
        alternative_id: The alternative (e.g. correct) token id.
        alternative_token: Its display string.
        alternative_source: ``"given"``, ``"ground_truth"`` (the ground-truth word most probable before the
            mutation layer) or ``"competitor"`` (the strongest other top-1 token of the step before it).
        generated_probs: ``[L + 1]`` probability of the generated token at each state.
        alternative_probs: ``[L + 1]`` probability of the alternative.
        crossing_layer: The state where the generated token finally rises above the alternative (its last
            upward crossing, after which it stays above), or -1 when it never does from ``first_layer`` on.
        crossings: Every crossing as ``(layer, +1 | -1)`` (``+1``: the generated token rises above).
        critical_layer: The step's critical layer (stage), or -1.
        mutation_layers: The step's mutation layers.
        mutation_detected: Whether the step has a mutation layer.
        alternative_led: Whether the alternative was more probable than the generated token at some state in
            ``[critical, first mutation)`` (or ``[critical, L)`` without mutation) — the Fig. 3 pattern.
        crossing_at_mutation: Whether ``crossing_layer`` is one of ``mutation_layers``.
    """

    item_id: str
    step: int
    generated_id: int
    generated_token: str
    alternative_id: int
    alternative_token: str
    alternative_source: str
    generated_probs: list[float]
    alternative_probs: list[float]
    crossing_layer: int
    crossings: list[tuple[int, int]]
    critical_layer: int
    mutation_layers: list[int]
    mutation_detected: bool
    alternative_led: bool
    crossing_at_mutation: bool

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["crossings"] = [list(c) for c in self.crossings]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenComparison:
        values = {k: data[k] for k in cls.__dataclass_fields__}
        values["crossings"] = [(int(a), int(b)) for a, b in data["crossings"]]
        return cls(**values)


def compare_tokens(
    trace: Trace,
    step: int,
    alternative: int | str | None = None,
    *,
    ground_truth: Sequence[int | str] | None = None,
    lvlm: LVLM | None = None,
    params: DetectorParams | None = None,
    analysis: TraceAnalysis | None = None,
) -> TokenComparison:
    """Compare the token generated at ``step`` with an alternative token, layer by layer.

    The alternative is, in order: ``alternative`` if given; else the ``ground_truth`` token most probable at
    some state in ``[first_layer, first mutation layer)`` (``[first_layer, L)`` without mutation); else the
    strongest competitor: the step's candidate token (top-1 at some layer) other than the generated one with the
    highest probability over those states.

    Args:
        trace: A trace.
        step: Generation step, ``0 <= step < n_steps``.
        alternative: A token id or a word (words need ``lvlm``: its :meth:`~evolens.LVLM.token_ids`).
        ground_truth: Candidate correct tokens (ids or words).
        lvlm: The model, to turn words into ids (and to compute probabilities of untracked tokens).
        params: Detector parameters (default :class:`DetectorParams`).
        analysis: A precomputed :func:`~evolens.analysis.analyze_trace` of ``trace`` with the same params.
    """
    raise NotImplementedError


def compare_hallucinations(
    trace: Trace,
    hallucinated: Sequence[int | str],
    ground_truth: Sequence[int | str],
    *,
    lvlm: LVLM | None = None,
    params: DetectorParams | None = None,
    analysis: TraceAnalysis | None = None,
) -> list[TokenComparison]:
    """Every step whose generated token is one of ``hallucinated`` compared with the most probable
    ``ground_truth`` token (the paper's Fig. 3 for a whole description). Words match their first token."""
    raise NotImplementedError
