"""Projections: PCA inverts exactly, t-SNE separates clusters and maps back and forth through neighbours."""

import inspect

import numpy as np
import pytest
from _tiny import single_threaded
from sklearn.decomposition import PCA

from vaedemo.projections import PCAProjection, TSNEProjection, far_from_map


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with single_threaded():
        yield


def _blobs(n_per=40, d=60, k=3, seed=0):
    """k well-separated Gaussian clusters in d dimensions: codes (k*n_per, d) and labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 10, (k, d))
    codes = np.concatenate([c + rng.normal(0, 1, (n_per, d)) for c in centres])
    return codes, np.repeat(np.arange(k), n_per)


def test_estimators_follow_the_scikit_learn_shape():
    for cls in (PCAProjection, TSNEProjection):
        params = inspect.signature(cls).parameters
        est = cls()
        assert {k: getattr(est, k) for k in params} == {k: p.default for k, p in params.items()}
        assert not [a for a in vars(est) if a.endswith("_")]  # nothing learned before fit
    codes, _ = _blobs(10, 5)
    pca = PCAProjection()
    assert pca.fit(codes) is pca and pca.mean_.shape == (5,) and pca.components_.shape == (2, 5)


def test_pca_matches_scikit_learn_and_has_orthonormal_axes():
    codes = np.random.default_rng(1).normal(size=(300, 8)) * np.arange(1, 9)
    ours = PCAProjection(2).fit(codes)
    ref = PCA(2).fit(codes)
    np.testing.assert_allclose(np.abs(ours.components_), np.abs(ref.components_), atol=1e-8)
    np.testing.assert_allclose(ours.explained_variance_ratio_, ref.explained_variance_ratio_, atol=1e-8)
    np.testing.assert_allclose(ours.components_ @ ours.components_.T, np.eye(2), atol=1e-10)
    # Refitting gives the same signs, so a map never flips between runs.
    np.testing.assert_array_equal(PCAProjection(2).fit(codes).components_, ours.components_)


def test_pca_inverse_is_exact_on_the_plane_and_is_the_projection_otherwise():
    rng = np.random.default_rng(2)
    plane = rng.normal(size=(2, 6))
    codes = rng.normal(size=(100, 2)) @ plane + 3.0  # data lying in a 2-D affine plane
    pca = PCAProjection().fit(codes)
    np.testing.assert_allclose(pca.inverse_transform(pca.transform(codes)), codes, atol=1e-9)
    noisy = codes + rng.normal(0, 0.1, codes.shape)
    pca = PCAProjection().fit(noisy)
    back = pca.inverse_transform(pca.transform(noisy))
    np.testing.assert_allclose(pca.transform(back), pca.transform(noisy), atol=1e-9)  # a projection: idempotent


def test_pca_of_a_one_dimensional_latent_pads_the_second_axis():
    codes = np.arange(10.0)[:, None]
    pca = PCAProjection().fit(codes)
    xy = pca.transform(codes)
    assert xy.shape == (10, 2) and np.allclose(xy[:, 1], 0)
    np.testing.assert_allclose(pca.inverse_transform(xy), codes)


def test_pca_rebuilt_from_saved_arrays_gives_the_same_map():
    codes, _ = _blobs(20, 4)
    pca = PCAProjection().fit(codes)
    again = PCAProjection.from_arrays(pca.mean_, pca.components_)
    np.testing.assert_allclose(again.transform(codes), pca.transform(codes))


@pytest.fixture(scope="module")
def tsne():
    codes, labels = _blobs()
    return TSNEProjection(max_iter=500).fit(codes), codes, labels


def test_tsne_separates_clusters_of_wide_codes(tsne):
    proj, codes, labels = tsne  # 60-D codes: reduced to 50 principal components first
    emb = proj.embedding_
    assert emb.shape == (len(codes), 2) and np.isfinite(emb).all()
    # Each point's nearest map neighbour has its label.
    d = ((emb[:, None] - emb[None]) ** 2).sum(-1) + np.diag(np.full(len(emb), np.inf))
    assert (labels[d.argmin(1)] == labels).mean() > 0.95
    assert proj.spacing_ > 0


def test_tsne_is_reproducible():
    codes, _ = _blobs(15, 3)
    a = TSNEProjection(max_iter=250, perplexity=5).fit_transform(codes)
    b = TSNEProjection(max_iter=250, perplexity=5).fit_transform(codes)
    np.testing.assert_array_equal(a, b)


def test_tsne_inverse_and_place_go_through_neighbours(tsne):
    proj, codes, labels = tsne
    # At a map point: that point's code; and a code's placement is that point's position.
    np.testing.assert_allclose(proj.inverse(proj.embedding_[7]), codes[7:8], atol=1e-6)
    np.testing.assert_allclose(proj.place(codes[7]), proj.embedding_[7:8], atol=1e-6)
    # Between points: a weighted mean of nearby codes, so it stays inside that cluster.
    mid = proj.embedding_[labels == 1].mean(0)
    z = proj.inverse(mid)[0]
    centres = [codes[labels == c].mean(0) for c in range(3)]
    assert np.argmin([np.linalg.norm(z - c) for c in centres]) == 1
    # A new code near cluster 2's centre lands among cluster 2's points.
    xy = proj.place(centres[2])[0]
    nearest = np.argmin(((proj.embedding_ - xy) ** 2).sum(1))
    assert labels[nearest] == 2


def test_far_flag(tsne):
    proj, _, _ = tsne
    assert not proj.is_far(proj.embedding_[:5]).any()
    assert proj.is_far(proj.embedding_.max(0) + 100 * proj.spacing_).all()
    points = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert far_from_map(points, [[0.5, 0.5]]).tolist() == [False]  # 0.71 from a point, spacing 1
    assert far_from_map(points, [[5.0, 5.0]]).tolist() == [True]


def test_projections_refuse_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        PCAProjection().fit(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="at least 2 rows"):
        PCAProjection().fit(np.zeros((1, 3)))
    pca = PCAProjection().fit(np.random.default_rng(0).normal(size=(10, 3)))
    with pytest.raises(ValueError, match="3 columns"):
        pca.transform(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="finite"):
        pca.inverse_transform([[np.inf, 0.0]])


def _brute_nearest(points, queries, k):
    dist = np.sqrt(((queries[:, None, :] - points[None]) ** 2).sum(-1))  # (M, N)
    idx = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(dist, idx, axis=1)


@pytest.mark.parametrize("k", [1, 5, 50])
def test_kd_tree_neighbours_equal_brute_force(k):
    from vaedemo.projections import _nearest

    rng = np.random.default_rng(3)
    points, queries = rng.normal(size=(50, 4)), rng.normal(size=(20, 4))
    idx, dist = _nearest(points, queries, k)
    ref_idx, ref_dist = _brute_nearest(points, queries, k)
    assert idx.shape == dist.shape == (20, min(k, 50))
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist, atol=1e-12)
    idx, dist = _nearest(points, queries, 80)  # more than there are: every point, nearest first
    assert idx.shape == (20, 50) and (np.diff(dist, axis=1) >= 0).all()


def test_median_nn_spacing_is_public_and_documented():
    from vaedemo.projections import median_nn_spacing

    grid = np.stack(np.meshgrid(np.arange(5.0), np.arange(4.0)), -1).reshape(-1, 2)
    assert median_nn_spacing(grid) == 1.0 and median_nn_spacing(grid[:1]) == 0.0
    assert median_nn_spacing.__doc__


def test_shipped_pca_map_keeps_its_coordinates():
    """The app rebuilds a shipped map's PCA from its saved mean and axes; a refit lands on the same axes."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "checkpoints" / "vae-mnist" / "latent_map_pca.npz"
    with np.load(path) as saved:
        codes, coords, mean, components = (saved[k] for k in ("codes", "coords", "mean", "components"))
    rebuilt = PCAProjection.from_arrays(mean, components)
    np.testing.assert_allclose(rebuilt.transform(codes), coords, atol=1e-4)
    refit = PCAProjection(2).fit(codes)
    np.testing.assert_allclose(refit.components_, components, atol=1e-5)  # same signs: the map does not flip
    np.testing.assert_allclose(refit.transform(codes), coords, atol=1e-3)
