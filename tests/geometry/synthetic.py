"""Synthetic layer-wise features with a known structure."""

from __future__ import annotations

import numpy as np


def split_states(
    n_layers: int = 12, n_units: int = 20, d: int = 64, split: int = 6, seed: int = 0
) -> np.ndarray:
    """``[n_layers + 1, n_units, d]`` states: all units share one point per layer (plus tiny noise) before state
    ``split``, then each moves off in its own direction — a cluster that splits at ``split``."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n_layers + 1, 1, d)) * 3
    offsets = rng.normal(size=(1, n_units, d)) * 2
    noise = rng.normal(size=(n_layers + 1, n_units, d)) * 0.05
    layer = np.arange(n_layers + 1)[:, None, None]
    return base + noise + np.where(layer >= split, offsets * (1 + 0.1 * (layer - split)), 0.0)
