"""Hallucinated vs correct tokens (paper §3.2, Fig. 3): two probability curves, where they cross, and whether
the generated token's step has a mutation layer.

Works on traces (fresh or loaded); an alternative token that the trace did not keep (not tracked, not a
candidate) needs the lens: pass ``lvlm=`` (its lens is attached with :meth:`~evolens.LVLM.attach`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from evolens.analysis.detectors import crossings
from evolens.analysis.io import read_result, write_result
from evolens.analysis.params import NOT_FOUND, DetectorParams
from evolens.analysis.trace_analysis import TraceAnalysis, analyze_trace
from evolens.errors import SettingsError

if TYPE_CHECKING:
    from evolens.api import LVLM
    from evolens.trace import Trace

AlternativeSource = Literal["given", "ground_truth", "competitor"]
KIND = "evolens.token_comparisons"
DEFAULT_NAME = "contrast.json"


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
        alternative_led: Whether the alternative was more probable than the generated token, and at least
            ``prob_min_peak``, at some state in ``[critical, first mutation)`` (``[critical, L)`` without mutation;
            ``first_layer`` instead of ``critical`` when there is none) — the Fig. 3 pattern.
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

    Raises:
        SettingsError: ``step`` out of range, the alternative equal to the generated token, words without
            ``lvlm``, or no competitor to choose automatically.
    """
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < trace.n_steps:
        raise SettingsError(f"step must be in [0, {trace.n_steps}), got {step!r}")
    analysis = _analysis_for(trace, params, analysis)
    params = analysis.params
    first = params.first_layer
    n_layers = trace.n_layers
    generated = int(trace.generated_ids[step])
    critical = int(analysis.critical_layer[step])
    mutations = analysis.mutation_layers[step]
    end = mutations[0] if mutations else n_layers  # states [first, end) are "before the mutation"
    gen_probs = trace.token_probs()[:, step].double().numpy()

    alt_id, source = _choose_alternative(
        trace, step, generated, alternative, ground_truth, lvlm, window=slice(first, end)
    )
    if alt_id == generated:
        raise SettingsError(f"the alternative token {alt_id} is the generated token itself")
    alt_probs = _probs_of(trace, step, [alt_id], lvlm)[:, 0]

    cross = crossings(gen_probs, alt_probs, first_layer=first)
    crossing_layer = _final_crossing(cross, gen_probs, alt_probs)
    lead_from = critical if critical != NOT_FOUND else first
    led = _alternative_led(gen_probs, alt_probs, slice(lead_from, end), params.prob_min_peak)
    return TokenComparison(
        item_id=trace.item_id,
        step=step,
        generated_id=generated,
        generated_token=trace.vocab.get(generated, trace.tokens[step]),
        alternative_id=alt_id,
        alternative_token=_display(trace, alt_id, lvlm),
        alternative_source=source,
        generated_probs=gen_probs.tolist(),
        alternative_probs=alt_probs.tolist(),
        crossing_layer=crossing_layer,
        crossings=cross,
        critical_layer=critical,
        mutation_layers=list(mutations),
        mutation_detected=bool(mutations),
        alternative_led=led,
        crossing_at_mutation=crossing_layer != NOT_FOUND and crossing_layer in mutations,
    )


def _choose_alternative(
    trace: Trace,
    step: int,
    generated: int,
    alternative: int | str | None,
    ground_truth: Sequence[int | str] | None,
    lvlm: LVLM | None,
    *,
    window: slice,
) -> tuple[int, AlternativeSource]:
    """The alternative token of :func:`compare_tokens` and where it came from: ``alternative`` when given; else,
    of the ``ground_truth`` tokens (or, without any other than the generated one, the step's candidates), the
    one most probable at some state in ``window`` (the states before the first mutation layer)."""
    if alternative is not None:
        return _ids([alternative], lvlm)[0], "given"
    pool = _ids(ground_truth, lvlm) if ground_truth else []
    pool = [i for i in dict.fromkeys(pool) if i != generated]
    source: AlternativeSource = "ground_truth"
    if not pool:
        candidates = trace.metrics.candidate_ids[step].tolist()
        pool = [int(i) for i in candidates if i >= 0 and i != generated]
        source = "competitor"
    if not pool:
        raise SettingsError(
            f"step {step}: the generated token is the top-1 token at every layer, so there is no competitor "
            "to compare with; give alternative=... or ground_truth=[...]"
        )
    probs = _probs_of(trace, step, pool, lvlm)  # [L + 1, n]
    return pool[int(np.argmax(probs[window].max(axis=0)))], source


