"""The result of :func:`evolens.hallucination.detect.detect` as plain data: the options, one table of scores per set
of tokens, the hidden-state probe per layer; stored as ``results/detect.json`` of a run in :data:`DETECT_FILE`'s
envelope (``to_dict``/``from_dict``, :meth:`DetectResult.save`/:meth:`DetectResult.load`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evolens.envelope import Envelope
from evolens.errors import SettingsError
from evolens.hallucination.signals import SignalInfo
from evolens.hallucination.stats import Estimate, Unit

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


def estimate_text(est: Estimate, fmt: str = ".3f") -> str:
    """``"0.896 [0.858, 0.930]"``: a value and its interval as the command line and the report show them (``"–"``
    when undefined, the value alone without an interval)."""
    if est.value is None:
        return "–"
    if est.low is None or est.high is None:
        return format(est.value, fmt)
    return f"{est.value:{fmt}} [{est.low:{fmt}}, {est.high:{fmt}}]"


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
