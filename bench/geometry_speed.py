"""Geometry: time and trustworthiness of each 2-D reducer on 3,000 x 4,096 features (issue 8, item 5).

Features with known structure (clusters in a low-dimensional subspace of a 4,096-d space, plus isotropic noise,
like hidden states of a few kinds of tokens) go through :func:`evolens.geometry.reduce.reduce_2d` with each
reducer: PCA, t-SNE with openTSNE and with scikit-learn (both after PCA to 50 dimensions, evolens's default), the
paper's t-SNE settings (scikit-learn, no PCA, 2,000 iterations; ``--paper``) and UMAP when installed. Each time includes the
map's trustworthiness (k = 10, computed on the full features), which is also timed alone. Variants run
interleaved when ``--repeats`` > 1.

    .venv/bin/python bench/geometry_speed.py
    .venv/bin/python bench/geometry_speed.py --quick     # 1,000 x 1,024
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

from evolens.geometry.measures import trustworthiness
from evolens.geometry.reduce import ReducerSettings, reduce_2d


def make_features(
    n_points: int, d: int, n_clusters: int = 12, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((d, 32)))[0]  # a 32-d subspace
    centers = rng.standard_normal((n_clusters, 32)) * 6.0
    labels = rng.integers(0, n_clusters, n_points)
    inner = centers[labels] + rng.standard_normal((n_points, 32))
    features = inner @ basis.T + 0.5 * rng.standard_normal((n_points, d))
    return features.astype(np.float32), labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=3000)
    parser.add_argument("--dims", type=int, default=4096)
    parser.add_argument(
        "--repeats", type=int, default=1, help="interleaved rounds (default 1: maps are slow)"
    )
    parser.add_argument(
        "--paper",
        action="store_true",
        help="also the paper's t-SNE settings (no PCA, 2,000 iterations: slowest)",
    )
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    common.set_threads(args.threads)
    if args.quick:
        args.points, args.dims = 1000, 1024
    features, _ = make_features(args.points, args.dims)

    reducers: dict[str, ReducerSettings] = {
        "pca": ReducerSettings(method="pca"),
        "t-SNE openTSNE (PCA 50)": ReducerSettings(tsne_backend="opentsne"),
        "t-SNE sklearn (PCA 50)": ReducerSettings(tsne_backend="sklearn"),
    }
    skipped: dict[str, str] = {}
    if importlib.util.find_spec("openTSNE") is None:
        skipped["t-SNE openTSNE (PCA 50)"] = "openTSNE not installed"
        del reducers["t-SNE openTSNE (PCA 50)"]
    if args.paper:
        reducers["t-SNE paper settings (sklearn, no PCA)"] = ReducerSettings.paper(6)
    if importlib.util.find_spec("umap") is not None:
        reducers["umap (PCA 50)"] = ReducerSettings(method="umap")
    else:
        skipped["umap (PCA 50)"] = "umap-learn not installed (pip install 'evolens[umap]')"

    variants: dict[str, Any] = {name: (lambda s=s: reduce_2d(features, s)) for name, s in reducers.items()}
    variants["trustworthiness alone"] = lambda: trustworthiness(features, features[:, :2], 10)
    times, results = common.interleave(variants, args.repeats, warmup=False, desc="reducers")
    med = {k: common.median(v) for k, v in times.items()}
    print(f"reducers on {args.points} x {args.dims} features, {common.cpu_model()}")
    rows = []
    for name in reducers:
        proj = results[name]
        rows.append([name, proj.backend, med[name], med[name] / med["pca"], f"{proj.trustworthiness:.4f}"])
    rows.append(["trustworthiness alone (k=10)", "sklearn", med["trustworthiness alone"], "-", "-"])
    for name, why in skipped.items():
        rows.append([name, "-", "-", "-", why])
    print(common.table(["reducer", "backend", "median s", "x pca", "trustworthiness"], rows))
    out = {
        name: {
            "backend": results[name].backend,
            "settings": results[name].settings.to_dict(),
            "times_s": times[name],
            "median_s": med[name],
            "over_pca": med[name] / med["pca"],
            "trustworthiness": results[name].trustworthiness,
            "pca_retained": results[name].pca_retained,
        }
        for name in reducers
    }
    path = common.write_result(
        "geometry_speed",
        {
            "settings": vars(args),
            "reducers": out,
            "trustworthiness_alone_s": med["trustworthiness alone"],
            "skipped": skipped,
        },
        args.out,
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
