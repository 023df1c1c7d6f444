"""The GAN: its game trains, it saves and loads, inversion refines the inverter's guess, and the yardsticks
(Fréchet distance, precision and recall) tell real digits from noise."""

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vaedemo.checkpoints import load_folder, save_checkpoint
from vaedemo.classifier import load_classifier
from vaedemo.data import mnist10k, to_unit_float
from vaedemo.distributions import prior_draws
from vaedemo.metrics import evaluate, frechet_distance, precision_recall, sample_fidelity
from vaedemo.models import GAN, build_model
from vaedemo.training import TrainConfig, diff_augment, train

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints"
TINY = dict(latent_dim=8, g_channels=(16, 8), d_channels=(8, 16), e_channels=(8, 16), hidden_dim=32,
            inversion_steps=20)


@pytest.fixture(scope="module")
def small():
    return mnist10k().limit(512)


@pytest.fixture(scope="module")
def trained(small):
    """A tiny GAN after three short epochs, and its history and progress reports."""
    torch.manual_seed(0)
    model = build_model("gan", **TINY)
    events = []
    result = train(model, small, TrainConfig(epochs=3, batch_size=64, lr=1e-3, device="cpu"),
                   progress=events.append, report_every=2)
    return model, result, events


@pytest.fixture(scope="module")
def reader(monkeypatch_module):
    monkeypatch_module.setenv("VAEDEMO_CHECKPOINT_DIR", str(SHIPPED))
    return load_classifier()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_the_registry_entry_is_an_implicit_model():
    model = build_model("gan", **TINY)
    assert isinstance(model, GAN) and model.kind == "gan" and model.implicit
    assert not model.variational and not model.conditional and model.prior is None
    assert not build_model("vae", latent_dim=2).implicit
    z = prior_draws(model, 5, seed=1)
    assert z.shape == (5, 8) and model.decode(z).shape == (5, 1, 28, 28)
    assert model.discriminate(torch.rand(5, 1, 28, 28)).shape == (5,)
    with pytest.raises(ValueError, match="no ELBO"):
        model(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match="two whole numbers"):
        build_model("gan", g_channels=(8,))


def test_a_tiny_gan_trains_and_both_losses_change(trained):
    model, result, events = trained
    assert [h.epoch for h in result.history] == [1, 2, 3] and result.best_epoch == 3  # the last epoch is kept
    for h in result.history:
        assert h.train_loss == h.g_loss and np.isfinite([h.g_loss, h.d_loss, h.val_loss, h.val_recon]).all()
        assert 0 < h.d_fake < 1 and 0 < h.d_real < 1
    steps = [e for e in events if e.stats is None]
    assert steps and all(set(e.losses) == {"generator", "discriminator"} and e.train_loss == e.losses["generator"]
                         for e in steps)
    g = [e.losses["generator"] for e in steps]
    d = [e.losses["discriminator"] for e in steps]
    assert max(g) - min(g) > 1e-3 and max(d) - min(d) > 1e-3
    assert result.history[0].g_loss != result.history[-1].g_loss
    # both optimizers' states (and the inverter's) come back for a resume
    prefixes = {k.split(".", 1)[0] for k in result.optimizer_state}
    assert prefixes == {"generator", "discriminator", "inverter"}
    assert not model.training and not model.generator_ema.training


def test_other_models_have_no_gan_losses(small):
    torch.manual_seed(0)
    events = []
    result = train(build_model("vae", latent_dim=2, hidden_dim=16), small.limit(128),
                   TrainConfig(epochs=1, batch_size=64), progress=events.append, report_every=1)
    assert result.history[0].g_loss is None and result.history[0].d_real is None
    assert all(e.losses is None for e in events)


def test_resume_continues_like_an_uninterrupted_run(small):
    torch.manual_seed(0)
    start = build_model("gan", **TINY)
    config = TrainConfig(epochs=2, batch_size=128, lr=1e-3, device="cpu", precision="fp32")
    whole = train(copy.deepcopy(start), small, config)
    first = train(copy.deepcopy(start), small, TrainConfig(**{**config.__dict__, "epochs": 1}))
    second = train(first.model, small, TrainConfig(**{**config.__dict__, "epochs": 1}),
                   resume_state=first.optimizer_state, start_epoch=1)
    assert second.history[0].epoch == 2
    for (k, a), b in zip(whole.model.state_dict().items(), second.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=k)


def test_stop_signal_and_bad_settings(small):
    calls = []
    result = train(build_model("gan", **TINY), small, TrainConfig(epochs=2, batch_size=64),
                   stop=lambda: calls.append(1) or len(calls) > 3)
    assert result.stopped == "stop" and not result.history
    with pytest.raises(ValueError, match="own moving average"):
        train(build_model("gan", **TINY), small, TrainConfig(epochs=1, ema=0.9))
    with pytest.raises(ValueError, match="MMD"):
        train(build_model("gan", **TINY), small, TrainConfig(epochs=1, mmd=1.0))


