"""Latent map timing, uncached: PCA, our t-SNE route against scikit-learn's default TSNE, and UMAP, with quality."""

from __future__ import annotations

import time

import numpy as np
import torch
from sklearn.manifold import TSNE
from sklearn.neighbors import NearestNeighbors

from vaedemo.data import bundled_digits, to_unit_float
from vaedemo.models import LatentModel
from vaedemo.projections import PCAProjection, TSNEProjection, UMAPProjection


def knn_preservation(codes: np.ndarray, coords: np.ndarray, k: int = 10) -> float:
    """Mean share of each point's k nearest latent neighbours that stay among its k nearest on the map."""
    hi = NearestNeighbors(n_neighbors=k + 1).fit(codes).kneighbors(codes, return_distance=False)[:, 1:]
    lo = NearestNeighbors(n_neighbors=k + 1).fit(coords).kneighbors(coords, return_distance=False)[:, 1:]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(hi, lo)]))


@torch.no_grad()
def codes_of(model: LatentModel, n: int) -> np.ndarray:
    x, y = bundled_digits()
    idx = np.random.default_rng(0).permutation(len(x))[:n]
    yy = torch.as_tensor(y[idx]) if model.conditional else None
    return model.encode(to_unit_float(x[idx]), yy)[0].numpy()


def run(model: LatentModel, n: int = 10_000, quick: bool = False) -> dict:
    codes = codes_of(model, 300 if quick else n)
    out = {"n": len(codes), "latent_dim": codes.shape[1]}
    t = time.perf_counter()
    PCAProjection(2).fit(codes).transform(codes)
    out["pca_s"] = time.perf_counter() - t

    t = time.perf_counter()
    ours = TSNEProjection(max_iter=250 if quick else 1000).fit_transform(codes)
    out["tsne_ours_s"] = time.perf_counter() - t
    from vaedemo.inference import maps as service_maps

    t = time.perf_counter()
    shipped = TSNEProjection(max_iter=250 if quick else service_maps.TSNE_MAX_ITER).fit_transform(codes)
    out["tsne_app_s"] = time.perf_counter() - t
    out["tsne_app_max_iter"] = service_maps.TSNE_MAX_ITER

    t = time.perf_counter()
    ref = TSNE(n_components=2, random_state=0, max_iter=250 if quick else 1000).fit_transform(codes)
    out["tsne_sklearn_default_s"] = time.perf_counter() - t
    out["ratio_app_vs_sklearn"] = out["tsne_app_s"] / out["tsne_sklearn_default_s"]
    out["knn10_app"] = knn_preservation(codes, shipped)
    out["knn10_ours_1000"] = knn_preservation(codes, ours)
    out["knn10_sklearn"] = knn_preservation(codes, ref)

    # UMAP as the app runs it (umap-learn, seeded, so one thread). Its first fit in a process also compiles
    # umap-learn's numba code; that is timed apart, so the figure beside t-SNE's is the fit itself.
    t = time.perf_counter()
    UMAPProjection(n_epochs=5).fit(codes[: min(len(codes), 4200)])  # past 4,096 codes it also compiles NN-descent
    out["umap_first_call_compile_s"] = time.perf_counter() - t
    t = time.perf_counter()
    umap_xy = UMAPProjection(n_epochs=50 if quick else None).fit_transform(codes)
    out["umap_s"] = time.perf_counter() - t
    out["knn10_umap"] = knn_preservation(codes, umap_xy)
    out["ratio_umap_vs_tsne_app"] = out["umap_s"] / out["tsne_app_s"]
    return out
