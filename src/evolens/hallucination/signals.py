"""Per-token hallucination signals read off a run's token table and its per-layer metrics.

Every signal is oriented so that a **higher score means "more likely hallucinated"**; ``direction`` says how the
score relates to the quantity it is made of (−1: a low quantity is suspicious, e.g. a low final probability).
Layer numbers are state indices (0 = embeddings, L = the last layer, whose distribution is the model's own).

Baselines (the model's output distribution only):

- ``final_prob``: probability of the token at the last layer (low → hallucinated);
- ``final_entropy``: entropy of the last layer's distribution, bits (high → hallucinated);
- ``final_margin``: the rank margin — log-probability of the token minus that of the best *other* token at the last
  layer, nats (the top-1/top-2 gap for a greedy token; negative when the token was not top-1; low → hallucinated).

The paper's signals (the layer detector's output and the logit-lens metrics):

- ``mutation_detected``: 1 when the token has a mutation layer, else 0;
- ``mutation_stage_jsd``: the largest adjacent-layer JSD (bits) into or within the mutation stage
  ``[m, L]`` (transitions ``m−1 … L−1``, m the first mutation layer); 0 without a mutation;
- ``critical_layer``: the token's (stage) critical layer; a token without one counts as L + 1 (never settled);
- ``top1_layer``: the first layer from which the token stays top-1 up to L; L + 1 when it is not top-1 at L;
- ``kl_last_to_critical``: KL(p_L ‖ p_c) in bits at the critical layer c — how far the answer moved after the
  critical layer; a token without a critical layer gets the lowest score.

A score that is undefined for a token (NaN) ranks it lowest, as the least suspicious.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from evolens.errors import SettingsError

if TYPE_CHECKING:
    import pandas as pd

Family = Literal["baseline", "paper", "probe"]

#: Columns of the long metric table a profile reads (``metrics.parquet``: one row per item, step and layer).
PROFILE_COLUMNS = ("item", "step", "layer", "prob", "logprob", "rank", "entropy_bits", "jsd_next_bits",
                   "kl_to_last_bits", "topk_logprobs")  # fmt: skip


@dataclass(frozen=True)
class SignalInfo:
    """What a signal is.

    Attributes:
        name: Its key in the tables.
        family: ``"baseline"``, ``"paper"`` or ``"probe"``.
        description: One line: the quantity and its unit.
        direction: +1 when a high quantity means hallucinated, −1 when a low one does (the score is the quantity
            times the direction).
    """

    name: str
    family: Family
    description: str
    direction: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SignalInfo:
        return cls(str(data["name"]), data["family"], str(data["description"]), int(data["direction"]))


SIGNALS: tuple[SignalInfo, ...] = (
    SignalInfo("final_prob", "baseline", "probability of the token at the last layer", -1),
    SignalInfo("final_entropy", "baseline", "entropy of the last layer's distribution (bits)", 1),
    SignalInfo(
        "final_margin", "baseline", "log-prob margin to the best other token at the last layer (nats)", -1
    ),
    SignalInfo("mutation_detected", "paper", "a mutation layer was detected (0/1)", 1),
    SignalInfo(
        "mutation_stage_jsd", "paper", "largest adjacent-layer JSD into/within the mutation stage (bits)", 1
    ),
    SignalInfo("critical_layer", "paper", "stage critical layer (none: L + 1)", 1),
    SignalInfo(
        "top1_layer", "paper", "first layer from which the token stays top-1 (not top-1 at L: L + 1)", 1
    ),
    SignalInfo("kl_last_to_critical", "paper", "KL(last layer || critical layer) (bits)", 1),
)


@dataclass(frozen=True)
class TokenProfiles:
    """Per-layer metrics of the selected tokens, in the order of their rows.

    Attributes:
        logprob, rank, entropy_bits, kl_to_last_bits: ``[n_tokens, L + 1]`` at states 0..L (natural log; rank 1 =
            top; bits; KL(p_L ‖ p_l) in bits).
        jsd_bits: ``[n_tokens, L]`` JSD between states l and l + 1, bits.
        final_margin: ``[n_tokens]`` rank margin at the last layer, nats (NaN when the top-k is too short).
    """

    logprob: np.ndarray
    rank: np.ndarray
    entropy_bits: np.ndarray
    kl_to_last_bits: np.ndarray
    jsd_bits: np.ndarray
    final_margin: np.ndarray

    @property
    def n_layers(self) -> int:
        return int(self.logprob.shape[1]) - 1

    def features(self) -> tuple[np.ndarray, list[str]]:
        """The metric-profile probe's inputs: ``[n_tokens, n_features]`` and the features' names (log-prob,
        log2 rank, entropy and KL to the last layer at every state; the JSD of every transition)."""
        blocks = {
            "logprob": self.logprob,
            "log2_rank": np.log2(np.maximum(self.rank, 1)),
            "entropy_bits": self.entropy_bits,
            "kl_to_last_bits": self.kl_to_last_bits,
            "jsd_bits": self.jsd_bits,
        }
        names = [f"{key}@{layer}" for key, block in blocks.items() for layer in range(block.shape[1])]
        return np.concatenate(list(blocks.values()), axis=1), names


def _margin(logprob: float, rank: int, topk_logprobs: Any) -> float:
    top = np.asarray(topk_logprobs if topk_logprobs is not None else [], dtype=np.float64)
    if rank == 1:
        return float(logprob - top[1]) if top.size > 1 else float("nan")
    return float(logprob - top[0]) if top.size else float("nan")


def token_profiles(tokens: pd.DataFrame, metrics: pd.DataFrame, n_layers: int) -> TokenProfiles:
    """The profiles of ``tokens`` (rows with ``item`` and ``step``) from the long metric table ``metrics`` (columns
    :data:`PROFILE_COLUMNS`; it may hold other tokens too).

    Raises:
        SettingsError: A token without its L + 1 rows in ``metrics``, or missing columns.
    """
    missing = set(PROFILE_COLUMNS) - set(metrics.columns)
    if missing:
        raise SettingsError(f"the metric table lacks column(s) {sorted(missing)}")
    keys = list(zip(tokens["item"].astype(str), tokens["step"].astype(int), strict=True))
    frame = metrics.assign(item=metrics["item"].astype(str)).set_index(["item", "step", "layer"]).sort_index()
    index = [(item, step, layer) for item, step in keys for layer in range(n_layers + 1)]
    try:
        rows = frame.loc[index]
    except KeyError:
        raise SettingsError(f"the metric table lacks layers 0..{n_layers} of some selected token") from None
    if len(rows) != len(index):
        raise SettingsError("the metric table holds a (item, step, layer) row twice")

    def grid(name: str) -> np.ndarray:
        return rows[name].to_numpy(dtype=np.float64).reshape(len(keys), n_layers + 1)

    jsd = grid("jsd_next_bits")[:, :-1]
    last = rows.xs(n_layers, level="layer")
    margin = [
        _margin(lp, int(r), top)
        for lp, r, top in zip(last["logprob"], last["rank"], last["topk_logprobs"], strict=True)
    ]
    return TokenProfiles(
        grid("logprob"), grid("rank"), grid("entropy_bits"), grid("kl_to_last_bits"), jsd, np.asarray(margin)
    )


def _mutations(values: Any) -> list[list[int]]:
    return [[int(x) for x in m] if m is not None and not isinstance(m, float) else [] for m in values]


def _critical(values: Any, n_layers: int) -> np.ndarray:
    import pandas as pd

    return np.array([n_layers + 1 if pd.isna(v) else int(v) for v in values], dtype=np.int64)


def top1_layer(rank: np.ndarray) -> np.ndarray:
    """``[n_tokens]`` the first state from which the token's rank stays 1 up to L (L + 1 when not top-1 at L)."""
    top = np.asarray(rank) == 1
    n_states = top.shape[1]
    not_top_from_end = np.cumsum(~top[:, ::-1], axis=1) == 0  # [t, k]: states L-k..L all top-1
    return n_states - not_top_from_end.sum(axis=1)