@pytest.mark.parametrize("variant", [dict(d_norm="batch", d_hidden=32, g_hidden=32),
                                     dict(d_norm="none", d_augment="translation,cutout")])
def test_other_network_shapes_train_and_bad_ones_are_refused(small, variant):
    """A fully connected layer in either network (InfoGAN's MNIST nets) and DCGAN's batch-normalised
    discriminator instead of spectral normalisation: both players still learn; silly settings get a sentence."""
    torch.manual_seed(0)
    model = build_model("gan", **{**TINY, **variant})
    before = copy.deepcopy(model.state_dict())
    result = train(model, small, TrainConfig(epochs=1, batch_size=64, lr=1e-3, device="cpu"))
    stats = result.history[-1]
    assert np.isfinite(stats.g_loss) and np.isfinite(stats.d_loss) and 0 < stats.d_real < 1 and 0 < stats.d_fake < 1
    for net in ("generator", "discriminator"):
        assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items() if k.startswith(net))
    with pytest.raises(ValueError, match="d_norm must be"):
        build_model("gan", **{**TINY, "d_norm": "layer"})
    with pytest.raises(ValueError, match="g_hidden must be a whole number"):
        build_model("gan", **{**TINY, "g_hidden": -1})
    with pytest.raises(ValueError, match="d_augment must be one of"):
        build_model("gan", **{**TINY, "d_augment": "rotation"})


def test_diff_augment_moves_and_cuts_each_image_its_own_way_and_passes_gradients():
    """DiffAugment: what the discriminator sees is moved (and cut) per image, differentiably, so the
    generator learns through it; "none" leaves the images alone."""
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 4:24, 4:24] = 1.0  # a 20x20 square of ink inside a 4-pixel margin: a shift of up to 4 keeps it whole
    x.requires_grad_(True)
    assert diff_augment(x, "none") is x
    torch.manual_seed(0)
    moved = diff_augment(x, "translation")
    assert moved.shape == x.shape
    assert torch.allclose(moved.sum((1, 2, 3)), x.sum((1, 2, 3)))  # nothing falls off, nothing is added
    assert len({tuple(m.nonzero()[0].tolist()) for m in moved[:, 0].detach()}) > 10  # each its own offset
    cut = diff_augment(x, "translation,cutout")
    lost = 400 - cut.detach().sum((1, 2, 3))
    assert (lost >= 0).all() and (lost <= 14 * 14).all() and (lost > 0).float().mean() > 0.5
    cut.sum().backward()
    assert x.grad is not None and x.grad.sum() > 0


def test_save_and_load_give_identical_samples_and_codes(trained, tmp_path):
    model, _, _ = trained
    save_checkpoint(model, "tiny-gan", meta={}, root=tmp_path)
    loaded, config = load_folder(tmp_path / "tiny-gan")
    assert config["model"]["kind"] == "gan" and isinstance(loaded, GAN)
    assert tuple(loaded.config.g_channels) == TINY["g_channels"]
    z = prior_draws(loaded, 16, seed=3)
    torch.testing.assert_close(prior_draws(model, 16, seed=3), z)
    with torch.no_grad():
        assert torch.equal(model.decode(z), loaded.decode(z))
        x = to_unit_float(mnist10k().x_val[:4])
        assert torch.equal(model.encode(x)[0], loaded.encode(x)[0])


def test_inversion_refines_the_inverters_guess(trained):
    model, _, _ = trained
    x = to_unit_float(mnist10k().x_val[:64])
    guess, refined = model.invert(x)
    with torch.no_grad():
        before, after = model.inversion_loss(guess, x), model.inversion_loss(refined, x)
        mse = [(model.decode(z) - x).pow(2).mean().item() for z in (guess, refined)]
    assert after.mean() < before.mean() and (after <= before + 1e-3).float().mean() > 0.95
    assert mse[1] < mse[0]
    assert torch.equal(model.invert(x, steps=0)[1], guess)


def test_encode_is_deterministic_batch_independent_and_leaves_the_weights_alone(trained):
    model, _, _ = trained
    x = to_unit_float(mnist10k().x_val[:20])
    with torch.no_grad():
        z, logvar = model.encode(x)
        assert logvar is None and z.shape == (20, 8)
        assert torch.equal(model.encode(x)[0], z)
        torch.testing.assert_close(model.encode(x[:5])[0], z[:5], rtol=1e-4, atol=1e-4)
    with torch.inference_mode():
        torch.testing.assert_close(model.encode(x)[0], z)
    model.train()  # the caller's mode does not change the code
    torch.testing.assert_close(model.encode(x)[0], z)
    model.eval()
    assert all(p.grad is None for p in model.parameters())


