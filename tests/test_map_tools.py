"""The map tools: UMAP beside PCA and t-SNE, colouring by a per-digit figure, selections and attribute
vectors, and a digit's q(z|x) on the map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests._tiny import single_threaded, tiny_dir  # noqa: F401  (a fixture)
from vaedemo import inference
from vaedemo.inference import maps
from vaedemo.projections import UMAPProjection

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints"


def _blobs(n_per: int = 60, dim: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well separated Gaussian blobs in ``dim`` dimensions, and which blob each point is in."""
    rng = np.random.default_rng(seed)
    centres = np.eye(3, dim) * 12.0
    labels = np.repeat(np.arange(3), n_per)
    return centres[labels] + rng.normal(size=(len(labels), dim)), labels


# ---------------------------------------------------------------------------------- UMAP


@pytest.fixture(scope="module")
def fitted_umap():
    codes, labels = _blobs()
    with single_threaded():
        proj = UMAPProjection(n_epochs=100).fit(codes)
    return proj, codes, labels


def test_umap_keeps_clusters_apart_on_the_map(fitted_umap):
    proj, codes, labels = fitted_umap
    xy = proj.embedding_
    assert xy.shape == (len(codes), 2) and np.isfinite(xy).all()
    centres = np.stack([xy[labels == c].mean(0) for c in range(3)])
    nearest_centre = np.argmin(((xy[:, None] - centres[None]) ** 2).sum(-1), axis=1)
    assert (nearest_centre == labels).mean() > 0.95  # each blob is its own island
    assert proj.ab_.shape == (2,) and (proj.ab_ > 0).all()


def test_umap_transform_places_a_new_code_in_its_cluster(fitted_umap):
    proj, codes, labels = fitted_umap
    new, new_labels = _blobs(n_per=5, seed=1)
    xy = proj.transform(new)
    centres = np.stack([proj.embedding_[labels == c].mean(0) for c in range(3)])
    assert (np.argmin(((xy[:, None] - centres[None]) ** 2).sum(-1), axis=1) == new_labels).all()
    assert proj.transform(codes[0]).shape == (1, 2)  # one code as a (D,) vector works too


def test_umap_inverse_decodes_a_place_to_its_clusters_codes(fitted_umap):
    proj, codes, labels = fitted_umap
    z = proj.inverse_transform(proj.embedding_[labels == 2][:5])
    assert z.shape == (5, codes.shape[1])
    assert (np.argmax(z[:, :3], axis=1) == 2).all()  # back near blob 2's centre, not between blobs
    assert proj.is_far(np.array([[1e6, 1e6]]))[0] and not proj.is_far(proj.embedding_[:1])[0]


def test_a_saved_umap_rebuilds_without_refitting(fitted_umap):
    proj, codes, _ = fitted_umap
    again = UMAPProjection.from_arrays(codes, proj.embedding_, proj.ab_)
    np.testing.assert_allclose(again.transform(codes[:7]), proj.transform(codes[:7]))
    np.testing.assert_allclose(again.inverse_transform(proj.embedding_[:7]), proj.inverse_transform(proj.embedding_[:7]))
    with pytest.raises(ValueError, match="curve parameters"):
        UMAPProjection.from_arrays(codes, proj.embedding_, [1.0, -1.0])


@pytest.fixture()
def shipped(monkeypatch):
    monkeypatch.setenv("VAEDEMO_CHECKPOINT_DIR", str(SHIPPED))
    monkeypatch.setenv("VAEDEMO_DEVICE", "cpu")
    maps.clear_cache()
    yield
    maps.clear_cache()


@pytest.mark.parametrize("name", ["ae-mnist", "vae-mnist", "vae-mnist-2d", "cvae-mnist", "conv-vae-mnist"])
def test_every_shipped_checkpoint_has_a_umap_map_that_opens_at_once(shipped, name):
    path = SHIPPED / name / "latent_map_umap.npz"
    assert path.is_file()
    with np.load(path, allow_pickle=False) as f:  # plain arrays only: nothing to unpickle
        assert {"coords", "codes", "umap_ab"} <= set(f.files)
    lm = inference.latent_map(name, "umap", 500)
    assert lm.from_disk and lm.method == "umap" and lm.coords.shape == (500, 2)


def test_umap_places_a_digit_near_its_own_point_and_decodes_a_place(shipped):
    lm = inference.full_map("vae-mnist-2d", "umap")
    x, y = inference.project_point("vae-mnist-2d", "umap", inference.bundled_digit(5))
    assert np.hypot(x - lm.coords[5, 0], y - lm.coords[5, 1]) < 20 * lm.spacing  # among its own neighbours
    p = inference.decode_at("vae-mnist-2d", "umap", *lm.coords[5])
    assert p.image.shape == (28, 28) and not p.far
    assert inference.decode_at("vae-mnist-2d", "umap", 1e4, 1e4).far


def test_latent_map_accepts_umap_and_names_the_three_methods():
    assert inference.METHODS == ("pca", "tsne", "umap")
    assert maps.check_method("UMAP") == "umap"
    with pytest.raises(ValueError, match="'pca', 'tsne' or 'umap'"):
        maps.check_method("isomap")
