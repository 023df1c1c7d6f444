"""The app's backend: what a user of each tab would notice, on tiny checkpoints trained in seconds."""

import threading
import time

import numpy as np
import pytest
import torch
from _tiny import PRIORS, TINY, tiny_dir  # noqa: F401  (tiny_dir is a fixture)

from vaedemo import distributions, inference
from vaedemo.data import bundled_digits
from vaedemo.inference import codec, explore, maps, stats

pytestmark = pytest.mark.usefixtures("tiny_dir")
KINDS = {TINY[name][0]: name for name in TINY if name not in PRIORS}  # kind → checkpoint name (N(0, I) priors)
MIX = "tiny-mix-vae"  # the VAE with a learnt mixture prior
X, Y = bundled_digits()


def _digit(i):
    return X[i].astype(np.float32) / 255.0


def _other_class(i):
    return next(j for j in range(i + 1, len(Y)) if Y[j] != Y[i])


# ---------------------------------------------------------------------------------- store and listing


def test_checkpoint_choices_label_every_model():
    choices = dict((name, label) for label, name in inference.checkpoint_choices())
    assert set(choices) == set(TINY)
    assert choices["tiny-vae2"] == "tiny-vae2 · VAE · latent 2"
    assert choices["tiny-conv-vae"] == "tiny-conv-vae · Conv VAE · latent 4"
    assert inference.broken_checkpoints() == []


def test_broken_checkpoint_is_listed_with_its_reason_and_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("VAEDEMO_CHECKPOINT_DIR", str(tmp_path))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    (tmp_path / "bad" / "model.safetensors").write_bytes(b"junk")
    assert inference.checkpoint_choices() == []
    [(name, reason)] = inference.broken_checkpoints()
    assert name == "bad" and "JSON" in reason
    with pytest.raises(ValueError, match="cannot be loaded"):
        inference.STORE.get("bad")


@pytest.mark.parametrize("name", ["nope", "../etc", "", None, "A B"])
def test_store_refuses_bad_names(name):
    with pytest.raises(ValueError):
        inference.STORE.get(name)


def test_store_loads_once_in_eval_mode_even_under_concurrency():
    got = []
    threads = [threading.Thread(target=lambda: got.append(inference.STORE.get("tiny-cvae"))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(m) for m in got}) == 1
    model = got[0]
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert "tiny-cvae" in inference.model_health()["loaded_checkpoints"]


def test_digit_input_picks_bundled_digits_and_refuses_bad_indices():
    assert np.array_equal(inference.digit_input(3), _digit(3))
    assert inference.digit_input(np.int64(3)).dtype == np.float32
    for bad in (-1, 10_000):
        with pytest.raises(ValueError, match="digit number"):
            inference.digit_input(bad)
    with pytest.raises(ValueError, match="blank"):
        inference.digit_input(None)


# ---------------------------------------------------------------------------------- reconstruct


@pytest.mark.parametrize("kind", ["ae", "vae", "cvae", "conv-vae"])
def test_reconstruct_shapes_ranges_and_neighbours(kind):
    name = KINDS[kind]
    label = int(Y[5]) if kind == "cvae" else None
    r = inference.reconstruct(5, name, n_samples=3, label=label)
    d = TINY[name][1]
    assert r.input.shape == r.recon.shape == r.error_map.shape == (28, 28)
    assert 0 <= r.recon.min() and r.recon.max() <= 1
    np.testing.assert_allclose(r.error_map, r.recon - r.input, atol=1e-6)
    assert r.mu.shape == (d,) and r.mse >= 0 and r.bce_nats > 0
    if kind == "ae":
        assert r.samples.shape == (0, 28, 28) and r.sigma is None and r.neg_elbo is None and r.elbo_percentile is None
    else:
        assert r.samples.shape == (3, 28, 28) and r.sigma.shape == (d,) and (r.sigma > 0).all()
        assert r.neg_elbo > 0 and 0 <= r.elbo_percentile <= 100
    assert r.label_used == label
    # A bundled digit is its own nearest neighbour, at distance 0.
    assert len(r.neighbours) == 5
    index, lab, dist = r.neighbours[0]
    assert index == 5 and lab == Y[5] and dist < 1e-4
    assert [n[2] for n in r.neighbours] == sorted(n[2] for n in r.neighbours)