def test_evaluate_reports_inversion_and_no_likelihood(trained, reader):
    model, _, _ = trained
    data = mnist10k()
    out = evaluate(model, data.x_val[:100], data.y_val[:100], iwae_k=10, classifier=reader)
    for absent in ("neg_elbo", "iwae_nll", "active_units", "kl_nats"):
        assert absent not in out
    assert 0 < out["mse"] < out["inverter_mse"] + 1e-6 and out["recon_nats"] > 0
    assert 0 <= out["inversion_accuracy"] <= 1 and out["inversion_steps"] == TINY["inversion_steps"]
    assert "inversion_accuracy" not in evaluate(model, data.x_val[:10], data.y_val[:10])  # no classifier, no figure


# ---------------------------------------------------------------------------------- the yardsticks


def test_frechet_distance_matches_the_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert abs(frechet_distance(a, a)) < 1e-6
    shifted = a + np.array([3.0, 0.0, 4.0])  # same covariance, means 5 apart
    assert abs(frechet_distance(a, shifted) - 25.0) < 1e-6
    # N(0, I) against N(0, 4I) in 3-D: Tr(I + 4I - 2 * 2I) = 3
    assert abs(frechet_distance(rng.normal(size=(20000, 3)), 2 * rng.normal(size=(20000, 3))) - 3.0) < 0.15
    with pytest.raises(ValueError):
        frechet_distance(a, a[:, :2])


def test_precision_and_recall_see_coverage_and_fidelity():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(1000, 4))
    p, r = precision_recall(real, rng.normal(size=(1000, 4)))
    assert p > 0.85 and r > 0.85
    # collapsed onto the mode: real-looking, no coverage
    p, r = precision_recall(real, 0.1 * rng.normal(size=(1000, 4)))
    assert p > 0.95 and r < 0.2
    p, r = precision_recall(real, rng.normal(size=(1000, 4)) + 20)
    assert p == 0 and r == 0


def test_real_digits_against_themselves_and_noise(reader):
    x = to_unit_float(mnist10k().x_val)  # the 1,000 validation digits, split in two halves
    same = sample_fidelity(x[:500], x[500:], reader)
    noise = sample_fidelity(torch.rand(500, 1, 28, 28), x[500:], reader)
    assert same["frechet_distance"] < 0.02 * noise["frechet_distance"]
    assert same["precision"] > 0.8 and same["recall"] > 0.8
    assert noise["precision"] < 0.05 and noise["recall"] < 0.05
    assert reader.features(x[:3]).shape == (3, 128)


@pytest.mark.slow
def test_cli_trains_and_evaluates_a_tiny_gan(tmp_path):
    shutil.copytree(SHIPPED / "classifier-mnist", tmp_path / "classifier-mnist")
    env = {**os.environ, "VAEDEMO_CHECKPOINT_DIR": str(tmp_path), "VAEDEMO_DEVICE": "cpu"}

    def cli(*args):
        proc = subprocess.run([sys.executable, "-m", "vaedemo", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    cli("train", "--model", "gan", "--epochs", "1", "--max-train", "256", "--latent-dim", "8", "--hidden-dim", "32",
        "--lr", "2e-4", "--d-norm", "batch", "--d-augment", "translation", "--g-hidden", "48", "--d-hidden", "24",
        "--name", "g", "--quiet")
    config = json.loads((tmp_path / "g" / "config.json").read_text())
    assert (config["model"]["config"]["d_norm"], config["model"]["config"]["d_augment"]) == ("batch", "translation")
    assert (config["model"]["config"]["g_hidden"], config["model"]["config"]["d_hidden"]) == (48, 24)
    assert config["model"]["kind"] == "gan" and config["command"].startswith("python -m vaedemo train --model gan")
    assert config["history"][0]["g_loss"] is not None
    assert "inversion_accuracy" in config["metrics"]["validation"]
    cli("card", "g")
    card = (tmp_path / "g" / "README.md").read_text()
    assert "batch normalisation in the discriminator" in card and "spectrally" not in card  # as it was trained
    assert "DiffAugment's random translations" in card and "cutout" not in card
    np.savez(tmp_path / "few.npz", x=mnist10k().x_val[:100], y=mnist10k().y_val[:100])
    out = json.loads(cli("evaluate", "g", "--json", "--data", str(tmp_path / "few.npz"), "--samples", "100"))
    assert out["kind"] == "gan" and "neg_elbo" not in out and 0 <= out["inversion_accuracy"] <= 1
    assert {"frechet_distance", "precision", "recall", "confident_share"} <= set(out["samples"])
    bad = subprocess.run([sys.executable, "-m", "vaedemo", "train", "--model", "gan", "--prior-components", "10",
                          "--name", "h"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "prior" in bad.stderr and "Traceback" not in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "vaedemo", "train", "--model", "vae", "--d-norm", "batch",
                          "--name", "h"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "discriminator" in bad.stderr and not (tmp_path / "h").exists()
    bad = subprocess.run([sys.executable, "-m", "vaedemo", "train", "--model", "ae", "--g-hidden", "64",
                          "--name", "h"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "hidden layers" in bad.stderr and not (tmp_path / "h").exists()
