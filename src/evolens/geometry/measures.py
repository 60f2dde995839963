"""The numbers behind the feature maps: dispersion and its jump, path linearity, linear CKA, trustworthiness.

Every function takes plain arrays. ``states`` is ``[n_layers, n_units, d]`` — layer first, as in
:attr:`evolens.Trace.hidden_states` — where a *unit* is a generated token (one image, Fig. 6) or an image (the
answer token of many images, Fig. 7). Computations run in float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from evolens.errors import SettingsError

JumpOn = Literal["relative", "absolute"]


def _as_states(states: Any, *, min_units: int = 1) -> np.ndarray:
    arr = np.asarray(states, dtype=np.float64)
    if arr.ndim != 3:
        raise SettingsError(f"expected states of shape [n_layers, n_units, d], got shape {tuple(arr.shape)}")
    if arr.shape[1] < min_units:
        raise SettingsError(f"need at least {min_units} units (tokens or images), got {arr.shape[1]}")
    if not np.isfinite(arr).all():
        raise SettingsError("states contain NaN or infinite values")
    return arr


def dispersion(states: Any) -> np.ndarray:
    """``[n_layers]`` RMS distance of the units to their centroid, per layer.

    ``D_l = sqrt(mean_i ||x_il - mean_j x_jl||²)`` — the spread of the features of different units (images or
    tokens) at layer l: small where they cluster (the "neck" of the paper's guitar), large where they diverge.
    In the units of the states.
    """
    x = _as_states(states)
    centred = x - x.mean(axis=1, keepdims=True)
    return np.sqrt((centred**2).sum(-1).mean(-1))


def relative_dispersion(states: Any) -> np.ndarray:
    """``[n_layers]`` dispersion divided by the RMS norm of the states at the layer, in [0, 1].

    ``R_l = D_l / sqrt(mean_i ||x_il||²)``: scale-free, so the growth of the residual stream's norm with depth does
    not read as divergence. 0 when all units coincide, 1 when their centroid is the origin; 0 for an all-zero layer.
    """
    x = _as_states(states)
    spread = dispersion(x)
    rms = np.sqrt((x**2).sum(-1).mean(-1))
    return np.divide(spread, rms, out=np.zeros_like(spread), where=rms > 0)


@dataclass(frozen=True)
class JumpSettings:
    """How :func:`jump_layer` finds the layer where the dispersion jumps.

    Attributes:
        curve: Detect on the ``"relative"`` (default, scale-free) or ``"absolute"`` dispersion.
        min_segment: Fewest layers on each side of the jump.
        min_r2: Least share of the curve's variance the two-level step must explain to count as a jump.
        min_ratio: Least ratio of the mean after the jump to the mean before it.
        exclude_final: Leave the model's last layer out (default): the paper notes the final layer behaves apart
            (features re-cluster), and its own step would mask the neck/body boundary.
    """

    curve: JumpOn = "relative"
    min_segment: int = 2
    min_r2: float = 0.5
    min_ratio: float = 1.25
    exclude_final: bool = True

    def __post_init__(self) -> None:
        if self.curve not in ("relative", "absolute"):
            raise SettingsError(f"curve must be 'relative' or 'absolute', got {self.curve!r}")
        if (
            isinstance(self.min_segment, bool)
            or not isinstance(self.min_segment, int)
            or self.min_segment < 1
        ):
            raise SettingsError(f"min_segment must be an integer >= 1, got {self.min_segment!r}")
        if not 0 <= self.min_r2 <= 1:
            raise SettingsError(f"min_r2 must be in [0, 1], got {self.min_r2!r}")
        if not self.min_ratio >= 1:
            raise SettingsError(f"min_ratio must be >= 1, got {self.min_ratio!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JumpSettings:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Jump:
    """Where a per-layer curve steps up (see :func:`jump_layer`).

    Attributes:
        layer: The jump layer — first layer (state index) of the high segment — or ``None`` when the best step
            is not clear enough (``r2 < min_r2`` or ``ratio < min_ratio``) or there is no upward step at all.
        candidate: The best upward split whether or not it passed the thresholds (``None`` if there is none).
        size: Mean of the curve from ``candidate`` on minus its mean before (``nan`` without a candidate).
        ratio: Mean after over mean before (``inf`` when the mean before is 0; ``nan`` without a candidate).
        r2: Share of the curve's variance the two-level step explains, in [0, 1]: near 1 for a clean step, lower
            for a gradual rise or noise (``nan`` without a candidate).
        layers: The layers the detector looked at.
        settings: The detector's settings.
    """

    layer: int | None
    candidate: int | None
    size: float
    ratio: float
    r2: float
    layers: tuple[int, ...]
    settings: JumpSettings

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "candidate": self.candidate,
            "size": _nan_to_none(self.size),
            "ratio": None if self.ratio != self.ratio else ("inf" if math.isinf(self.ratio) else self.ratio),
            "r2": _nan_to_none(self.r2),
            "layers": list(self.layers),
            "settings": self.settings.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Jump:
        layer, candidate, ratio = data["layer"], data["candidate"], data["ratio"]
        return cls(
            None if layer is None else int(layer),
            None if candidate is None else int(candidate),
            _none_to_nan(data["size"]),
            float("inf") if ratio == "inf" else _none_to_nan(ratio),
            _none_to_nan(data["r2"]),
            tuple(int(i) for i in data["layers"]),
            JumpSettings.from_dict(data["settings"]),
        )


def jump_layer(
    curve: Sequence[float] | np.ndarray,
    layers: Sequence[int],
    settings: JumpSettings | None = None,
) -> Jump:
    """The layer where a per-layer curve jumps up: the change point of the best two-level step fit.

    For every split ``s`` that leaves at least ``min_segment`` layers on each side, the curve is fitted by its
    mean before ``s`` and its mean from ``s`` on; among the splits whose later mean is larger (a step *up*), the
    one with the smallest squared error SSE wins (ties: the earliest) — the *candidate*, ``layers[s]``, the first
    layer of the high segment. It is reported as the jump layer when the step is clear:
    ``r2 = 1 - SSE / SST >= min_r2`` and ``mean after / mean before >= min_ratio``. ``settings.exclude_final`` is
    not applied here (the caller chooses the layers); it is recorded.

    Args:
        curve: ``[n]`` non-negative values (a dispersion), one per layer.
        layers: ``[n]`` the state index of each value, ascending.
        settings: Thresholds (default :class:`JumpSettings`).

    Returns:
        A :class:`Jump`; no candidate when the curve is flat, not finite, has fewer than ``2 * min_segment``
        points, or never steps up.

    >>> jump_layer([0.1, 0.1, 0.1, 0.9, 0.9, 0.9], [1, 2, 3, 4, 5, 6]).layer
    4
    """
    settings = settings or JumpSettings()
    y = np.asarray(curve, dtype=np.float64)
    ls = tuple(int(i) for i in layers)
    if y.ndim != 1 or len(ls) != y.shape[0]:
        raise SettingsError(f"curve and layers must have the same length, got {y.shape} and {len(ls)}")
    nan = float("nan")
    none = Jump(None, None, nan, nan, nan, ls, settings)
    n, m = y.shape[0], settings.min_segment
    if n < 2 * m or not np.isfinite(y).all():
        return none
    sst = float(((y - y.mean()) ** 2).sum())
    if sst <= 1e-300:
        return none
    best: tuple[float, int] | None = None
    for s in range(m, n - m + 1):
        before, after = y[:s], y[s:]
        if after.mean() <= before.mean():
            continue
        sse = float(((before - before.mean()) ** 2).sum() + ((after - after.mean()) ** 2).sum())
        if best is None or sse < best[0] - 1e-12 * sst:
            best = (sse, s)
    if best is None:
        return none
    sse, s = best
    low, high = float(y[:s].mean()), float(y[s:].mean())
    ratio = high / low if low > 0 else (math.inf if low == 0 else nan)
    r2 = max(0.0, 1.0 - sse / sst)
    clear = r2 >= settings.min_r2 and ratio >= settings.min_ratio
    return Jump(ls[s] if clear else None, ls[s], high - low, ratio, r2, ls, settings)


def _trajectories(states: Any) -> np.ndarray:
    x = _as_states(states)
    if x.shape[0] < 2:
        raise SettingsError(f"a trajectory needs at least 2 layers, got {x.shape[0]}")
    return x


def linearity(states: Any) -> np.ndarray:
    """``[n_units]`` share of each unit's layer-trajectory variance on its first principal component, in [0, 1].

    For unit i the points ``x_i0, x_i1, ...`` (one per layer) are centred over the layers and
    ``linearity_i = λ1 / Σ λ`` with λ the eigenvalues of their covariance. 1 for points on a straight line (in any
    order, any spacing); ``1 / min(n_layers - 1, d)`` at the least, for points spread evenly in every direction
    (a random walk, being elongated, scores well above that). ``nan`` for a unit whose states are identical at
    every layer.
    """
    x = _trajectories(states)
    centred = (x - x.mean(axis=0, keepdims=True)).transpose(1, 0, 2)  # [units, layers, d]
    gram = centred @ centred.transpose(0, 2, 1)  # [units, layers, layers]: the covariance's nonzero spectrum
    eig = np.linalg.eigvalsh(gram)  # ascending
    total = eig.clip(min=0).sum(-1)
    top = eig[..., -1].clip(min=0)
    return np.divide(top, total, out=np.full_like(total, np.nan), where=total > 0)


def straightness(states: Any) -> np.ndarray:
    """``[n_units]`` chord over arc length of each unit's path through the layers, in [0, 1].

    ``||x_last - x_first|| / Σ_l ||x_(l+1) - x_l||``: 1 for a path that moves monotonically along a straight
    line, smaller when it turns or doubles back (which :func:`linearity` alone does not see). ``nan`` for a path
    of length 0.
    """
    x = _trajectories(states)
    arc = np.linalg.norm(np.diff(x, axis=0), axis=-1).sum(0)
    chord = np.linalg.norm(x[-1] - x[0], axis=-1)
    return np.divide(chord, arc, out=np.full_like(arc, np.nan), where=arc > 0)


def _normalized_gram(x: np.ndarray) -> np.ndarray | None:
    """The centred linear Gram matrix ``Xc Xcᵀ`` scaled to unit Frobenius norm; ``None`` when it is zero."""
    centred = x - x.mean(axis=0, keepdims=True)
    gram = centred @ centred.T
    norm = float(np.linalg.norm(gram))
    if norm <= 0 or not np.isfinite(norm):
        return None
    return gram / norm


def linear_cka(x: Any, y: Any) -> float:
    """Linear centred kernel alignment of two representations of the same units (Kornblith et al., 2019).

    ``CKA = <Kx, Ky>_F / (||Kx||_F ||Ky||_F)`` with ``K = Xc Xcᵀ`` the Gram matrix of the column-centred
    ``[n_units, d]`` features; equivalently ``||Ycᵀ Xc||²_F / (||Xcᵀ Xc||_F ||Ycᵀ Yc||_F)``. In [0, 1], 1 for
    identical representations, invariant to orthogonal transforms, isotropic scaling and translation (not to
    arbitrary linear maps). ``nan`` when either representation has no variance across units.

    Args:
        x: ``[n_units, d1]``.
        y: ``[n_units, d2]`` (the same units, in the same order).
    """
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise SettingsError(
            f"expected [n_units, d] arrays with the same n_units, got {a.shape} and {b.shape}"
        )
    if a.shape[0] < 2:
        raise SettingsError(f"CKA needs at least 2 units, got {a.shape[0]}")
    ka, kb = _normalized_gram(a), _normalized_gram(b)
    if ka is None or kb is None:
        return float("nan")
    return float(np.clip((ka * kb).sum(), 0.0, 1.0))


def cka_matrix(states: Any) -> np.ndarray:
    """``[n_layers, n_layers]`` linear CKA between every pair of layers, the units as samples.

    ``nan`` in the rows and columns of layers with no variance across units (e.g. the embedding state of the
    same token in every image). Memory: one ``[n_units, n_units]`` Gram matrix per layer.
    """
    x = _as_states(states, min_units=2)
    grams = [_normalized_gram(layer) for layer in x]
    n = len(grams)
    out = np.full((n, n), np.nan)
    flat = [None if g is None else g.ravel() for g in grams]
    for i in range(n):
        gi = flat[i]
        if gi is None:
            continue
        out[i, i] = 1.0
        for j in range(i + 1, n):
            gj = flat[j]
            if gj is not None:
                out[i, j] = out[j, i] = float(np.clip(gi @ gj, 0.0, 1.0))
    return out


def adjacent_cka(states: Any) -> np.ndarray:
    """``[n_layers - 1]`` linear CKA between layer l and l + 1 (the superdiagonal of :func:`cka_matrix`)."""
    x = _as_states(states, min_units=2)
    return np.array([linear_cka(x[i], x[i + 1]) for i in range(x.shape[0] - 1)], dtype=np.float64)


def trustworthiness(features: Any, coords: Any, n_neighbors: int = 10) -> tuple[float, int]:
    """How well a low-dimensional map keeps the high-dimensional neighbourhoods (Venna & Kaski, 2001).

    ``T(k) = 1 - 2 / (n k (2n - 3k - 1)) Σ_i Σ_(j ∈ U_k(i)) (r(i, j) - k)``, where ``U_k(i)`` are the points
    among i's k nearest neighbours in the map but not in the original space and ``r(i, j)`` is j's rank among
    i's neighbours in the original space (Euclidean). 1 when every map neighbourhood is a true neighbourhood;
    about 0.5 for a random map. Computed by :func:`sklearn.manifold.trustworthiness`.

    Args:
        features: ``[n_points, d]`` the features the map was made from.
        coords: ``[n_points, 2]`` the map.
        n_neighbors: k; lowered to the largest value allowed (``k < n / 2``) for small maps.

    Returns:
        ``(trustworthiness, k used)``.
    """
    from sklearn.manifold import trustworthiness as sk_trustworthiness

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(coords, dtype=np.float64)
    n = x.shape[0]
    if y.shape[0] != n:
        raise SettingsError(f"features and coords have different numbers of points: {n} and {y.shape[0]}")
    k = min(int(n_neighbors), (n - 1) // 2)
    if k < 1:
        raise SettingsError(f"trustworthiness needs at least 3 points, got {n}")
    return float(sk_trustworthiness(x, y, n_neighbors=k)), k


def _nan_to_none(value: float) -> float | None:
    return None if value != value else float(value)


def _none_to_nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)
