"""Token-level hallucination detectors scored the same way against the benchmark's labels.

For every judged token (the first token of each hallucinated or grounded word by default), the signals of
:mod:`.signals` (baselines and the paper's layers) and two kinds of probes of :mod:`.probes` (the per-layer metric
profile; the hidden state at each layer) give a score; each score's AUROC and AUPRC (:mod:`.scoring`) come with
95% intervals from a bootstrap over items. Tables are computed for all errors and, when the tokens carry an error
group (e.g. "prior-driven" on the built-in toy), for each group's errors against all grounded tokens. The probes
are fitted once on all tokens; a group's table judges their out-of-fold scores on its tokens.

The result is plain data (``results/detect.json`` of a run, :data:`DETECT_FILE`); ``evolens.runs.detect`` reads a
run and writes it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from evolens.envelope import Envelope
from evolens.errors import SettingsError
from evolens.hallucination.probes import grouped_folds, probe_scores
from evolens.hallucination.scoring import ItemBootstrap, roc_points, score_estimates
from evolens.hallucination.signals import SIGNALS, SignalInfo, TokenProfiles, oriented, signal_values
from evolens.hallucination.stats import Estimate, Unit

if TYPE_CHECKING:
    import pandas as pd

#: The file ``evolens detect`` writes into a run's ``results/``.
DETECT_JSON = "detect.json"
DETECT_FILE = Envelope(what="detector comparison", schema=1, kinds=("evolens.detect",))
ALL_ERRORS = "all errors"
PROBES = (
    SignalInfo(
        "metric_probe", "probe", "logistic regression on the per-layer metric profile (out-of-fold)", 1
    ),
    SignalInfo("hidden_probe_last", "probe", "logistic regression on the last layer's hidden state", 1),
    SignalInfo(
        "hidden_probe_best", "probe", "hidden-state probe at its best layer (chosen on the same folds)", 1
    ),
)


@dataclass(frozen=True)
class DetectOptions:
    """What :func:`detect` computes.

    Attributes:
        unit: ``"first_token"`` (each judged word's first token) or ``"all_tokens"`` (every token of the word).
        n_bootstrap: Replicates of the bootstrap over items (0: no intervals).
        seed: Seed of the bootstrap and of the folds.
        n_folds: Folds of the grouped cross-validation of the probes (at least 2).
        metric_probe: Fit the probe on the per-layer metric profile.
        hidden_probe: Fit a probe on the hidden state at each layer (needs hidden states).
        probe_c: Inverse L2 regularisation strength of the probes' logistic regression.
    """

    unit: Unit = "first_token"
    n_bootstrap: int = 1000
    seed: int = 0
    n_folds: int = 5
    metric_probe: bool = True
    hidden_probe: bool = True
    probe_c: float = 1.0

    def __post_init__(self) -> None:
        if self.unit not in ("first_token", "all_tokens"):
            raise SettingsError(f"unit must be 'first_token' or 'all_tokens', got {self.unit!r}")
        if self.n_bootstrap < 0:
            raise SettingsError(f"n_bootstrap must be >= 0, got {self.n_bootstrap}")
        if self.n_folds < 2:
            raise SettingsError(f"n_folds must be >= 2, got {self.n_folds}")
        if not self.probe_c > 0:
            raise SettingsError(f"probe_c must be > 0, got {self.probe_c}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectOptions:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class SignalScore:
    """How one signal separates the tokens of one table.

    Attributes:
        name: The signal (see ``DetectResult.signals``).
        auroc, auprc: With item-bootstrap 95% intervals; AUROC 0.5 and AUPRC = ``DetectTable.prevalence`` are
            chance, AUROC below 0.5 means the opposite direction separates.
        fpr, tpr: The ROC curve's points (at most :data:`~evolens.hallucination.scoring.ROC_POINTS`).
    """

    name: str
    auroc: Estimate
    auprc: Estimate
    fpr: list[float]
    tpr: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "auroc": self.auroc.to_dict(), "auprc": self.auprc.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SignalScore:
        return cls(
            str(data["name"]), Estimate.from_dict(data["auroc"]), Estimate.from_dict(data["auprc"]),
            [float(x) for x in data["fpr"]], [float(x) for x in data["tpr"]],
        )  # fmt: skip


@dataclass(frozen=True)
class DetectTable:
    """Every signal's scores on one set of tokens: one kind of error against all grounded tokens.

    Attributes:
        name: ``"all errors"`` or an error group (``"prior-driven"``, ``"other"``).
        n_hallucinated, n_grounded: Tokens of each class.
        n_items: Items the tokens come from (the unit of the bootstrap).
        prevalence: ``n_hallucinated / (n_hallucinated + n_grounded)``, the AUPRC of a random score.
        scores: One entry per signal, in the order of ``DetectResult.signals`` (those computed).
    """

    name: str
    n_hallucinated: int
    n_grounded: int
    n_items: int
    prevalence: float
    scores: list[SignalScore]

    def score(self, name: str) -> SignalScore | None:
        return next((s for s in self.scores if s.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "scores": [s.to_dict() for s in self.scores]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectTable:
        return cls(
            str(data["name"]), int(data["n_hallucinated"]), int(data["n_grounded"]), int(data["n_items"]),
            float(data["prevalence"]), [SignalScore.from_dict(s) for s in data["scores"]],
        )  # fmt: skip


@dataclass(frozen=True)
class LayerProbeCurve:
    """The hidden-state probe at each layer: where hallucination becomes linearly readable.

    Attributes:
        layers: States 0..L (0 = embeddings).
        auroc: Per layer, the out-of-fold AUROC with its item-bootstrap interval (all errors).
        balanced_accuracy: Per layer, the out-of-fold balanced accuracy (0.5 = chance).
    """

    layers: list[int]
    auroc: list[Estimate]
    balanced_accuracy: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "auroc": [e.to_dict() for e in self.auroc]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerProbeCurve:
        return cls(
            [int(x) for x in data["layers"]],
            [Estimate.from_dict(e) for e in data["auroc"]],
            [float(x) for x in data["balanced_accuracy"]],
        )


@dataclass(frozen=True)
class DetectResult:
    """Hallucination detectors of a dataset's tokens, each scored against the labels.

    Attributes:
        n_layers: Decoder layers L.
        options: What was computed.
        signals: What each scored signal is (name, family, description, direction).
        tables: ``"all errors"`` first, then one per error group (when the tokens carry groups).
        hidden_curve: The hidden-state probe per layer (``None`` without it).
        metric_probe_features: Names of the metric-profile probe's inputs (empty without it).
    """

    n_layers: int
    options: DetectOptions
    signals: list[SignalInfo]
    tables: list[DetectTable]
    hidden_curve: LayerProbeCurve | None = None
    metric_probe_features: tuple[str, ...] = ()

    def table(self, name: str = ALL_ERRORS) -> DetectTable | None:
        return next((t for t in self.tables if t.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_layers": self.n_layers,
            "options": self.options.to_dict(),
            "signals": [s.to_dict() for s in self.signals],
            "tables": [t.to_dict() for t in self.tables],
            "hidden_curve": self.hidden_curve.to_dict() if self.hidden_curve else None,
            "metric_probe_features": list(self.metric_probe_features),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectResult:
        curve = data.get("hidden_curve")
        return cls(
            int(data["n_layers"]),
            DetectOptions.from_dict(data["options"]),
            [SignalInfo.from_dict(s) for s in data["signals"]],
            [DetectTable.from_dict(t) for t in data["tables"]],
            LayerProbeCurve.from_dict(curve) if curve else None,
            tuple(data.get("metric_probe_features", ())),
        )

    def save(self, path: str | Path) -> Path:
        """Write as JSON (atomically) in :data:`DETECT_FILE`'s envelope."""
        return DETECT_FILE.write(path, "evolens.detect", self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> DetectResult:
        return cls.from_dict(DETECT_FILE.read(path))


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


@dataclass(frozen=True)
class _Scored:
    items: np.ndarray
    positive: np.ndarray
    scores: dict[str, np.ndarray]


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
