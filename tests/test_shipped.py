"""The pretrained checkpoints in checkpoints/: they load, match their configs, and reproduce their cards."""

import json
from pathlib import Path

import pytest

from vaedemo.checkpoints import load_folder, read_tensors, scan_checkpoints
from vaedemo.evaluation import full_evaluation

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints"
EXPECTED = ["ae-mnist", "conv-vae-mnist", "cvae-mnist", "gan-mnist", "vae-mnist", "vae-mnist-2d"]
KINDS = {"ae-mnist": ("ae", 4), "vae-mnist": ("vae", 200), "vae-mnist-2d": ("vae", 2),
         "cvae-mnist": ("cvae", 16), "conv-vae-mnist": ("conv-vae", 16), "gan-mnist": ("gan", 32)}
GENERATIVE = ["conv-vae-mnist", "cvae-mnist", "gan-mnist", "vae-mnist", "vae-mnist-2d"]  # scored on their samples
# Evaluation is seeded and runs on the CPU here, so it reproduces to float rounding; the
# tolerance covers a different BLAS or CPU summing in another order.
REL_TOL = 2e-3


@pytest.fixture(autouse=True)
def shipped_dir(monkeypatch):
    monkeypatch.setenv("VAEDEMO_CHECKPOINT_DIR", str(SHIPPED))
    monkeypatch.setenv("VAEDEMO_DEVICE", "cpu")


def test_every_shipped_checkpoint_loads():
    infos = {i.name: i for i in scan_checkpoints()}
    assert sorted(infos) == EXPECTED
    for name, info in infos.items():
        assert info.ok, f"{name}: {info.reason}"
        assert (info.kind, info.latent_dim) == KINDS[name]


@pytest.mark.parametrize("name", EXPECTED)
def test_config_matches_weights_and_records_its_command(name):
    folder = SHIPPED / name
    model, config = load_folder(folder)
    tensors = read_tensors(folder / "model.safetensors")
    buffers = {name for name, _ in model.named_buffers()}  # batch-norm statistics, spectral norm's vectors
    assert sum(t.numel() for k, t in tensors.items() if k not in buffers) \
        == config["model"]["num_parameters"] == model.num_parameters()
    assert config["command"].startswith("python -m vaedemo train") and f"--name {name}" in config["command"]
    assert config["data"]["dataset"] == "mnist-10k"
    card = (folder / "README.md").read_text()
    assert config["command"] in card and "## Limits" in card
    for method in ("pca", "tsne"):
        assert (folder / f"latent_map_{method}.npz").is_file()


def _close(a, b):
    return abs(a - b) <= REL_TOL * max(1.0, abs(b))


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPECTED)
def test_evaluate_reproduces_recorded_metrics(name):
    recorded = json.loads((SHIPPED / name / "config.json").read_text())["metrics"]["evaluation"]
    # IWAE with k = 500 is the slow part; it is re-checked for the 2-D model, whose card cites it too.
    k = recorded.get("iwae_k", 0) if name == "vae-mnist-2d" else 0
    samples = recorded.get("samples", {}).get("n_samples", 0)
    fresh = full_evaluation(name, iwae_k=k, binarized=recorded["binarized"], seed=recorded["seed"], samples=samples)
    for key in ("neg_elbo", "recon_nats", "kl_nats", "mse", "pca_mse", "active_units", "inverter_mse",
                "inversion_accuracy", *(["iwae_nll"] if k else [])):
        if key in recorded:
            assert _close(fresh[key], recorded[key]), (key, fresh[key], recorded[key])
    if samples:
        for key in ("confident_share", "class_entropy", "frechet_distance", "precision", "recall"):
            assert _close(fresh["samples"][key], recorded["samples"][key]), key


@pytest.mark.parametrize("name", GENERATIVE)
def test_every_generative_model_records_the_shared_yardsticks(name):
    samples = json.loads((SHIPPED / name / "config.json").read_text())["metrics"]["evaluation"]["samples"]
    assert samples["n_samples"] == 1000 and samples["pr_k"] == 3 and samples["n_reference"] == 1000
    assert samples["frechet_distance"] > 0 and 0 <= samples["precision"] <= 1 and 0 <= samples["recall"] <= 1
    card = (SHIPPED / name / "README.md").read_text()
    assert "an FID for MNIST, on the project's own classifier" in card and "Kynkäänniemi" in card


@pytest.mark.parametrize("name", ["vae-mnist", "conv-vae-mnist"])
def test_recorded_metrics_meet_the_issue_targets(name):
    """The quality targets the model cards mark as met (cards.TARGETS), against the recorded evaluation."""
    from vaedemo.cards import TARGETS

    recorded = json.loads((SHIPPED / name / "config.json").read_text())["metrics"]["evaluation"]
    flat = {**recorded, **recorded.get("samples", {})}
    assert recorded["binarized"] and recorded.get("samples", {}).get("n_samples") == 1000
    if "iwae_nll" in TARGETS[name]:
        assert recorded["iwae_k"] == 500
    for key, (op, target) in TARGETS[name].items():
        assert (flat[key] <= target) if op == "≤" else (flat[key] >= target), (key, flat[key], target)
    assert "— missed" not in (SHIPPED / name / "README.md").read_text()


def test_gan_mnist_against_its_targets_and_its_card_says_which_it_meets():
    """gan-mnist (issue 16): a Fréchet distance below vae-mnist's, a balanced class histogram, inversions the
    classifier reads as the true digit; its confident share (0.63 against 0.9) is a target it misses, and
    its card must say so rather than hide it."""
    from vaedemo.cards import TARGETS

    recorded = json.loads((SHIPPED / "gan-mnist" / "config.json").read_text())["metrics"]["evaluation"]
    flat = {**recorded, **recorded["samples"]}
    vae = json.loads((SHIPPED / "vae-mnist" / "config.json").read_text())["metrics"]["evaluation"]["samples"]
    assert not recorded["binarized"] and recorded["samples"]["n_samples"] == 1000
    assert flat["frechet_distance"] < vae["frechet_distance"]
    assert flat["class_entropy"] >= 2.2 and flat["inversion_accuracy"] >= 0.9
    card = (SHIPPED / "gan-mnist" / "README.md").read_text()
    for key, (op, target) in TARGETS["gan-mnist"].items():
        met = (flat[key] <= target) if op == "≤" else (flat[key] >= target)
        assert f"{op} {target:g} — {'met' if met else 'missed'}" in card, key
    assert f"≤ {round(vae['frechet_distance'], 2):g} — met" in card
