"""Token-level hallucination detectors scored the same way against the benchmark's labels.

For every judged token (the first token of each hallucinated or grounded word by default), the signals of
:mod:`.signals` (baselines and the paper's layers) and two kinds of probes of :mod:`.probes` (the per-layer metric
profile; the hidden state at each layer) give a score; each score's AUROC and AUPRC (:mod:`.scoring`) come with
95% intervals from a bootstrap over items. Tables are computed for all errors and, when the tokens carry an error
group (e.g. "prior-driven" on the built-in toy), for each group's errors against all grounded tokens. The probes
are fitted once on all tokens; a group's table judges their out-of-fold scores on its tokens.

The result is plain data (:mod:`.detect_results`, ``results/detect.json`` of a run); ``evolens.runs.detect`` reads
a run and writes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from evolens.errors import SettingsError
from evolens.hallucination.bootstrap import ItemBootstrap
from evolens.hallucination.detect_results import (
    ALL_ERRORS,
    PROBES,
    DetectOptions,
    DetectResult,
    DetectTable,
    LayerProbeCurve,
    SignalScore,
)
from evolens.hallucination.probes import grouped_folds, probe_scores
from evolens.hallucination.scoring import roc_points, score_estimates
from evolens.hallucination.signals import SIGNALS, TokenProfiles, oriented, signal_values
from evolens.hallucination.stats import Unit

if TYPE_CHECKING:
    import pandas as pd


def select_tokens(tokens: pd.DataFrame, unit: Unit = "first_token") -> pd.DataFrame:
    """The judged tokens of a run's token table: labelled hallucinated or grounded, not the final EOS, and (unit
    ``"first_token"``) the first token of their word. Raises ``SettingsError`` when none is labelled."""
    missing = {"item", "step", "label", "first"} - set(tokens.columns)
    if missing:
        raise SettingsError(f"the token table lacks column(s) {sorted(missing)}")
    keep = tokens["label"].isin(["hallucinated", "grounded"])
    if "is_eos" in tokens.columns:
        keep &= ~tokens["is_eos"].fillna(False).astype(bool)
    if unit == "first_token":
        keep &= tokens["first"].fillna(False).astype(bool)
    selected = tokens[keep].reset_index(drop=True)
    if selected.empty:
        raise SettingsError(
            "no token is labelled hallucinated or grounded: the run's evaluation judged no word (a dataset without "
            "labels, e.g. an image folder without questions, cannot score detectors)"
        )
    return selected


@dataclass(frozen=True)
class _Scored:
    """The judged tokens' items, labels (``positive``: hallucinated) and every oriented score, ``[n_tokens]`` each."""

    items: np.ndarray
    positive: np.ndarray
    scores: dict[str, np.ndarray]


def _table(name: str, mask: np.ndarray, data: _Scored, options: DetectOptions) -> DetectTable:
    positive = data.positive[mask]
    bootstrap = ItemBootstrap.of(data.items[mask], options.n_bootstrap, options.seed)
    scores = []
    for signal_name, values in data.scores.items():
        auroc, auprc = score_estimates(values[mask], positive, bootstrap)
        scores.append(SignalScore(signal_name, auroc, auprc, *roc_points(values[mask], positive)))
    n_pos = int(positive.sum())
    return DetectTable(
        name, n_pos, int(len(positive) - n_pos), len(np.unique(data.items[mask].astype(str))),
        n_pos / len(positive) if len(positive) else 0.0, scores,
    )  # fmt: skip


def _hidden_curve(
    hidden: np.ndarray, data: _Scored, folds: list[np.ndarray], options: DetectOptions
) -> tuple[LayerProbeCurve, np.ndarray, np.ndarray]:
    bootstrap = ItemBootstrap.of(data.items, options.n_bootstrap, options.seed)
    per_layer = [probe_scores(hidden[:, layer], data.positive, folds, c=options.probe_c) for layer in
                 range(hidden.shape[1])]  # fmt: skip
    aurocs = [score_estimates(p.scores, data.positive, bootstrap)[0] for p in per_layer]
    best = int(np.argmax([a.value if a.value is not None else -1.0 for a in aurocs]))
    curve = LayerProbeCurve(list(range(hidden.shape[1])), aurocs, [p.balanced_accuracy for p in per_layer])
    return curve, per_layer[-1].scores, per_layer[best].scores


def detect(
    tokens: pd.DataFrame,
    profiles: TokenProfiles,
    options: DetectOptions | None = None,
    *,
    hidden: np.ndarray | None = None,
) -> DetectResult:
    """Score every signal and probe as a detector of hallucinated tokens.

    Args:
        tokens: The judged tokens (:func:`select_tokens`): ``item``, ``label`` (hallucinated / grounded),
            ``critical_layer``, ``mutation_layers`` and optionally ``error_group`` (a hallucinated token's kind of
            error, e.g. ``"prior-driven"``; a table is made per group when any is set).
        profiles: Their per-layer metrics (:func:`~evolens.hallucination.signals.token_profiles`), same order.
        options: What to compute (default :class:`DetectOptions`).
        hidden: ``[n_tokens, L + 1, d_model]`` hidden states of the tokens, for ``options.hidden_probe``.

    Raises:
        SettingsError: No hallucinated or no grounded token; too few of either to cross-validate a probe; the
            hidden-state probe asked for without hidden states.
    """
    options = options or DetectOptions()
    positive = (tokens["label"] == "hallucinated").to_numpy()
    if positive.all() or not positive.any():
        raise SettingsError(
            f"detectors need both hallucinated and grounded tokens; got {int(positive.sum())} hallucinated and "
            f"{int((~positive).sum())} grounded"
        )
    if options.hidden_probe and hidden is None:
        raise SettingsError("the hidden-state probe needs hidden states (or hidden_probe=False)")
    values = signal_values(tokens, profiles)
    data = _Scored(
        tokens["item"].astype(str).to_numpy(),
        positive,
        {s.name: oriented(values[s.name], s.direction) for s in SIGNALS},
    )
    signals = list(SIGNALS)
    folds = grouped_folds(data.items, positive, options.n_folds, options.seed) if (
        options.metric_probe or options.hidden_probe) else []  # fmt: skip
    features: tuple[str, ...] = ()
    if options.metric_probe:
        x, names = profiles.features()
        data.scores["metric_probe"] = probe_scores(x, positive, folds, c=options.probe_c).scores
        signals.append(PROBES[0])
        features = tuple(names)
    curve = None
    if options.hidden_probe and hidden is not None:
        curve, data.scores["hidden_probe_last"], data.scores["hidden_probe_best"] = _hidden_curve(
            hidden, data, folds, options
        )
        signals += PROBES[1:]
    tables = [_table(ALL_ERRORS, np.ones(len(positive), dtype=bool), data, options)]
    if "error_group" in tokens.columns:
        group = tokens["error_group"].where(positive, None).to_numpy()
        for name in sorted(
            {str(g) for g in group if g is not None and g == g}, key=lambda g: (g == "other", g)
        ):
            tables.append(_table(name, ~positive | (group == name), data, options))
    return DetectResult(profiles.n_layers, options, signals, tables, curve, features)