@pytest.mark.parametrize("kind", ["vae", "cvae"])
def test_reconstruction_looks_like_its_input_rather_than_another_digit(kind):
    wins = 0
    for i in range(20):
        r = inference.reconstruct(i, KINDS[kind], label=int(Y[i]) if kind == "cvae" else None)
        wins += np.mean((r.recon - _digit(i)) ** 2) < np.mean((r.recon - _digit(_other_class(i))) ** 2)
    assert wins >= 15  # the tiny models manage 18-19 of 20


def test_a_real_digit_is_more_typical_than_noise():
    noise = np.random.default_rng(0).random((28, 28)).astype(np.float32)
    real = inference.reconstruct(0, "tiny-vae2")
    odd = inference.reconstruct(noise, "tiny-vae2")
    assert real.elbo_percentile < odd.elbo_percentile
    assert real.neg_elbo < odd.neg_elbo


def test_cvae_without_a_label_picks_the_best_one_and_is_repeatable():
    a = inference.reconstruct(1, "tiny-cvae")
    b = inference.reconstruct(1, "tiny-cvae")
    assert 0 <= a.label_used <= 9 and a.label_used == b.label_used
    np.testing.assert_array_equal(a.recon, b.recon)


def test_reconstruct_refuses_bad_inputs():
    with pytest.raises(ValueError, match="blank"):
        inference.reconstruct(np.zeros((28, 28), np.float32), "tiny-vae2")
    with pytest.raises(ValueError, match="NaN"):
        inference.reconstruct(np.full((28, 28), np.nan, np.float32), "tiny-vae2")
    with pytest.raises(ValueError, match="number of samples"):
        inference.reconstruct(0, "tiny-vae2", n_samples=float("inf"))
    with pytest.raises(ValueError, match="digit"):
        inference.reconstruct(0, "tiny-cvae", label=10)
    with pytest.raises(ValueError, match="no checkpoint"):
        inference.reconstruct(0, "missing")


def test_concurrent_requests_get_the_same_answers_as_one_at_a_time():
    expected = {
        i: (inference.reconstruct(i, "tiny-cvae").recon, inference.sample("tiny-vae2", 4, seed=i)) for i in range(4)
    }
    results, errors = {}, []

    def work(i):
        try:
            results[i] = (inference.reconstruct(i % 4, "tiny-cvae").recon, inference.sample("tiny-vae2", 4, seed=i % 4))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, (recon, samples) in results.items():
        np.testing.assert_allclose(recon, expected[i % 4][0], atol=1e-6)
        np.testing.assert_allclose(samples, expected[i % 4][1], atol=1e-6)


def test_second_reconstruct_reuses_the_per_checkpoint_caches(monkeypatch):
    inference.reconstruct(2, "tiny-vae2")  # the first call encodes the bundled and validation digits
    encoded = []
    real = codec.encode

    def counting(model, images, labels=None):
        encoded.append(len(images))
        return real(model, images, labels)

    for module in (explore, stats, maps):
        monkeypatch.setattr(module, "encode", counting)
    inference.reconstruct(3, "tiny-vae2")
    assert sum(encoded) < 100  # the input alone, not thousands of dataset digits again


# ---------------------------------------------------------------------------------- sample


@pytest.mark.parametrize("kind", ["ae", "vae", "cvae", "conv-vae"])
def test_sample_is_repeatable_for_a_seed_and_differs_for_another(kind):
    name = KINDS[kind]
    a = inference.sample(name, count=5, seed=7)
    assert a.shape == (5, 28, 28) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    np.testing.assert_array_equal(a, inference.sample(name, count=5, seed=7))
    assert not np.allclose(a, inference.sample(name, count=5, seed=8))


