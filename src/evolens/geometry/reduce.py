"""Reduce features to 2-D: preprocessing, optional PCA to 50 dimensions, then t-SNE, UMAP or PCA.

Deterministic under ``seed``: PCA, t-SNE (openTSNE or scikit-learn) and UMAP all receive it, and the number of
threads is fixed (``n_jobs=1`` by default) so the neighbour search does not depend on scheduling.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from evolens.errors import SettingsError
from evolens.geometry.measures import trustworthiness

log = logging.getLogger(__name__)

Method = Literal["tsne", "umap", "pca"]
Preprocessing = Literal["maxabs", "standardize", "none"]
TsneBackend = Literal["auto", "opentsne", "sklearn"]
Init = Literal["pca", "random"]

_METHODS = ("tsne", "umap", "pca")
_PREPROCESSING = ("maxabs", "standardize", "none")
_BACKENDS = ("auto", "opentsne", "sklearn")
_SKLEARN_EXAGGERATION_ITER = 250  # fixed inside scikit-learn's TSNE


def _positive_int(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SettingsError(f"{name} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class ReducerSettings:
    """How features become a 2-D map.

    Attributes:
        method: ``"tsne"`` (default), ``"umap"`` (needs the ``umap`` extra) or ``"pca"``.
        preprocessing: Per-feature scaling over all points before anything else: ``"maxabs"`` (divide each
            feature by its largest absolute value — the paper's ``MaxAbsScaler``), ``"standardize"`` (zero mean,
            unit variance) or ``"none"``. Constant features are left unscaled.
        pca_dims: Project onto this many principal components before t-SNE / UMAP (for speed; ``None`` to skip).
            Skipped when the features have no more dimensions or points than this. Ignored by ``"pca"``.
        perplexity: t-SNE perplexity; the map needs at least ``3 * perplexity + 1`` points.
        learning_rate: t-SNE learning rate, or ``"auto"`` (each backend's own rule).
        n_iter: t-SNE iterations in all, early exaggeration included (scikit-learn's convention).
        exaggeration_iter: Of those, the early-exaggeration iterations (scikit-learn fixes 250).
        init: t-SNE initialisation, ``"pca"`` or ``"random"`` (seeded).
        tsne_backend: ``"auto"`` (openTSNE when installed, else scikit-learn), ``"opentsne"`` or ``"sklearn"``.
        n_neighbors: UMAP neighbourhood size.
        min_dist: UMAP minimum distance.
        seed: Random seed for every random step.
        trust_neighbors: k of the trustworthiness score of the map.
        n_jobs: Threads for t-SNE; 1 keeps runs reproducible across machines.
    """

    method: Method = "tsne"
    preprocessing: Preprocessing = "maxabs"
    pca_dims: int | None = 50
    perplexity: float = 30.0
    learning_rate: float | Literal["auto"] = "auto"
    n_iter: int = 1000
    exaggeration_iter: int = 250
    init: Init = "pca"
    tsne_backend: TsneBackend = "auto"
    n_neighbors: int = 15
    min_dist: float = 0.1
    seed: int = 0
    trust_neighbors: int = 10
    n_jobs: int = 1

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise SettingsError(f"method must be one of {_METHODS}, got {self.method!r}")
        if self.preprocessing not in _PREPROCESSING:
            raise SettingsError(f"preprocessing must be one of {_PREPROCESSING}, got {self.preprocessing!r}")
        if self.tsne_backend not in _BACKENDS:
            raise SettingsError(f"tsne_backend must be one of {_BACKENDS}, got {self.tsne_backend!r}")
        if self.init not in ("pca", "random"):
            raise SettingsError(f"init must be 'pca' or 'random', got {self.init!r}")
        if self.pca_dims is not None:
            _positive_int("pca_dims", self.pca_dims, 2)
        if (
            isinstance(self.perplexity, bool)
            or not isinstance(self.perplexity, (int, float))
            or not (self.perplexity > 0 and math.isfinite(self.perplexity))
        ):
            raise SettingsError(f"perplexity must be a positive number, got {self.perplexity!r}")
        lr = self.learning_rate
        if lr != "auto" and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0):
            raise SettingsError(f"learning_rate must be a positive number or 'auto', got {lr!r}")
        _positive_int("n_iter", self.n_iter)
        _positive_int("exaggeration_iter", self.exaggeration_iter, 0)
        if self.exaggeration_iter >= self.n_iter:
            raise SettingsError(
                f"exaggeration_iter ({self.exaggeration_iter}) must be smaller than n_iter ({self.n_iter}), "
                "which counts all iterations"
            )
        _positive_int("n_neighbors", self.n_neighbors, 2)
        if not isinstance(self.min_dist, (int, float)) or not self.min_dist >= 0:
            raise SettingsError(f"min_dist must be >= 0, got {self.min_dist!r}")
        _positive_int("seed", self.seed, 0)
        _positive_int("trust_neighbors", self.trust_neighbors)
        _positive_int("n_jobs", self.n_jobs)

    @classmethod
    def paper(cls, figure: Literal[6, 7] = 6, **overrides: Any) -> ReducerSettings:
        """The settings of the paper's code: scikit-learn t-SNE on MaxAbs-scaled features, no PCA first,
        perplexity 40 (Fig. 6) or 35 (Fig. 7), learning rate 200, 2000 iterations, seed 0."""
        if figure not in (6, 7):
            raise SettingsError(f"figure must be 6 (single image) or 7 (across images), got {figure!r}")
        base: dict[str, Any] = {
            "method": "tsne",
            "preprocessing": "maxabs",
            "pca_dims": None,
            "perplexity": 40.0 if figure == 6 else 35.0,
            "learning_rate": 200.0,
            "n_iter": 2000,
            "exaggeration_iter": _SKLEARN_EXAGGERATION_ITER,
            "init": "pca",
            "tsne_backend": "sklearn",
            "seed": 0,
        }
        base.update(overrides)
        return cls(**base)

    def min_points(self) -> int:
        """Fewest points the method accepts with these settings."""
        if self.method == "tsne":
            return math.floor(3 * self.perplexity) + 1
        if self.method == "umap":
            return self.n_neighbors + 1
        return 3

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReducerSettings:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class Projection:
    """A 2-D map of some features and how far to trust it.

    Attributes:
        coords: ``[n_points, 2]`` the map.
        backend: What made it: ``"openTSNE"``, ``"sklearn"``, ``"umap"`` or ``"pca"``.
        settings: The settings used.
        trustworthiness: Neighbourhood preservation of the map with respect to the preprocessed features (before
            any PCA), in [0, 1]; see :func:`evolens.geometry.measures.trustworthiness`.
        trust_neighbors: The k it was computed with.
        pca_retained: Share of the preprocessed features' variance kept by the PCA before t-SNE / UMAP
            (``None`` when none ran).
        explained_variance: For ``method="pca"``, the share of variance on each of the two axes.
        kl_divergence: For t-SNE, the final KL divergence of the embedding.
    """

    coords: np.ndarray
    backend: str
    settings: ReducerSettings
    trustworthiness: float
    trust_neighbors: int
    pca_retained: float | None = None
    explained_variance: tuple[float, float] | None = None
    kl_divergence: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "coords": np.asarray(self.coords, dtype=np.float64).tolist(),
            "backend": self.backend,
            "settings": self.settings.to_dict(),
            "trustworthiness": self.trustworthiness,
            "trust_neighbors": self.trust_neighbors,
            "pca_retained": self.pca_retained,
            "explained_variance": None if self.explained_variance is None else list(self.explained_variance),
            "kl_divergence": self.kl_divergence,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Projection:
        ev = data.get("explained_variance")
        return cls(
            coords=np.asarray(data["coords"], dtype=np.float64).reshape(-1, 2),
            backend=str(data["backend"]),
            settings=ReducerSettings.from_dict(data["settings"]),
            trustworthiness=float(data["trustworthiness"]),
            trust_neighbors=int(data["trust_neighbors"]),
            pca_retained=None if data.get("pca_retained") is None else float(data["pca_retained"]),
            explained_variance=None if ev is None else (float(ev[0]), float(ev[1])),
            kl_divergence=None if data.get("kl_divergence") is None else float(data["kl_divergence"]),
        )


def preprocess(features: Any, how: Preprocessing = "maxabs") -> np.ndarray:
    """Scale each feature (column) of ``[n_points, d]`` features over all points; returns float64.

    ``"maxabs"`` divides by the column's largest absolute value (scikit-learn's ``MaxAbsScaler``, as in the
    paper's code); ``"standardize"`` subtracts the mean and divides by the standard deviation; ``"none"`` copies.
    Columns that are all zero (maxabs) or constant (standardize) are not divided.
    """
    x = np.array(features, dtype=np.float64)
    if how == "none":
        return x
    if how == "maxabs":
        scale = np.abs(x).max(axis=0)
        return x / np.where(scale > 0, scale, 1.0)
    if how == "standardize":
        std = x.std(axis=0)
        return (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    raise SettingsError(f"preprocessing must be one of {_PREPROCESSING}, got {how!r}")


def check_points(n_points: int, settings: ReducerSettings, what: str = "points") -> None:
    """Raise :class:`SettingsError` when ``n_points`` are too few for the method and its settings."""
    need = settings.min_points()
    if n_points >= need:
        return
    if settings.method == "tsne":
        most = (n_points - 1) / 3
        hint = (
            f"lower the perplexity to at most {most:.4g}" if most > 0 else "map more points"
        ) + " or map more tokens/images"
        raise SettingsError(
            f"t-SNE with perplexity {settings.perplexity:g} needs at least {need} points (3 × perplexity + 1), "
            f"got {n_points} {what}; {hint}"
        )
    if settings.method == "umap":
        raise SettingsError(
            f"UMAP with n_neighbors={settings.n_neighbors} needs at least {need} points, got {n_points} {what}; "
            "lower n_neighbors"
        )
    raise SettingsError(f"a 2-D map needs at least {need} points, got {n_points} {what}")


def reduce_2d(features: Any, settings: ReducerSettings | None = None, *, what: str = "points") -> Projection:
    """Map ``[n_points, d]`` features to 2-D.

    Steps: :func:`preprocess`; for t-SNE and UMAP, PCA to ``settings.pca_dims`` dimensions when there are more;
    the reducer; the map's trustworthiness against the preprocessed features.

    Raises:
        SettingsError: Bad settings, too few points for them (e.g. perplexity), non-finite features, or UMAP
            requested without the ``umap`` extra installed.
    """
    settings = settings or ReducerSettings()
    x = np.asarray(features)
    if x.ndim != 2:
        raise SettingsError(f"expected features of shape [n_points, d], got shape {tuple(x.shape)}")
    check_points(int(x.shape[0]), settings, what)
    if not np.isfinite(x).all():
        raise SettingsError("features contain NaN or infinite values")
    scaled = preprocess(x, settings.preprocessing)
    n, d = scaled.shape

    explained: tuple[float, float] | None = None
    retained: float | None = None
    kl: float | None = None
    if settings.method == "pca":
        coords, ratio = _pca(scaled, 2, settings.seed)
        explained = (float(ratio[0]), float(ratio[1]) if len(ratio) > 1 else 0.0)
        backend = "pca"
    else:
        reduced = scaled
        if settings.pca_dims is not None and min(n, d) > settings.pca_dims:
            reduced, ratio = _pca(scaled, settings.pca_dims, settings.seed)
            retained = float(ratio.sum())
        if settings.method == "tsne":
            coords, kl, backend = _tsne(reduced, settings)
        else:
            coords, backend = _umap(reduced, settings), "umap"
    score, k = trustworthiness(scaled, coords, settings.trust_neighbors)
    return Projection(
        np.asarray(coords, dtype=np.float64), backend, settings, score, k, retained, explained, kl
    )


def _pca(x: np.ndarray, n_components: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.decomposition import PCA

    n_components = min(n_components, *x.shape)
    pca = PCA(n_components=n_components, random_state=seed)
    coords = pca.fit_transform(x)
    ratio = np.nan_to_num(np.asarray(pca.explained_variance_ratio_, dtype=np.float64))
    if coords.shape[1] < 2:  # one feature or one point: pad so the map stays 2-D
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    return coords, ratio


def _tsne(x: np.ndarray, settings: ReducerSettings) -> tuple[np.ndarray, float | None, str]:
    backend = settings.tsne_backend
    if backend in ("auto", "opentsne"):
        try:
            import openTSNE
        except ImportError:
            if backend == "opentsne":
                raise SettingsError("tsne_backend='opentsne' but openTSNE is not installed") from None
            log.info("openTSNE is not installed; using scikit-learn's t-SNE")
        else:
            tsne = openTSNE.TSNE(
                n_components=2,
                perplexity=float(settings.perplexity),
                learning_rate=settings.learning_rate,
                n_iter=settings.n_iter - settings.exaggeration_iter,
                early_exaggeration_iter=settings.exaggeration_iter,
                initialization=settings.init,
                random_state=settings.seed,
                n_jobs=settings.n_jobs,
                verbose=False,
            )
            embedding = tsne.fit(np.ascontiguousarray(x))
            return np.asarray(embedding), float(embedding.kl_divergence), "openTSNE"
    return _sklearn_tsne(x, settings)


def _sklearn_tsne(x: np.ndarray, settings: ReducerSettings) -> tuple[np.ndarray, float | None, str]:
    import inspect

    from sklearn.manifold import TSNE

    if settings.exaggeration_iter != _SKLEARN_EXAGGERATION_ITER:
        raise SettingsError(
            f"scikit-learn's t-SNE always exaggerates for {_SKLEARN_EXAGGERATION_ITER} iterations; "
            f"got exaggeration_iter={settings.exaggeration_iter} (use openTSNE, or 250 and n_iter > 250)"
        )
    # scikit-learn renamed n_iter to max_iter in 1.5
    iter_name = "max_iter" if "max_iter" in inspect.signature(TSNE.__init__).parameters else "n_iter"
    tsne = TSNE(
        n_components=2,
        perplexity=float(settings.perplexity),
        learning_rate=settings.learning_rate,
        init=settings.init,
        random_state=settings.seed,
        n_jobs=settings.n_jobs,
        **{iter_name: settings.n_iter},
    )
    coords = tsne.fit_transform(x)
    return np.asarray(coords), float(tsne.kl_divergence_), "sklearn"


def _umap(x: np.ndarray, settings: ReducerSettings) -> np.ndarray:
    try:
        import umap
    except ImportError:
        raise SettingsError(
            "method='umap' needs the optional dependency umap-learn: pip install 'evolens[umap]'"
        ) from None
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=settings.n_neighbors,
        min_dist=float(settings.min_dist),
        random_state=settings.seed,
    )
    with warnings.catch_warnings():  # "n_jobs overridden to 1 by setting random_state" is what we want
        warnings.simplefilter("ignore", UserWarning)
        return np.asarray(reducer.fit_transform(x))
