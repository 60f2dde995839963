"""Reducers: shapes, determinism, preprocessing, the perplexity check, backends and settings."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from evolens.errors import SettingsError
from evolens.geometry.reduce import Projection, ReducerSettings, preprocess, reduce_2d

FAST = {"perplexity": 5.0, "n_iter": 150, "exaggeration_iter": 50}


def _blobs(n_per: int = 20, d: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, d)) * 10
    labels = np.repeat(np.arange(3), n_per)
    return centres[labels] + rng.normal(size=(3 * n_per, d)), labels


@pytest.mark.parametrize("method", ["tsne", "pca"])
def test_shapes_and_trust(method):
    x, _ = _blobs()
    proj = reduce_2d(x, ReducerSettings(method=method, **FAST))
    assert proj.coords.shape == (60, 2)
    assert np.isfinite(proj.coords).all()
    assert 0.8 < proj.trustworthiness <= 1.0  # well-separated blobs map faithfully
    assert proj.trust_neighbors == 10


def test_tsne_separates_blobs():
    x, labels = _blobs()
    coords = reduce_2d(x, ReducerSettings(**FAST)).coords
    centroids = np.stack([coords[labels == k].mean(0) for k in range(3)])
    within = max(np.linalg.norm(coords[labels == k] - centroids[k], axis=1).max() for k in range(3))
    between = min(np.linalg.norm(centroids[i] - centroids[j]) for i in range(3) for j in range(i + 1, 3))
    assert between > within


@pytest.mark.parametrize("backend", ["opentsne", "sklearn"])
def test_deterministic_under_seed(backend):
    x, _ = _blobs(n_per=12)
    n_iter = 260 if backend == "sklearn" else FAST["n_iter"]
    exag = 250 if backend == "sklearn" else FAST["exaggeration_iter"]
    settings = ReducerSettings(perplexity=5.0, n_iter=n_iter, exaggeration_iter=exag, tsne_backend=backend)
    a = reduce_2d(x, settings)
    b = reduce_2d(x, settings)
    np.testing.assert_array_equal(a.coords, b.coords)
    assert a.backend == ("openTSNE" if backend == "opentsne" else "sklearn")
    assert a.kl_divergence is not None


def test_seed_matters():
    x, _ = _blobs(n_per=12)
    a = reduce_2d(x, ReducerSettings(init="random", seed=0, **FAST))
    b = reduce_2d(x, ReducerSettings(init="random", seed=1, **FAST))
    assert not np.allclose(a.coords, b.coords)


def test_sklearn_fallback_when_opentsne_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "openTSNE", None)  # import openTSNE -> ImportError
    x, _ = _blobs(n_per=10)
    proj = reduce_2d(x, ReducerSettings(perplexity=5.0, n_iter=260))
    assert proj.backend == "sklearn"
    with pytest.raises(SettingsError, match="openTSNE is not installed"):
        reduce_2d(x, ReducerSettings(perplexity=5.0, tsne_backend="opentsne"))


def test_sklearn_constraints():
    x, _ = _blobs(n_per=10)
    with pytest.raises(SettingsError, match="250"):
        reduce_2d(
            x,
            ReducerSettings(
                perplexity=5.0, tsne_backend="sklearn", **{"n_iter": 300, "exaggeration_iter": 100}
            ),
        )
    with pytest.raises(SettingsError, match="250"):
        reduce_2d(x, ReducerSettings(perplexity=5.0, tsne_backend="sklearn", n_iter=200, exaggeration_iter=0))


def test_pca_first_and_explained_variance():
    x, _ = _blobs(n_per=30, d=80)
    proj = reduce_2d(x, ReducerSettings(pca_dims=10, **FAST))
    assert proj.pca_retained is not None and 0.5 < proj.pca_retained <= 1.0
    assert proj.explained_variance is None
    skipped = reduce_2d(x, ReducerSettings(pca_dims=None, **FAST))
    assert skipped.pca_retained is None
    pca = reduce_2d(x, ReducerSettings(method="pca"))
    assert pca.explained_variance is not None
    assert pca.explained_variance[0] >= pca.explained_variance[1] > 0
    assert pca.pca_retained is None


def test_pca_map_matches_principal_components():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3)) * np.array([10.0, 3.0, 0.1])
    coords = reduce_2d(x, ReducerSettings(method="pca", preprocessing="none")).coords
    centred = x - x.mean(0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    expected = u[:, :2] * s[:2]
    signs = np.sign((coords * expected).sum(0))  # principal axes are defined up to sign
    np.testing.assert_allclose(coords * signs, expected, atol=1e-8)


def test_preprocessing_matches_scikit_learn():
    from sklearn.preprocessing import MaxAbsScaler, StandardScaler

    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 6)) * np.array([1, 10, 100, 0.1, 5, 1])
    x[:, 5] = 0.0  # a constant column
    np.testing.assert_allclose(preprocess(x, "maxabs"), MaxAbsScaler().fit_transform(x))
    np.testing.assert_allclose(preprocess(x, "standardize"), StandardScaler().fit_transform(x), atol=1e-12)
    np.testing.assert_array_equal(preprocess(x, "none"), x)
    assert np.abs(preprocess(x, "maxabs")).max() == pytest.approx(1.0)
    with pytest.raises(SettingsError, match="preprocessing"):
        preprocess(x, "zscore")  # type: ignore[arg-type]


def test_too_few_points_for_the_perplexity():
    x = np.random.default_rng(0).normal(size=(40, 8))
    with pytest.raises(SettingsError, match=r"perplexity 40 needs at least 121 points .* got 40 points.*13"):
        reduce_2d(x, ReducerSettings.paper(6))
    # the boundary: 3 * perplexity + 1 points are enough
    reduce_2d(x[:16], ReducerSettings(perplexity=5.0, n_iter=100, exaggeration_iter=25))
    with pytest.raises(SettingsError, match="perplexity 5 needs at least 16"):
        reduce_2d(x[:15], ReducerSettings(perplexity=5.0))


def test_umap_missing_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "umap", None)
    x = np.random.default_rng(0).normal(size=(30, 5))
    with pytest.raises(SettingsError, match=r"pip install 'evolens\[umap\]'"):
        reduce_2d(x, ReducerSettings(method="umap"))


def test_umap_receives_the_settings(monkeypatch):
    calls = {}

    class FakeUMAP:
        def __init__(self, **kwargs):
            calls.update(kwargs)

        def fit_transform(self, x):
            calls["shape"] = x.shape
            return x[:, :2]

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=FakeUMAP))
    x = np.random.default_rng(0).normal(size=(30, 60))
    proj = reduce_2d(x, ReducerSettings(method="umap", n_neighbors=7, min_dist=0.3, seed=4, pca_dims=20))
    assert calls == {
        "n_components": 2,
        "n_neighbors": 7,
        "min_dist": 0.3,
        "random_state": 4,
        "shape": (30, 20),
    }
    assert proj.backend == "umap" and proj.coords.shape == (30, 2)
    with pytest.raises(SettingsError, match="n_neighbors=40 needs at least 41"):
        reduce_2d(x, ReducerSettings(method="umap", n_neighbors=40))


def test_paper_settings():
    six, seven = ReducerSettings.paper(6), ReducerSettings.paper(7)
    assert (six.perplexity, seven.perplexity) == (40.0, 35.0)
    for s in (six, seven):
        assert (s.learning_rate, s.n_iter, s.seed, s.preprocessing, s.pca_dims, s.tsne_backend) == (
            200.0,
            2000,
            0,
            "maxabs",
            None,
            "sklearn",
        )
    assert ReducerSettings.paper(7, seed=3).seed == 3
    with pytest.raises(SettingsError):
        ReducerSettings.paper(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [
        {"method": "isomap"},
        {"preprocessing": "l2"},
        {"perplexity": 0},
        {"perplexity": float("nan")},
        {"learning_rate": -1},
        {"n_iter": 100, "exaggeration_iter": 100},
        {"pca_dims": 1},
        {"seed": -1},
        {"trust_neighbors": 0},
        {"tsne_backend": "cuml"},
        {"init": "spectral"},
        {"n_iter": True},
    ],
)
def test_bad_settings(bad):
    with pytest.raises(SettingsError):
        ReducerSettings(**bad)


def test_bad_features():
    with pytest.raises(SettingsError, match="shape"):
        reduce_2d(np.zeros((3, 4, 5)), ReducerSettings(method="pca"))
    x = np.random.default_rng(0).normal(size=(10, 3))
    x[2, 1] = np.inf
    with pytest.raises(SettingsError, match="NaN or infinite"):
        reduce_2d(x, ReducerSettings(method="pca"))


def test_round_trips():
    settings = ReducerSettings.paper(7)
    assert ReducerSettings.from_dict(settings.to_dict()) == settings
    x, _ = _blobs(n_per=10)
    proj = reduce_2d(x, ReducerSettings(method="pca"))
    back = Projection.from_dict(proj.to_dict())
    np.testing.assert_array_equal(back.coords, proj.coords)
    assert back.settings == proj.settings and back.explained_variance == proj.explained_variance