def test_digits_are_read_by_the_classifier_once_one_is_installed(tiny_dir):  # noqa: F811 (the fixture)
    from vaedemo.classifier import save_classifier, train_classifier
    from vaedemo.data import mnist10k

    val = mnist10k()
    digits, labels = val.x_val[:200].astype(np.float32) / 255.0, val.y_val[:200]  # not seen in training
    assert inference.read_digits(digits) is None  # no classifier yet: the app shows samples unlabelled
    reader, meta = train_classifier(mnist10k().limit(3000), epochs=2)
    save_classifier(reader, "classifier-mnist", {"metrics": meta})
    try:
        reading = inference.read_digits(digits)
        assert reading.labels.shape == reading.confidence.shape == (200,)
        assert (reading.labels == labels).mean() > 0.8 and reading.clear.mean() > 0.5
        (tiny_dir / "classifier-mnist" / "model.safetensors").write_bytes(b"not a tensor file")
        assert inference.read_digits(digits) is None  # a damaged classifier is skipped, not an error
    finally:
        import shutil

        shutil.rmtree(tiny_dir / "classifier-mnist")


def test_a_learnt_prior_is_sampled_from_its_components():
    from vaedemo.inference.store import STORE

    model = STORE.entry(MIX).model
    info = inference.checkpoint_info(MIX)
    assert "mixture of 5 Gaussians" in info["sampling_note"]
    samples = inference.sample(MIX, count=16, seed=3)
    np.testing.assert_array_equal(samples, inference.sample(MIX, count=16, seed=3))
    with torch.no_grad():
        centres = model.decode(model.prior.means)[:, 0].numpy()  # (5, 28, 28)
        draws = distributions.prior_draws(model, 4000, seed=0)
    cold = inference.sample(MIX, count=16, temperature=1e-4, seed=3)
    gaps = np.abs(cold[:, None] - centres[None]).max(axis=(2, 3))  # (16, 5)
    assert (gaps.min(1) < 1e-3).all()  # at T → 0 every sample is one component's centre
    assert len(set(gaps.argmin(1).tolist())) > 1
    rms = float(draws.pow(2).sum(1).mean().sqrt())
    assert abs(info["typical_norm"] - rms) < 0.05 * rms  # the "typical length" line of the slerp plot


def test_a_learnt_prior_scores_digits_like_evaluate_does():
    from vaedemo.inference.codec import neg_elbo
    from vaedemo.inference.store import STORE
    from vaedemo.metrics import evaluate

    model = STORE.entry(MIX).model
    x, y = X[:200], Y[:200]
    per_digit = neg_elbo(model, x.astype(np.float32) / 255.0)
    assert np.isfinite(per_digit).all()
    assert abs(per_digit.mean() - evaluate(model, x, y, iwae_k=0)["neg_elbo"]) < 3.0
    r = inference.reconstruct(X[0], MIX)
    assert r.neg_elbo is not None and 0 <= r.elbo_percentile <= 100
    ranked = inference.dims_by_kl(MIX)
    assert len(ranked) == 4 and all(np.isfinite(v) and v >= 0 for _, v in ranked)
    t = inference.traverse(MIX, X[0], dims=[ranked[0][0]], steps=5)
    assert t.images.shape == (1, 5, 28, 28) and not np.allclose(t.images[0, 0], t.images[0, -1])


