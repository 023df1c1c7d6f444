"""2-D maps of latent codes: exact PCA, and t-SNE and UMAP with neighbour-based ways back and forth.

All follow scikit-learn's estimator shape: ``__init__`` stores parameters, ``fit`` learns and
returns ``self``, learned attributes end in ``_``. numpy in, numpy out; no torch here.
"""

from __future__ import annotations

import numpy as np

TSNE_PCA_DIMS = 50  # t-SNE runs on the top 50 principal components when codes are wider (van der Maaten 2014)
FAR_FACTOR = 3.0  # a 2-D point is "far" beyond 3x the map's median nearest-neighbour spacing
UMAP_NEIGHBOURS = 15  # umap-learn's default n_neighbors: the size of the local neighbourhood it keeps
UMAP_MIN_DIST = 0.1  # umap-learn's default: how tightly points may pack on the map


def _as_codes(codes: np.ndarray) -> np.ndarray:
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2 or len(codes) < 2 or codes.shape[1] < 1:
        raise ValueError(f"Codes must be an (N, D) array with at least 2 rows, not shape {codes.shape}.")
    if not np.isfinite(codes).all():
        raise ValueError("The codes contain NaN or infinite values.")
    return codes


def _as_points(xy: np.ndarray, dim: int, what: str) -> np.ndarray:
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim == 1:
        xy = xy[None]
    if xy.ndim != 2 or xy.shape[1] != dim:
        raise ValueError(f"{what} must have {dim} columns, not shape {xy.shape}.")
    if not np.isfinite(xy).all():
        raise ValueError(f"{what} must be finite numbers.")
    return xy


