"""The command line, run as a user would: train, evaluate --json, list, then load_model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, ckdir, check=True):
    env = {**os.environ, "VAEDEMO_CHECKPOINT_DIR": str(ckdir), "VAEDEMO_DEVICE": "cpu"}
    proc = subprocess.run([sys.executable, "-m", "vaedemo", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.slow
def test_train_then_evaluate_prints_real_metrics(tmp_path, monkeypatch):
    cli("train", "--model", "vae", "--epochs", "2", "--name", "t", "--quiet", ckdir=tmp_path)
    out = cli("evaluate", "t", "--json", "--iwae-k", "20", ckdir=tmp_path)
    metrics = json.loads(out.stdout)
    assert metrics["kind"] == "vae" and metrics["n"] == 1000
    # An untrained VAE scores ~545 nats; two epochs must already be far better, and IWAE ≤ ELBO.
    assert 80 < metrics["neg_elbo"] < 300
    assert metrics["iwae_nll"] <= metrics["neg_elbo"] + 0.5
    assert 0 < metrics["mse"] < 0.2 and 0 < metrics["active_units"] <= 200

    config = json.loads((tmp_path / "t" / "config.json").read_text())
    assert config["command"].startswith("python -m vaedemo train --model vae --epochs 2")
    assert len(config["history"]) == 2 and config["data"]["dataset"] == "mnist-10k"

    monkeypatch.setenv("VAEDEMO_CHECKPOINT_DIR", str(tmp_path))
    import vaedemo

    model = vaedemo.load_model("t")
    assert model.kind == "vae" and model.latent_dim == 200 and not model.training
    x = torch.rand(3, 1, 28, 28)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (3, 200)
    assert model.decode(mu).shape == (3, 1, 28, 28)

    listing = cli("list", ckdir=tmp_path).stdout
    assert "t " in listing and "vae" in listing


def test_bad_arguments_give_a_sentence_not_a_traceback(tmp_path):
    proc = cli("train", "--model", "vae", "--epochs", "0", "--name", "x", ckdir=tmp_path, check=False)
    assert proc.returncode == 2 and "epochs must be" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("train", "--model", "vae", "--name", "../app", ckdir=tmp_path, check=False)
    assert proc.returncode == 2 and "not a valid checkpoint name" in proc.stderr
    proc = cli("evaluate", "nope", ckdir=tmp_path, check=False)
    assert proc.returncode == 2 and "no checkpoint named" in proc.stderr
    proc = cli("train", "--dataset", "mnist", "--name", "m", "--epochs", "1", ckdir=tmp_path, check=False)
    assert proc.returncode == 2 and "mnist-10k" in proc.stderr


def test_channels_and_mmd_options_reach_the_saved_model(tmp_path):
    cli("train", "--model", "conv-vae", "--latent-dim", "3", "--channels", "4,8,16", "--hidden-dim", "32",
        "--mmd", "10", "--epochs", "1", "--max-train", "300", "--iwae-k", "0", "--name", "w", "--quiet", ckdir=tmp_path)
    config = json.loads((tmp_path / "w" / "config.json").read_text())
    assert config["model"]["config"]["channels"] == [4, 8, 16] and config["training"]["mmd"] == 10
    cli("card", "w", ckdir=tmp_path)
    card = (tmp_path / "w" / "README.md").read_text()
    assert "MMD penalty (weight 10" in card and '"channels": [4, 8, 16]' in card
    proc = cli("train", "--model", "vae", "--channels", "4,8", "--name", "v", ckdir=tmp_path, check=False)
    assert proc.returncode == 2 and "three widths" in proc.stderr
    proc = cli("train", "--model", "ae", "--channels", "8,0,32", "--name", "z", ckdir=tmp_path, check=False)
    assert proc.returncode == 2 and "between 1 and 1024" in proc.stderr and not (tmp_path / "z").exists()
    proc = cli("train", "--model", "vae", "--channels", "4,8,16", "--name", "v", ckdir=tmp_path, check=False)
    assert proc.returncode == 2 and "convolutional models" in proc.stderr


def test_learnt_prior_and_ema_options_reach_the_saved_model(tmp_path):
    cli("train", "--model", "vae", "--latent-dim", "3", "--hidden-dim", "32", "--prior-components", "7",
        "--ema", "0.99", "--epochs", "1", "--max-train", "300", "--iwae-k", "5", "--name", "p", "--quiet",
        ckdir=tmp_path)
    config = json.loads((tmp_path / "p" / "config.json").read_text())
    assert config["model"]["config"]["prior_components"] == 7 and config["training"]["ema"] == 0.99
    cli("card", "p", ckdir=tmp_path)
    card = (tmp_path / "p" / "README.md").read_text()
    assert "mixture of 7 Gaussians" in card and "moving average" in card
    proc = cli("train", "--model", "ae", "--prior-components", "3", "--name", "a", ckdir=tmp_path, check=False)
    assert proc.returncode == 2 and "no prior to learn" in proc.stderr
    proc = cli("train", "--model", "vae", "--prior-components", "3", "--mmd", "5", "--name", "b", "--epochs", "1",
               "--max-train", "300", ckdir=tmp_path, check=False)
    assert proc.returncode == 2 and "learnt prior" in proc.stderr