def test_the_map_shows_where_a_learnt_prior_put_its_centres():
    import json

    from vaedemo.inference.store import STORE
    from vaedemo.ui import latent_map as map_tab

    model = STORE.entry(MIX).model
    pca = inference.latent_map(MIX, "pca", 500)
    centres = inference.prior_centres(MIX, "pca", n=500)
    with torch.no_grad():
        expected = pca.projection.transform(model.prior.means.numpy())
    np.testing.assert_allclose(centres, expected, rtol=1e-4, atol=1e-4)  # PCA places them exactly
    tsne = inference.latent_map(MIX, "tsne", 500)
    placed = inference.prior_centres(MIX, "tsne", n=500)
    assert placed.shape == (5, 2) and np.isfinite(placed).all()
    lo, hi = tsne.coords.min(0), tsne.coords.max(0)
    assert ((placed >= lo - 1e-3) & (placed <= hi + 1e-3)).all()  # among the digits, not off the map
    assert inference.prior_centres(KINDS["vae"], "pca", n=500) is None  # N(0, I) has no centres to show
    assert inference.prior_centres(KINDS["ae"], "pca", n=500) is None

    shown = map_tab.latent_map(MIX, "pca", 500, None, lambda *a, **k: None)
    data = json.loads(shown["map"])
    assert len(data["prior"]["x"]) == len(data["prior"]["y"]) == 5 and "learnt prior" in shown["note"]
    assert json.loads(map_tab.latent_map(KINDS["vae"], "pca", 500, None, lambda *a, **k: None)["map"])["prior"] is None


def test_low_temperature_samples_stay_close_to_the_mean():
    cold = inference.sample("tiny-vae2", count=32, temperature=0.1, seed=1)
    hot = inference.sample("tiny-vae2", count=32, temperature=2.0, seed=1)
    assert cold.std(axis=0).mean() < 0.5 * hot.std(axis=0).mean()


def test_cvae_samples_the_digit_asked_for():
    fixed = inference.sample("tiny-cvae", count=4, seed=0, digit=3)
    cycled = inference.sample("tiny-cvae", count=4, seed=0)
    np.testing.assert_allclose(fixed[3], cycled[3], atol=1e-6)  # the 4th of a cycle is digit 3 too
    assert not np.allclose(fixed[0], cycled[0])


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(count=0), "number of samples"),
        (dict(count=257), "number of samples"),
        (dict(count=float("nan")), "number of samples"),
        (dict(count="lots"), "number of samples"),
        (dict(count=2.5), "whole number"),
        (dict(temperature=0), "temperature"),
        (dict(temperature=5.5), "temperature"),
        (dict(temperature=None), "temperature"),
        (dict(seed=-1), "seed"),
        (dict(seed=2**31), "seed"),
    ],
)
def test_sample_refuses_bad_numbers(kwargs, words):
    with pytest.raises(ValueError, match=words):
        inference.sample("tiny-vae2", **kwargs)


def test_sample_accepts_numbers_as_web_forms_send_them():
    assert inference.sample("tiny-vae2", count=3.0, temperature="0.5", seed=np.int64(2)).shape == (3, 28, 28)


# ---------------------------------------------------------------------------------- interpolate and traverse


def test_interpolation_endpoints_are_the_reconstructions():
    a, b = _digit(0), _digit(1)
    path = inference.interpolate("tiny-conv-vae", a, b, steps=6)
    assert path.lerp.shape == path.slerp.shape == (6, 28, 28)
    assert path.t[0] == 0 and path.t[-1] == 1 and path.lerp_norms.shape == path.slerp_norms.shape == (6,)
    ra, rb = inference.reconstruct(a, "tiny-conv-vae").recon, inference.reconstruct(b, "tiny-conv-vae").recon
    for frames in (path.lerp, path.slerp):
        np.testing.assert_allclose(frames[0], ra, atol=1e-5)
        np.testing.assert_allclose(frames[-1], rb, atol=1e-5)


def test_slerp_keeps_the_norm_between_equal_length_codes():
    z0, z1 = np.array([3.0, 0.0]), np.array([0.0, 3.0])
    path = inference.slerp(z0, z1, np.linspace(0, 1, 5))
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), 3.0)
    np.testing.assert_allclose(inference.slerp(z0, 2 * z0, np.array([0.5])), [[4.5, 0.0]])  # parallel: a line


