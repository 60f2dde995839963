"""Hand-made token and metric tables with known answers, for the detector tests (``evolens detect``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from evolens.hallucination.detect import detect
from evolens.hallucination.detect_results import DetectOptions, DetectResult
from evolens.hallucination.signals import TokenProfiles, token_profiles


def long_table(items: list[str], n_steps: int, n_layers: int, seed: int = 0) -> pd.DataFrame:
    """A random long metric table (item × step × layer) with the columns a profile reads."""
    rng = np.random.default_rng(seed)
    rows = []
    for item in items:
        for step in range(n_steps):
            for layer in range(n_layers + 1):
                lp = float(np.log(rng.uniform(0.05, 0.9)))
                rows.append({
                    "item": item, "step": step, "layer": layer, "prob": float(np.exp(lp)), "logprob": lp,
                    "rank": int(rng.integers(1, 3)), "entropy_bits": float(rng.uniform(0, 4)),
                    "jsd_next_bits": None if layer == n_layers else float(rng.uniform(0, 0.5)),
                    "kl_to_last_bits": 0.0 if layer == n_layers else float(rng.uniform(0, 2)),
                    "topk_logprobs": [max(lp, -0.1), -1.5, -2.0],
                })  # fmt: skip
    return pd.DataFrame(rows)


def synthetic_dataset(n_items: int = 30, seed: int = 0) -> tuple[pd.DataFrame, TokenProfiles, np.ndarray]:
    """Items of 3 judged tokens; the first token of every third item is hallucinated, and its final probability
    low; half the errors are "prior-driven"."""
    rng = np.random.default_rng(seed)
    items = [f"i{k}" for k in range(n_items)]
    metrics = long_table(items, 3, 2, seed)
    label = [
        "hallucinated" if k % 3 == 0 and s == 0 else "grounded" for k in range(n_items) for s in range(3)
    ]
    group = [("prior-driven" if k % 2 else "other") if lab == "hallucinated" else None
             for k, lab in zip(np.repeat(range(n_items), 3), label, strict=True)]  # fmt: skip
    tokens = pd.DataFrame({
        "item": np.repeat(items, 3), "step": np.tile(range(3), n_items), "label": label, "error_group": group,
        "critical_layer": rng.integers(0, 3, size=3 * n_items), "mutation_layers": [[] for _ in label],
    })  # fmt: skip
    hal = tokens["label"].eq("hallucinated").to_numpy()
    keyed = metrics.set_index(["item", "step", "layer"]).sort_index()
    for item, step in zip(tokens["item"][hal], tokens["step"][hal], strict=True):
        keyed.loc[(item, step, 2), "logprob"] = np.log(0.01)
    profiles = token_profiles(tokens, keyed.reset_index(), 2)
    hidden = rng.normal(size=(len(tokens), 3, 4))
    hidden[hal, 2, 0] += 5.0  # readable at the last layer only
    return tokens, profiles, hidden


def synthetic_result(n_bootstrap: int = 50) -> DetectResult:
    """The detectors of :func:`synthetic_dataset`: 3 tables, the hidden-state probe over states 0..2."""
    tokens, profiles, hidden = synthetic_dataset()
    return detect(tokens, profiles, DetectOptions(n_bootstrap=n_bootstrap, n_folds=3), hidden=hidden)