def signal_values(tokens: pd.DataFrame, profiles: TokenProfiles) -> dict[str, np.ndarray]:
    """Every signal of :data:`SIGNALS` as ``[n_tokens]`` quantities (not yet oriented by ``direction``).

    Args:
        tokens: One row per token with ``critical_layer`` (nullable) and ``mutation_layers`` (list or null).
        profiles: Their per-layer metrics (:func:`token_profiles`), same order.
    """
    n_layers = profiles.n_layers
    mutations = _mutations(tokens["mutation_layers"])
    critical = _critical(tokens["critical_layer"], n_layers)
    rows = np.arange(len(critical))
    stage_jsd = np.array(
        [profiles.jsd_bits[i, m[0] - 1 :].max() if m and m[0] >= 1 else 0.0 for i, m in enumerate(mutations)]
    )
    has_critical = critical <= n_layers
    kl = np.full(len(critical), np.nan)
    kl[has_critical] = profiles.kl_to_last_bits[rows[has_critical], critical[has_critical]]
    return {
        "final_prob": np.exp(profiles.logprob[:, -1]),
        "final_entropy": profiles.entropy_bits[:, -1],
        "final_margin": profiles.final_margin,
        "mutation_detected": np.array([float(bool(m)) for m in mutations]),
        "mutation_stage_jsd": stage_jsd,
        "critical_layer": critical.astype(np.float64),
        "top1_layer": top1_layer(profiles.rank).astype(np.float64),
        "kl_last_to_critical": kl,
    }


def oriented(values: np.ndarray, direction: int) -> np.ndarray:
    """``direction · values`` with undefined entries (NaN) ranked lowest (−inf)."""
    score = direction * np.asarray(values, dtype=np.float64)
    return np.where(np.isnan(score), -np.inf, score)