@pytest.mark.parametrize("steps", [1, 65, float("nan"), None])
def test_interpolate_refuses_bad_step_counts(steps):
    with pytest.raises(ValueError, match="steps"):
        inference.interpolate("tiny-vae2", 0, 1, steps=steps)


def test_traverse_defaults_to_the_most_informative_dimensions():
    ranked = inference.dims_by_kl("tiny-conv-vae")
    assert sorted(d for d, _ in ranked) == [0, 1, 2, 3]
    assert [v for _, v in ranked] == sorted((v for _, v in ranked), reverse=True)
    tr = inference.traverse("tiny-conv-vae", 4, steps=5, span=2.0)
    assert tr.images.shape == (4, 5, 28, 28)
    assert tr.dims == [d for d, _ in ranked]
    np.testing.assert_allclose(tr.values, [-2, -1, 0, 1, 2])
    # The middle column is the unchanged code, i.e. the reconstruction.
    recon = inference.reconstruct(4, "tiny-conv-vae").recon
    np.testing.assert_allclose(tr.images[0, 2], recon, atol=1e-5)


def test_traverse_chosen_dims_and_bad_dims():
    assert inference.traverse("tiny-ae", 0, dims=[2, 0], steps=3).images.shape == (2, 3, 28, 28)
    for dims in ([4], [0, 0], [], [-1]):
        with pytest.raises(ValueError, match="dimension"):
            inference.traverse("tiny-ae", 0, dims=dims)


# ---------------------------------------------------------------------------------- latent maps


def test_pca_map_shapes_and_exact_inverse():
    m = inference.latent_map("tiny-conv-vae", "pca", n=500)
    assert m.coords.shape == (500, 2) and m.coords.dtype == np.float32
    assert m.codes.shape == (500, 4) and m.labels.shape == m.indices.shape == (500,)
    assert m.mean.shape == (4,) and m.components.shape == (2, 4)
    np.testing.assert_array_equal(m.labels, Y[m.indices])
    with pytest.raises(ValueError):
        m.coords[0, 0] = 1.0  # shared by every user, so read-only
    # Decoding at a digit's map position decodes its PCA reconstruction mean + xy·components.
    i = 17
    point = inference.decode_at("tiny-conv-vae", "pca", *m.coords[i], n=500)
    z = m.mean + m.coords[i] @ m.components
    np.testing.assert_allclose(point.z, z, atol=1e-4)
    assert point.image.shape == (28, 28) and not point.far
    # A 2-D latent loses nothing in a 2-D PCA, so the decode is the digit's own reconstruction.
    m2 = inference.latent_map("tiny-vae2", "pca", n=500)
    j = int(m2.indices[3])
    exact = inference.decode_at("tiny-vae2", "pca", *m2.coords[3], n=500)
    np.testing.assert_allclose(exact.image, inference.reconstruct(j, "tiny-vae2").recon, atol=1e-4)
    assert np.allclose(inference.project_point("tiny-vae2", "pca", j, n=500), m2.coords[3], atol=1e-4)


def test_pca_far_flag():
    m = inference.latent_map("tiny-ae", "pca", n=300)
    assert not inference.decode_at("tiny-ae", "pca", *m.coords[0], n=300).far
    assert inference.decode_at("tiny-ae", "pca", 1e4, -1e4, n=300).far


def test_tsne_map_inverse_placement_and_far_flag():
    m = inference.latent_map("tiny-vae2", "tsne", n=200)
    assert m.coords.shape == (200, 2) and m.mean is None and m.components is None
    here = inference.decode_at("tiny-vae2", "tsne", *m.coords[5], n=200)
    np.testing.assert_allclose(here.z, m.codes[5], atol=1e-4)  # at a map point: that point's own code
    assert not here.far
    far = inference.decode_at("tiny-vae2", "tsne", float(m.coords[:, 0].max()) + 1e3, 0.0, n=200)
    assert far.far and far.image.shape == (28, 28)
    x, y = inference.project_point("tiny-vae2", "tsne", int(m.indices[5]), n=200)
    assert np.hypot(x - m.coords[5, 0], y - m.coords[5, 1]) < 1e-3