def _final_crossing(cross: list[tuple[int, int]], gen_probs: np.ndarray, alt_probs: np.ndarray) -> int:
    """The generated token's last upward crossing in ``cross``, when it ends above the alternative (it stays above
    from there on), else -1."""
    ups = [layer for layer, direction in cross if direction > 0]
    return ups[-1] if ups and gen_probs[-1] > alt_probs[-1] else NOT_FOUND


def _alternative_led(gen_probs: np.ndarray, alt_probs: np.ndarray, window: slice, min_peak: float) -> bool:
    """Whether the alternative was above the generated token, and at least ``min_peak``, at some state of
    ``window`` (the Fig. 3 pattern)."""
    alt, gen = alt_probs[window], gen_probs[window]
    return bool(((alt > gen) & (alt >= min_peak)).any())


def _analysis_for(
    trace: Trace, params: DetectorParams | None, analysis: TraceAnalysis | None
) -> TraceAnalysis:
    if analysis is None:
        return analyze_trace(trace, params)
    if params is not None and analysis.params != params:
        raise SettingsError("the analysis given was computed with other detector parameters")
    if analysis.n_steps != trace.n_steps or analysis.n_layers != trace.n_layers:
        raise SettingsError("the analysis given does not belong to this trace (different steps or layers)")
    return analysis


def _ids(tokens: Sequence[int | str], lvlm: LVLM | None) -> list[int]:
    out: list[int] = []
    words = [t for t in tokens if isinstance(t, str)]
    if words and lvlm is None:
        raise SettingsError(f"pass lvlm=... to turn the words {words[:3]} into token ids (or give ids)")
    for token in tokens:
        if isinstance(token, str):
            assert lvlm is not None
            out.append(lvlm.token_ids([token])[0])
        elif isinstance(token, (int, np.integer)) and not isinstance(token, bool):
            out.append(int(token))
        else:
            raise SettingsError(f"tokens must be ids or words, got {token!r}")
    return out


def _probs_of(trace: Trace, step: int, ids: Sequence[int], lvlm: LVLM | None) -> np.ndarray:
    """``[L + 1, len(ids)]`` probabilities of ``ids`` at ``step``, from what the trace kept or from the lens."""
    m = trace.metrics
    if any(not 0 <= i < m.vocab_size for i in ids):
        raise SettingsError(f"token ids must lie in [0, {m.vocab_size}), got {list(ids)}")
    tracked = m.tracked_ids.tolist()
    candidates = m.candidate_ids[step].tolist()
    columns: list[np.ndarray | None] = []
    missing: list[int] = []
    for token in ids:
        if token == int(m.target_ids[step]):
            columns.append(m.target_logprobs[:, step].double().exp().numpy())
        elif token in candidates:
            columns.append(m.candidate_logprobs[:, step, candidates.index(token)].double().exp().numpy())
        elif token in tracked:
            columns.append(m.tracked_logprobs[:, step, tracked.index(token)].double().exp().numpy())
        else:
            columns.append(None)
            missing.append(token)
    if missing:
        # needs the lens (lvlm given); the trace alone raises LensUnavailableError
        source = trace if lvlm is None else lvlm.attach(trace)
        extra = source.token_probs(missing)[:, step].double().numpy()
        for j, token in enumerate(missing):
            columns[list(ids).index(token)] = extra[:, j]
    return np.stack([c for c in columns if c is not None], axis=1)


def _display(trace: Trace, token: int, lvlm: LVLM | None) -> str:
    if token in trace.vocab:
        return trace.vocab[token]
    if lvlm is not None:
        return str(lvlm.tokenizer.decode([token], skip_special_tokens=False))
    return f"<{token}>"


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
    ``ground_truth`` token (the paper's Fig. 3 for a whole description). Words match their first token; with no
    ground-truth token the strongest competitor is used (see :func:`compare_tokens`)."""
    analysis = _analysis_for(trace, params, analysis)
    wanted = set(_ids(hallucinated, lvlm))
    truth = _ids(ground_truth, lvlm)
    steps = [t for t, token in enumerate(trace.generated_ids.tolist()) if int(token) in wanted]
    return [compare_tokens(trace, t, ground_truth=truth, lvlm=lvlm, analysis=analysis) for t in steps]


def save_comparisons(path: str | Path, comparisons: Sequence[TokenComparison]) -> Path:
    """Write token comparisons atomically as JSON (a ``.json`` file, or a directory — e.g. the trace's — that
    receives ``contrast.json``); returns the file."""
    return write_result(path, KIND, {"comparisons": [c.to_dict() for c in comparisons]}, DEFAULT_NAME)


def load_comparisons(path: str | Path) -> list[TokenComparison]:
    """Read what :func:`save_comparisons` wrote."""
    return [TokenComparison.from_dict(c) for c in read_result(path, KIND, DEFAULT_NAME)["comparisons"]]
