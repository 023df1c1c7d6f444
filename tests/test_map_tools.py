"""The map tools: UMAP beside PCA and t-SNE, colouring by a per-digit figure, selections and attribute
vectors, and a digit's q(z|x) on the map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests._tiny import single_threaded, tiny_dir  # noqa: F401  (tiny_dir is a fixture)
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
    back = proj.embedding_[:7]
    np.testing.assert_allclose(again.inverse_transform(back), proj.inverse_transform(back))
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


# ---------------------------------------------------------------------------------- colour by a number


@pytest.mark.usefixtures("tiny_dir")
def test_colour_values_are_the_figures_the_reconstruct_tab_reports():
    for i in (3, 4242, 9999):
        r = inference.reconstruct(i, "tiny-vae2", n_samples=0)
        assert inference.digit_scores("tiny-vae2", "error")[i] == pytest.approx(r.mse, rel=1e-4, abs=1e-7)
        assert inference.digit_scores("tiny-vae2", "neg_elbo")[i] == pytest.approx(r.neg_elbo, rel=1e-5)
    kl = inference.digit_scores("tiny-mix-vae", "kl")
    assert kl.shape == (inference.MAP_SIZE,) and np.isfinite(kl).all()
    assert (inference.digit_scores("tiny-vae2", "kl") >= 0).all()  # closed form under N(0, I)
    lm = inference.latent_map("tiny-vae2", "pca", 300)
    scores = inference.digit_scores("tiny-vae2", "error")
    np.testing.assert_array_equal(inference.map_values(lm, "error"), scores[lm.indices])
    assert inference.map_values(lm, "label") is None


@pytest.mark.usefixtures("tiny_dir")
def test_colouring_an_autoencoder_by_elbo_or_without_a_classifier_gets_a_sentence():
    with pytest.raises(ValueError, match="autoencoder has no −ELBO"):
        inference.digit_scores("tiny-ae", "neg_elbo")
    with pytest.raises(ValueError, match="no digit classifier"):
        inference.digit_scores("tiny-ae", "confidence")  # tiny_dir trains none
    with pytest.raises(ValueError, match="Unknown colouring"):
        inference.check_colour("brightness")


# ---------------------------------------------------------------------------------- selections


def test_selections_read_lists_and_text_and_refuse_bad_numbers():
    np.testing.assert_array_equal(inference.check_indices("17, 3 42;3", "A"), [3, 17, 42])
    np.testing.assert_array_equal(inference.check_indices("[5, 1]", "A"), [1, 5])
    np.testing.assert_array_equal(inference.check_indices([9999, 0.0], "A"), [0, 9999])
    assert len(inference.check_indices("", "B", allow_empty=True)) == 0
    for bad, words in (("", "is empty"), ("1, x", "must be a number"), ([10_000], "from 0 to 9999"),
                       ("[1,", "separated by commas"), ({"a": 1}, "list of digit numbers")):
        with pytest.raises(ValueError, match=words):
            inference.check_indices(bad, "The selection")


@pytest.mark.usefixtures("tiny_dir")
def test_a_selection_downloads_as_csv_with_its_codes():
    sel = inference.selection([12, 7, 300])
    assert list(sel.indices) == [7, 12, 300] and sel.images.shape == (3, 28, 28)
    assert sel.summary().startswith("3 digits: ")
    rows = inference.selection_csv("tiny-cvae", "300, 7, 12").decode().splitlines()
    assert rows[0] == "index,label,z0,z1,z2,z3" and len(rows) == 4
    codes = inference.latent_map("tiny-cvae", "pca").codes
    first = rows[1].split(",")
    assert int(first[0]) == 7 and int(first[1]) == int(inference.bundled()[1][7])
    np.testing.assert_allclose([float(v) for v in first[2:]], codes[7], rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------- attribute vectors


def test_an_attribute_vector_recovers_a_known_direction():
    rng = np.random.default_rng(0)
    dim = 16
    true = rng.normal(size=dim)
    true *= 3.0 / np.linalg.norm(true)
    b = rng.normal(size=(80, dim))
    a = rng.normal(size=(60, dim)) + true  # the same population, shifted along `true`
    v = inference.attribute_from_codes(a, b)
    cosine = v.direction @ true / (np.linalg.norm(v.direction) * np.linalg.norm(true))
    assert cosine > 0.95 and np.linalg.norm(v.direction) == pytest.approx(3.0, rel=0.15)
    assert not v.noisy and v.note().startswith("A clear direction")

    same = inference.attribute_from_codes(rng.normal(size=(20, dim)), rng.normal(size=(20, dim)))
    assert same.noisy and "Mostly noise" in same.note()  # two draws of one population: no direction
    with pytest.raises(ValueError, match="at least 2 digits"):
        inference.attribute_from_codes(a[:1], b)


@pytest.mark.usefixtures("tiny_dir")
def test_applying_a_direction_moves_the_digit_and_strength_zero_keeps_it():
    labels = inference.bundled()[1]
    ones, zeros = np.flatnonzero(labels == 1)[:40], np.flatnonzero(labels == 0)[:40]
    v = inference.attribute_vector("tiny-vae2", ones, zeros)
    assert v.n_a == 40 and v.n_b == 40 and not v.b_is_rest
    zero = int(np.flatnonzero(labels == 0)[45])  # a 0 that is in neither selection
    moved = inference.apply_attribute("tiny-vae2", zero, v, [-3, 0, 3])
    recon = inference.reconstruct(zero, "tiny-vae2", n_samples=0).recon
    np.testing.assert_allclose(moved.images[1], recon, atol=1e-5)
    ink = moved.images.reshape(3, -1).sum(1)
    assert ink[2] < ink[1]  # towards the 1s: thinner than a 0
    rest = inference.attribute_vector("tiny-vae2", ones, "")
    assert rest.b_is_rest and rest.n_b == inference.MAP_SIZE - 40
    with pytest.raises(ValueError, match="strength must be a number from -3 to 3"):
        inference.apply_attribute("tiny-vae2", zero, v, [4])
    assert len(inference.check_strengths("")) == 7


# ---------------------------------------------------------------------------------- q(z|x) on the map


@pytest.mark.usefixtures("tiny_dir")
def test_the_posterior_cloud_surrounds_the_digit_and_pca_draws_its_ellipse():
    from scipy.stats import chi2

    x = inference.bundled_digit(11)
    cloud = inference.posterior_cloud("tiny-vae2", "pca", x, samples=400)
    star = inference.project_point("tiny-vae2", "pca", x)
    np.testing.assert_allclose(cloud.mean, star, atol=1e-5)
    assert cloud.samples.shape == (400, 2) and np.allclose(cloud.ellipse[0], cloud.ellipse[-1], atol=1e-5)
    # The outline is q(z|x)'s 95% region seen through PCA: about 95% of the draws fall inside it.
    r2 = chi2.ppf(0.95, df=2)
    cov = 2 * np.cov(cloud.ellipse[:-1].T.astype(np.float64)) / r2  # points evenly spaced in angle on the ellipse
    d = cloud.samples - cloud.mean
    inside = np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d) <= r2
    assert 0.9 <= inside.mean() <= 0.99
    umap_free = inference.posterior_cloud("tiny-vae2", "tsne", x, samples=50)
    assert umap_free.ellipse is None and umap_free.samples.shape == (50, 2)  # placed among the nearest digits
    assert inference.posterior_cloud("tiny-ae", "pca", x) is None  # an AE's code is one point


# ---------------------------------------------------------------------------------- the tab's handlers


@pytest.mark.usefixtures("tiny_dir")
def test_the_map_tab_colours_by_a_figure_and_draws_a_compared_map():
    import json

    from vaedemo.ui import latent_map, map_tools

    here = inference.bundled_digit(11)
    shown = latent_map.latent_map("tiny-vae2", "pca", 300, here, lambda *a, **k: None, "error", "tiny-ae")
    data = json.loads(shown["map"])
    lm = inference.latent_map("tiny-vae2", "pca", 300)
    np.testing.assert_allclose(data["values"], inference.map_values(lm, "error"), rtol=1e-3)
    assert data["colour_title"].startswith("reconstruction error")
    assert data["compare"]["checkpoint"] == "tiny-ae" and data["compare"]["index"] == data["index"]
    assert len(data["cloud"]["x"]) == maps.CLOUD_SAMPLES and data["cloud"]["ellipse"] is not None
    assert shown["key"]["colour"] == "error" and shown["key"]["compare"] == "tiny-ae"
    assert "q(z|x)" in shown["note"] and "tiny-ae" in shown["note"]
    by_elbo = json.loads(latent_map.latent_map("tiny-vae2", "pca", 300, None, lambda *a, **k: None, "neg_elbo",
                                               "tiny-ae")["map"])
    assert by_elbo["values"] is not None and by_elbo["compare"]["values"] is None  # an AE has no −ELBO: labels

    import gradio as gr

    picked = map_tools.map_select(shown["key"], gr.EventData(None, {"slot": "b", "indices": [5, 3, 900]}))
    assert picked["text_b"] == "3, 5, 900" and "3 digits" in picked["sum_b"]
    moved = map_tools.attribute("tiny-vae2", "1, 2, 3, 4", "", None, 7, "-1, 0, 1")
    assert moved["strip"].size[0] > 3 * 28 * 3 and "Strengths, left to right: -1, +0, +1." in moved["note"]
    with pytest.raises(gr.Error, match="first selection is empty"):
        map_tools.attribute("tiny-vae2", "", "", None, 7)
    # what the page gets for its live strength slider: the digit's code and the direction, the server's own
    import base64

    live = json.loads(map_tools.live_attribute("tiny-vae2", "1, 2, 3, 4", "", None, 7)["live"])
    code = np.frombuffer(base64.b64decode(live["code"]), "<f4")
    direction = np.frombuffer(base64.b64decode(live["direction"]), "<f4")
    vector = inference.attribute_vector("tiny-vae2", "1, 2, 3, 4", "")
    assert live["kind"] == "attribute" and live["model"]["latent_dim"] == len(code) == 2
    np.testing.assert_allclose(direction, vector.direction, rtol=1e-6)
    from vaedemo.inference import browser

    for s in (-2.0, 1.5):
        moved = inference.apply_attribute("tiny-vae2", 7, vector, [s]).images[0]
        decoded = browser.decode_codes("tiny-vae2", (code.astype(np.float64) + s * direction)[None], None)[0]
        assert np.abs(decoded.reshape(28, 28) - moved).max() < 1e-5, s