def test_map_is_cached_in_memory_and_on_disk(monkeypatch):
    name = "tiny-cvae"
    first = inference.latent_map(name, "pca", n=inference.MAP_SIZE)
    path = inference.STORE.entry(name).folder / "latent_map_pca.npz"
    assert path.is_file() and not first.from_disk
    assert inference.latent_map(name, "pca", n=inference.MAP_SIZE) is first

    def refuse(*args, **kwargs):
        raise AssertionError("the map was computed again")

    monkeypatch.setattr(maps.PCAProjection, "fit", refuse)
    maps.clear_cache()
    again = inference.latent_map(name, "pca", n=inference.MAP_SIZE)
    assert again.from_disk and again is not first
    np.testing.assert_array_equal(again.coords, first.coords)
    # A fresh git clone gives every file a new mtime: the shipped map must still be used.
    weights = inference.STORE.entry(name).folder / "model.safetensors"
    stamp = weights.stat().st_mtime_ns + 10**9
    import os

    os.utime(weights, ns=(stamp, stamp))
    maps.clear_cache()
    assert inference.latent_map(name, "pca", n=inference.MAP_SIZE).from_disk
    # Once the weights change, the disk copy is stale and the map is computed anew.
    from safetensors.torch import load_file, save_file

    tensors = load_file(weights)
    key = next(k for k, v in tensors.items() if v.is_floating_point() and v.ndim == 2)
    tensors[key] = tensors[key] * 1.01
    save_file(tensors, weights)
    with pytest.raises(AssertionError, match="computed again"):
        inference.latent_map(name, "pca", n=inference.MAP_SIZE)


def test_concurrent_requests_compute_a_map_once(monkeypatch):
    calls = []
    real_fit = maps.PCAProjection.fit

    def counting_fit(self, codes):
        calls.append(1)
        time.sleep(0.2)  # give the other threads time to arrive while this one works
        return real_fit(self, codes)

    monkeypatch.setattr(maps.PCAProjection, "fit", counting_fit)
    (inference.STORE.entry("tiny-ae").folder / "latent_map_pca.npz").unlink(missing_ok=True)
    maps.clear_cache()
    got = []
    threads = [
        threading.Thread(target=lambda: got.append(inference.latent_map("tiny-ae", "pca", n=250))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(m.projection) for m in got}) == 1  # one build, one full map for all
    assert len(maps._BUILDERS) == 0  # the per-map lock is gone once nobody waits for it


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(method="isomap"), "method"),
        (dict(n=5), "number of digits"),
        (dict(n=10_001), "number of digits"),
        (dict(n=float("nan")), "number of digits"),
    ],
)
def test_latent_map_refuses_bad_settings(kwargs, words):
    with pytest.raises(ValueError, match=words):
        inference.latent_map("tiny-ae", **kwargs)


def test_decode_at_refuses_non_numbers():
    inference.latent_map("tiny-ae", "pca", n=300)
    for x in (float("nan"), float("inf"), "left", None):
        with pytest.raises(ValueError, match="x coordinate"):
            inference.decode_at("tiny-ae", "pca", x, 0.0, n=300)


# ---------------------------------------------------------------------------------- manifold grid


def test_manifold_grid_for_a_2d_latent():
    grid = inference.manifold_grid("tiny-vae2", n=5)
    assert grid.shape == (140, 140) and 0 <= grid.min() and grid.max() <= 1
    # The grid's centre tile is the decode of the prior's mean, z = 0.
    centre = codec.decode(inference.STORE.get("tiny-vae2"), np.zeros((1, 2)))[0]
    np.testing.assert_allclose(grid[56:84, 56:84], centre, atol=1e-5)