def _nearest(points: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest rows of ``points`` to each query by Euclidean distance: (M, k) indices and distances."""
    from scipy.spatial import cKDTree  # scipy comes with scikit-learn

    k = min(k, len(points))
    dist, idx = cKDTree(points).query(queries, k=k)
    return np.asarray(idx).reshape(len(queries), k), np.asarray(dist).reshape(len(queries), k)


def _idw(values: np.ndarray, idx: np.ndarray, dist: np.ndarray, eps: float) -> np.ndarray:
    """Inverse-distance-weighted average of ``values[idx]`` per query; an exact hit returns that value."""
    w = 1.0 / np.maximum(dist, eps)  # (M, k)
    w /= w.sum(1, keepdims=True)
    return np.einsum("mk,mkd->md", w, values[idx])


class PCAProjection:
    """Principal components by scikit-learn's ``PCA`` (its solver choice, seeded); ``inverse_transform``
    maps map coordinates back to codes exactly. Each axis's sign is scikit-learn's ``svd_flip``
    convention (largest loading positive), so refits agree and a saved map keeps its orientation."""

    def __init__(self, n_components: int = 2):
        self.n_components = n_components

    def fit(self, codes: np.ndarray) -> PCAProjection:
        from sklearn.decomposition import PCA

        codes = _as_codes(codes)
        k = self.n_components
        pca = PCA(n_components=min(k, *codes.shape), random_state=0).fit(codes)
        fitted = len(pca.components_)  # fewer than k when the codes have fewer dimensions (a 1-D latent)
        self.mean_ = pca.mean_  # (D,)
        self.components_ = np.zeros((k, codes.shape[1]))  # (k, D), orthonormal rows; padded axes are zero
        self.components_[:fitted] = pca.components_
        self.explained_variance_ = np.zeros(k)
        self.explained_variance_[:fitted] = pca.explained_variance_
        self.explained_variance_ratio_ = np.zeros(k)
        self.explained_variance_ratio_[:fitted] = pca.explained_variance_ratio_
        return self

    def transform(self, codes: np.ndarray) -> np.ndarray:
        codes = _as_points(codes, len(self.mean_), "Codes")
        return (codes - self.mean_) @ self.components_.T  # (N, k)

    def inverse_transform(self, xy: np.ndarray) -> np.ndarray:
        xy = _as_points(xy, self.n_components, "Map coordinates")
        return self.mean_ + xy @ self.components_  # (N, D)

    @classmethod
    def from_arrays(cls, mean: np.ndarray, components: np.ndarray) -> PCAProjection:
        """Rebuild a fitted projection from saved ``mean_`` (D,) and ``components_`` (k, D)."""
        proj = cls(n_components=len(components))
        proj.mean_ = np.asarray(mean, dtype=np.float64)
        proj.components_ = np.asarray(components, dtype=np.float64)
        proj.explained_variance_ = proj.explained_variance_ratio_ = np.full(len(components), np.nan)
        return proj


class TSNEProjection:
    """t-SNE (van der Maaten & Hinton 2008) of latent codes, with neighbour-based inverse and placement.

    t-SNE has no mapping function, so ``inverse`` (map point → code) and ``place`` (code → map
    point) interpolate from the k nearest fitted points, weighted by inverse distance.
    """

    def __init__(
        self,
        perplexity: float = 30.0,
        max_iter: int = 600,
        pca_dims: int = TSNE_PCA_DIMS,
        random_state: int = 0,
        k: int = 10,
        angle: float = 0.8,
    ):
        self.perplexity = perplexity
        self.max_iter = max_iter
        # Barnes-Hut's accuracy knob (sklearn's default 0.5). On 10,000 VAE codes, 0.8 with 600 iterations
        # kept 0.419 of 10-NN against 0.409 for 0.5/500, in 9.9 s against 12.5 s (see BENCHMARKS.md).
        self.angle = angle
        self.pca_dims = pca_dims
        self.random_state = random_state
        self.k = k

    def fit(self, codes: np.ndarray) -> TSNEProjection:
        from sklearn.manifold import TSNE  # imported late: only t-SNE maps need it

        codes = _as_codes(codes)
        features = codes
        if codes.shape[1] > self.pca_dims:
            # PCA first: faster neighbour search and less noise, as van der Maaten recommends.
            features = PCAProjection(self.pca_dims).fit(codes).transform(codes)
        perplexity = min(float(self.perplexity), (len(codes) - 1) / 3.0)  # sklearn needs perplexity < N
        tsne = TSNE(
            n_components=2,
            init="pca",
            learning_rate="auto",
            perplexity=perplexity,
            max_iter=self.max_iter,
            angle=self.angle,
            random_state=self.random_state,
        )
        embedding = tsne.fit_transform(features.astype(np.float32))
        return self._set(codes, embedding)

    def fit_transform(self, codes: np.ndarray) -> np.ndarray:
        return self.fit(codes).embedding_

    @classmethod
    def from_arrays(cls, codes: np.ndarray, embedding: np.ndarray, k: int = 10) -> TSNEProjection:
        """Rebuild a fitted projection from saved codes (N, D) and their 2-D embedding (N, 2)."""
        return cls(k=k)._set(_as_codes(codes), _as_points(embedding, 2, "The embedding"))

    def _set(self, codes: np.ndarray, embedding: np.ndarray) -> TSNEProjection:
        self.codes_ = codes  # (N, D)
        self.embedding_ = np.asarray(embedding, dtype=np.float64)  # (N, 2)
        # Median distance from each map point to its nearest other point: the map's typical spacing.
        self.spacing_ = median_nn_spacing(self.embedding_)
        return self

    def inverse(self, xy: np.ndarray, k: int | None = None) -> np.ndarray:
        """Codes (M, D) for map points (M, 2): inverse-distance-weighted mean of the k nearest points' codes."""
        xy = _as_points(xy, 2, "Map coordinates")
        idx, dist = _nearest(self.embedding_, xy, k or self.k)
        return _idw(self.codes_, idx, dist, eps=1e-9 * max(self.spacing_, 1e-12))

    def is_far(self, xy: np.ndarray) -> np.ndarray:
        """(M,) True where the nearest map point is farther than FAR_FACTOR x the median spacing."""
        return far_from_map(self.embedding_, xy, self.spacing_)

    def place(self, code: np.ndarray, k: int | None = None) -> np.ndarray:
        """Map positions (M, 2) for new codes (M, D) or (D,): weighted mean of the k nearest codes' positions."""
        code = _as_points(code, self.codes_.shape[1], "Codes")
        idx, dist = _nearest(self.codes_, code, k or self.k)
        return _idw(self.embedding_, idx, dist, eps=1e-9)


def _membership(dist: np.ndarray) -> np.ndarray:
    """UMAP's fuzzy membership of each query's k neighbours, (M, k): exp(-d / sigma), with sigma per query
    such that the weights of all but the nearest sum to log2(k) (umap-learn's ``smooth_knn_dist`` as its
    ``transform`` calls it, local connectivity 0; McInnes et al. 2018, sec. 3.1)."""
    m, k = dist.shape
    target = np.log2(max(k, 2))
    lo, hi = np.zeros(m), np.full(m, np.inf)
    sigma = np.ones(m)
    for _ in range(64):  # bisection on sigma, all queries at once
        psum = np.exp(-dist[:, 1:] / sigma[:, None]).sum(1)
        too_big = psum > target
        hi = np.where(too_big, sigma, hi)
        lo = np.where(too_big, lo, sigma)
        sigma = np.where(np.isinf(hi), sigma * 2, (lo + hi) / 2)
    sigma = np.maximum(sigma, 1e-3 * max(float(dist.mean()), 1e-12))  # umap-learn's MIN_K_DIST_SCALE floor
    return np.exp(-dist / sigma[:, None])


class UMAPProjection:
    """UMAP (McInnes, Healy & Melville 2018) of latent codes, fitted by umap-learn.

    A fitted umap-learn model cannot be saved without pickling, so a map keeps only its codes and
    embedding (and the curve parameters a, b), and both directions are umap-learn's starting
    points without its few epochs of refinement: ``transform`` (code → map point) is the
    membership-weighted mean of the k nearest fitted codes' positions, ``inverse_transform`` (map
    point → code) the mean of the k nearest map points' codes weighted by UMAP's low-dimensional
    kernel 1 / (1 + a d^2b). Both are approximate.
    """

    def __init__(
        self,
        n_neighbors: int = UMAP_NEIGHBOURS,
        min_dist: float = UMAP_MIN_DIST,
        random_state: int = 0,
        n_epochs: int | None = None,
    ):
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.random_state = random_state  # seeded: the same codes give the same map (umap-learn then runs one thread)
        self.n_epochs = n_epochs  # None: umap-learn's choice (500 epochs up to 10,000 points, 200 above)

    def fit(self, codes: np.ndarray) -> UMAPProjection:
        import warnings

        import umap  # imported late: it compiles with numba on first use (tens of seconds), only UMAP maps need it

        codes = _as_codes(codes)
        k = max(2, min(self.n_neighbors, len(codes) - 1))
        model = umap.UMAP(
            n_neighbors=k,
            min_dist=self.min_dist,
            n_components=2,
            random_state=self.random_state,
            n_jobs=1,
            n_epochs=self.n_epochs,
            init="spectral" if len(codes) > k + 1 else "random",
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "spectral initialisation failed" on tiny sets: it falls back itself
            embedding = model.fit_transform(codes.astype(np.float32))
        return self._set(codes, embedding, (float(model._a), float(model._b)))

    def fit_transform(self, codes: np.ndarray) -> np.ndarray:
        return self.fit(codes).embedding_

    @classmethod
    def from_arrays(
        cls, codes: np.ndarray, embedding: np.ndarray, ab: np.ndarray, n_neighbors: int = UMAP_NEIGHBOURS
    ) -> UMAPProjection:
        """Rebuild a fitted projection from saved codes (N, D), their embedding (N, 2) and UMAP's (a, b)."""
        ab = np.asarray(ab, dtype=np.float64).reshape(-1)
        if ab.shape != (2,) or not np.isfinite(ab).all() or (ab <= 0).any():
            raise ValueError(f"UMAP's curve parameters must be two positive numbers, not {ab!r}.")
        return cls(n_neighbors=n_neighbors)._set(_as_codes(codes), _as_points(embedding, 2, "The embedding"), tuple(ab))

    def _set(self, codes: np.ndarray, embedding: np.ndarray, ab: tuple[float, float]) -> UMAPProjection:
        self.codes_ = codes  # (N, D)
        self.embedding_ = np.asarray(embedding, dtype=np.float64)  # (N, 2)
        self.ab_ = np.asarray(ab, dtype=np.float64)  # (2,) the low-dimensional kernel 1 / (1 + a d^2b)
        self.spacing_ = median_nn_spacing(self.embedding_)
        return self

    def transform(self, codes: np.ndarray) -> np.ndarray:
        """Approximate map positions (M, 2) for codes (M, D) or (D,)."""
        codes = _as_points(codes, self.codes_.shape[1], "Codes")
        idx, dist = _nearest(self.codes_, codes, self.n_neighbors)
        w = _membership(dist)
        return np.einsum("mk,mkd->md", w / w.sum(1, keepdims=True), self.embedding_[idx])

    def inverse_transform(self, xy: np.ndarray) -> np.ndarray:
        """Approximate codes (M, D) for map points (M, 2)."""
        xy = _as_points(xy, 2, "Map coordinates")
        idx, dist = _nearest(self.embedding_, xy, self.n_neighbors)
        a, b = self.ab_
        w = 1.0 / (1.0 + a * dist ** (2 * b))  # (M, k)
        return np.einsum("mk,mkd->md", w / w.sum(1, keepdims=True), self.codes_[idx])

    def is_far(self, xy: np.ndarray) -> np.ndarray:
        """(M,) True where the nearest map point is farther than FAR_FACTOR x the median spacing."""
        return far_from_map(self.embedding_, xy, self.spacing_)


def median_nn_spacing(points: np.ndarray) -> float:
    """The median distance from each point (N, 2) to its nearest other point: a map's typical spacing.

    0.0 for fewer than two points. ``far_from_map`` calls a query "far" beyond FAR_FACTOR times it.
    """
    from scipy.spatial import cKDTree  # scipy comes with scikit-learn

    if len(points) < 2:
        return 0.0
    dist, _ = cKDTree(points).query(points, k=2)
    return float(np.median(dist[:, 1]))


def far_from_map(points: np.ndarray, xy: np.ndarray, spacing: float | None = None) -> np.ndarray:
    """(M,) True where a query is farther from every map point than FAR_FACTOR x the median spacing."""
    xy = _as_points(xy, 2, "Map coordinates")
    points = np.asarray(points, dtype=np.float64)
    spacing = median_nn_spacing(points) if spacing is None else spacing
    _, dist = _nearest(points, xy, 1)
    return dist[:, 0] > FAR_FACTOR * spacing
