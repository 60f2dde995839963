"""The paper's Fig. 3 on a saved trace, from words: which steps to compare, with which alternative token, found
among the tokens the trace stored or through the model's tokenizer (:func:`contrast`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evolens.analysis.params import DetectorParams
from evolens.analysis.trace_analysis import analyze_trace
from evolens.errors import LensUnavailableError, SettingsError
from evolens.experiments.hallucination import TokenComparison, compare_hallucinations, compare_tokens
from evolens.trace import Trace


def stored_token_ids(trace: Trace, word: str, *, what: str) -> list[int]:
    """The ids of ``word`` among the tokens a saved trace knows (its vocabulary: generated, top-k, candidate and
    tracked tokens), best matches first: the display string itself, then without outer spaces, then ignoring
    case. A number is taken as a token id."""
    if word.strip().isdigit():
        return [int(word)]
    vocab = trace.vocab
    for same in (
        lambda s: s == word,
        lambda s: s.strip() == word.strip(),
        lambda s: s.strip().lower() == word.strip().lower(),
    ):
        found = sorted(i for i, s in vocab.items() if same(s))
        if found:
            return found
    raise SettingsError(
        f"{what} {word!r} is not among the tokens stored with this trace; give --model to look it up (and compute "
        "its probabilities), trace with track=[...], or give a token id"
    )


def resolve_tokens(
    trace: Trace, words: Sequence[str], lvlm: Any, *, what: str, single: bool = False
) -> list[int | str]:
    """Token ids for ``words``: through the model's tokenizer when one is loaded (words stay words for the API),
    else from the trace's stored vocabulary."""
    if lvlm is not None:
        return [int(w) if w.strip().isdigit() else w for w in words]
    ids: list[int | str] = []
    for word in words:
        found = stored_token_ids(trace, word, what=what)
        if single and len(found) > 1:
            listed = ", ".join(f"{i} ({trace.vocab.get(i, '?')!r})" for i in found)
            raise SettingsError(f"{what} {word!r} matches several stored tokens: {listed}; give one id")
        ids.extend(found)
    return list(dict.fromkeys(ids))


def check_request(trace: Trace, steps: Sequence[int], alternative: str | None, hallu: Sequence[str]) -> None:
    """Refuse a comparison that :func:`contrast` cannot make (cheap: before a model loads)."""
    if hallu and (steps or alternative):
        raise SettingsError(
            "--hallu compares every step that generated one of the words; leave out --step/--alternative"
        )
    if not hallu and not steps:
        raise SettingsError("give --step N (and optionally --alternative or --truth), or --hallu WORDS")
    for s in steps:
        if not 0 <= s < trace.n_steps:
            raise SettingsError(f"--step must be in [0, {trace.n_steps}), got {s}")


def contrast(
    trace: Trace,
    steps: Sequence[int],
    alternative: str | None,
    truth: Sequence[str],
    hallu: Sequence[str],
    params: DetectorParams,
    lvlm: Any = None,
) -> list[TokenComparison]:
    """Compare the generated token with an alternative at ``steps`` (:func:`~evolens.experiments.compare_tokens`),
    or at every step that generated one of the ``hallu`` words (:func:`~evolens.experiments.compare_hallucinations`),
    the words resolved to token ids by :func:`resolve_tokens` (``lvlm``: the trace's model, or ``None``).

    Raises:
        SettingsError: Both or neither of ``steps`` and ``hallu``, a step out of range, a word the trace does not
            know, no ``hallu`` word generated, or a probability the trace did not store (give ``lvlm``).
    """
    check_request(trace, steps, alternative, hallu)
    truth_ids = resolve_tokens(trace, truth, lvlm, what="--truth word") if truth else None
    analysis = analyze_trace(trace, params)
    try:
        if hallu:
            hallu_ids = resolve_tokens(trace, hallu, lvlm, what="--hallu word")
            found = compare_hallucinations(
                trace, hallu_ids, truth_ids or [], lvlm=lvlm, params=params, analysis=analysis
            )
            if not found:
                raise SettingsError(f"the trace generated none of {list(hallu)}: {trace.text!r}")
            return found
        alt = (
            resolve_tokens(trace, [alternative], lvlm, what="--alternative", single=True)[0]
            if alternative is not None
            else None
        )
        return [
            compare_tokens(trace, s, alt, ground_truth=truth_ids, lvlm=lvlm, params=params, analysis=analysis)
            for s in steps
        ]
    except LensUnavailableError:
        raise SettingsError(
            "a token's probabilities were not stored at a compared step (only the generated token, the step's "
            "top-1 candidates and tracked tokens are); give --model to compute them from the hidden "
            "states"
        ) from None