def test_manifold_grid_refuses_other_latent_sizes_and_bad_sizes():
    with pytest.raises(ValueError, match="2-D latent"):
        inference.manifold_grid("tiny-conv-vae")
    with pytest.raises(ValueError, match="grid size"):
        inference.manifold_grid("tiny-vae2", n=1000)
    with pytest.raises(ValueError, match="span"):
        inference.manifold_grid("tiny-vae2", span=-1)


def test_health_reports_the_basics():
    h = inference.model_health()
    assert h["version"] and h["torch"] and h["device"] == "cpu" and isinstance(h["loaded_checkpoints"], list)


def test_a_smaller_map_is_cut_from_the_full_one_and_never_overwrites_it(monkeypatch):
    name = KINDS["vae"]
    maps.clear_cache()
    full = inference.latent_map(name, "pca", n=inference.MAP_SIZE)
    path = inference.STORE.entry(name).folder / "latent_map_pca.npz"
    before = path.read_bytes()

    def refuse(*args, **kwargs):
        raise AssertionError("the map was computed again")

    monkeypatch.setattr(maps.PCAProjection, "fit", refuse)
    small = inference.latent_map(name, "pca", n=500)
    assert small.n == 500 and path.read_bytes() == before  # the full file on disk is untouched
    where = {int(i): k for k, i in enumerate(full.indices)}
    np.testing.assert_array_equal(small.coords, full.coords[[where[int(i)] for i in small.indices]])
    maps.clear_cache()  # a fresh process: the small map comes from the full file on disk
    assert inference.latent_map(name, "pca", n=500).from_disk


def test_every_map_size_is_cut_from_one_full_map_that_survives_a_restart(monkeypatch):
    """Defect: only 10,000-digit maps were saved, so a 5,000-digit t-SNE ran again after every restart and
    each size had its own axes. Now the full map is built once, saved, and every size is cut from it."""
    name = KINDS["conv-vae"]
    folder = inference.STORE.entry(name).folder
    (folder / "latent_map_pca.npz").unlink(missing_ok=True)
    maps.clear_cache()
    small = inference.latent_map(name, "pca", n=500)  # the first request of any size builds the full map
    assert (folder / "latent_map_pca.npz").is_file()

    def refuse(*args, **kwargs):
        raise AssertionError("the map was computed again")

    monkeypatch.setattr(maps.PCAProjection, "fit", refuse)
    maps.clear_cache()  # a restart
    larger = inference.latent_map(name, "pca", n=2000)
    assert larger.from_disk and larger.n == 2000
    where = {int(i): k for k, i in enumerate(larger.indices)}
    shared = [k for k, i in enumerate(small.indices) if int(i) in where]
    assert len(shared) > 50  # the same digits sit at the same places: one set of axes for every size
    np.testing.assert_array_equal(small.coords[shared], larger.coords[[where[int(small.indices[k])] for k in shared]])


def test_lock_tables_do_not_grow_with_every_key():
    from vaedemo.inference.store import KeyedLocks

    locks = KeyedLocks()
    for key in range(500):
        with locks.hold(("folder", key)):
            assert len(locks) == 1
    assert len(locks) == 0
    inference.STORE.entry("tiny-ae")
    assert len(inference.STORE._loading) == 0 and len(maps._BUILDERS) == 0


def test_loading_a_model_reads_its_weights_once(monkeypatch):
    """Defect: the store hashed the weights file again right after loading it. The hash is now read only
    when a latent map needs it."""
    from pathlib import Path

    from vaedemo.inference.store import ModelStore

    reads = []
    real = Path.read_bytes

    def counting(self):
        if self.name == "model.safetensors":
            reads.append(self)
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", counting)
    ModelStore().entry("tiny-ae")
    assert len(reads) == 1
