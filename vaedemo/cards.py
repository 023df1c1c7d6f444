"""Model cards: the README.md beside each shipped checkpoint, written from its config.json."""

from __future__ import annotations

import json
from pathlib import Path

from .checkpoints import CONFIG, find, json_safe, read_config, write_bytes_atomic
from .data import MNIST_CREDIT

# The targets the pretrained-checkpoints issue sets, per shipped model, written beside what was measured.
TARGETS = {
    "vae-mnist": {"neg_elbo": ("≤", 100.0), "iwae_nll": ("≤", 92.0), "confident_share": ("≥", 0.7),
                  "class_entropy": ("≥", 2.2)},
    "conv-vae-mnist": {"confident_share": ("≥", 0.7), "class_entropy": ("≥", 2.2)},
    "ae-mnist": {"mse_vs_pca": ("≤", 0.5)},
    # issue 16; the Fréchet distance must beat vae-mnist's recorded one (read from its config.json, GAN_FD_BAR)
    "gan-mnist": {"confident_share": ("≥", 0.9), "class_entropy": ("≥", 2.2), "inversion_accuracy": ("≥", 0.9)},
}
GAN_FD_BAR = "vae-mnist"  # the checkpoint whose Fréchet distance gan-mnist's must be below
SAMPLE_NOTE = (
    "Sample quality is scored by `classifier-mnist` (a small CNN trained on the training split only, "
    "{acc} validation accuracy) on 1,000 prior samples at temperature 1. Samples that blend two classes, "
    "drawn from places the prior covers but no training digit maps to, are read as ambiguous; that is "
    "what the confidence share measures."
)
FIDELITY_NOTE = (
    "The Fréchet distance is an FID for MNIST, on the project's own classifier: the Fréchet distance "
    "between Gaussians fitted to `classifier-mnist`'s penultimate features (128 units) of the samples and of "
    "the {n_ref:,} validation digits (lower is better; the validation digits split in two halves score about 20, "
    "uniform noise about 6,900). Precision is the share of samples inside the validation digits' feature "
    "manifold, recall the share of validation digits inside the samples' (Kynkäänniemi et al. 2019, "
    "k = {k} nearest neighbours): precision asks whether the samples look like digits, recall whether they "
    "cover the digits' variety."
)
GAN_NOTE = (
    "A GAN is an implicit model (암시적 모델): the generator (생성자) turns z ~ N(0, I) into a digit and the "
    "discriminator (판별자) learns to tell its digits from real ones; neither defines p(x), so there is no ELBO, "
    "no IWAE bound and no posterior here. Trained with the non-saturating loss and {d_norm}{augment}; the saved generator is a moving average of the trained one's weights (decay {ema:g}). "
    "Its \"reconstruction\" of a digit is GAN inversion, a search for the nearest digit it can make: an inverter "
    "network, trained on the generator's own samples, guesses z, and {steps} Adam steps refine it to "
    "minimise the reconstruction error (plus |z|²/2, to stay where the prior has mass). The last epoch's "
    "weights are the ones saved."
)

D_NORM_WORDS = {
    "spectral": "a spectrally normalised discriminator (Miyato et al. 2018)",
    "batch": "batch normalisation in the discriminator, as DCGAN's (Radford et al. 2016)",
}

AUGMENT_WORDS = {  # DiffAugment policies (models.GAN_AUGMENTS) in a card's sentence
    "none": "",
    "translation": ", with DiffAugment's random translations of every image the discriminator sees (Zhao et al. 2020)",
    "translation,cutout": ", with DiffAugment's random translations and cutouts of every image the discriminator "
                          "sees (Zhao et al. 2020)",
}

INTENDED = {
    "gan": "Setting an implicit model beside the explicit ones: sharper samples and no likelihood; reconstructions, "
           "maps and walks between real digits through GAN inversion.",
    "ae": "Showing what a deterministic code keeps: reconstructions, a 4-D latent map, and why sampling an AE's "
          "latent space gives poor digits.",
    "vae": "The lecture's MLP VAE: reconstructions, ELBO scores, prior samples, interpolation and traversal along "
           "the most informative dimensions.",
    "conv-vae": "A convolutional VAE (latent 16): sampling and walking between digits with a small, dense latent "
                "space, and comparing a conv network with the lecture's MLP at a similar ELBO.",
    "cvae": "Asking for a chosen digit: the label is an input, so the latent code holds style (slant, thickness) "
            "alone.",
}


def record_evaluation(name: str, metrics: dict, command: str) -> None:
    """Store ``metrics`` and the command that produced them in the checkpoint's config.json (atomically)."""
    folder = find(name)
    config = read_config(folder)
    config.setdefault("metrics", {})["evaluation"] = {**metrics, "command": command}
    write_bytes_atomic(folder / CONFIG, json.dumps(json_safe(config), indent=2).encode())


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) and abs(v) < 10 else (f"{v:.2f}" if isinstance(v, float) else str(v))


def _metric_rows(ev: dict, targets: dict, learnt_prior: bool = False) -> list[str]:
    rows = []
    flat = {k: v for k, v in ev.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    flat.update({k: v for k, v in (ev.get("samples") or {}).items() if isinstance(v, float)})
    labels = {
        "neg_elbo": "−ELBO (nats)", "iwae_nll": f"IWAE NLL, k = {ev.get('iwae_k', '?')} (nats)",
        "recon_nats": "reconstruction term (nats)", "kl_nats": "KL term (nats)", "mse": "reconstruction MSE",
        "pca_mse": "PCA baseline MSE (same number of components)", "mse_vs_pca": "MSE ÷ PCA baseline",
        "active_units": ("active units (variance of the posterior mean > 0.01)" if learnt_prior
                         else "active units (KL > 0.01 nats)"),
        "confident_share": "samples classified with confidence ≥ 0.9",
        "class_entropy": "entropy of the samples' class histogram (ln 10 = 2.303)",
        "frechet_distance": "Fréchet distance to the validation digits (an FID for MNIST, on classifier-mnist)",
        "precision": f"precision (Kynkäänniemi et al. 2019, k = {(ev.get('samples') or {}).get('pr_k', 3)})",
        "recall": f"recall (k = {(ev.get('samples') or {}).get('pr_k', 3)})",
        "inverter_mse": "MSE of the inverter's first guess",
        "inversion_accuracy": "inversion reconstructions the classifier reads as the true digit",
    }
    if ev.get("kind") == "gan":
        labels.update(mse="reconstruction MSE (GAN inversion)",
                      recon_nats="reconstruction error of the inversion (nats)")
    for key, label in labels.items():
        if key in flat:
            target = targets.get(key)
            mark = ""
            if target:
                op, t = target
                ok = flat[key] <= t if op == "≤" else flat[key] >= t
                mark = f"{op} {t:g} — {'met' if ok else 'missed'}"
            rows.append(f"| {label} | {_fmt(flat[key])} | {mark} |")
    return rows


def render_card(config: dict) -> str:
    model = config["model"]
    kind = model["kind"]
    ev = (config.get("metrics") or {}).get("evaluation") or {}
    training = config.get("training") or {}
    data = config.get("data") or {}
    lines = [
        f"# {config.get('name')}",
        "",
        f"A `{kind}` model with a {model['config'].get('latent_dim')}-dimensional latent space and "
        f"{model.get('num_parameters', 0):,} parameters, trained by vaedemo's own training code.",
        "",
        "## Data",
        f"`{data.get('dataset', '?')}`: {data.get('n_train', '?')} training and {data.get('n_val', '?')} validation "
        f"digits (fixed split, seed {data.get('split_seed', 0)}). {MNIST_CREDIT}",
        "",
        "## How it was made",
        "```bash",
        config.get("command", "(command not recorded)"),
        "```",
        (f"Epochs run: {training.get('epochs_done', '?')}" + (
            "" if kind == "gan" else
            f", best validation epoch: {training.get('best_epoch', '?')} (its weights are the ones saved)")
         + f". Model config: `{json.dumps(model['config'])}`."),
    ]
    if kind == "gan":
        d_norm = D_NORM_WORDS.get(model["config"].get("d_norm", "spectral"), "an unnormalised discriminator")
        lines += ["", GAN_NOTE.format(ema=model["config"].get("ema", 0), steps=model["config"].get("inversion_steps"),
                                      d_norm=d_norm,
                                      augment=AUGMENT_WORDS.get(model["config"].get("d_augment", "none"), ""))]
    components = model["config"].get("prior_components") or 0
    if components:
        lines += [
            "",
            f"Its prior is learnt (`--prior-components {components}`): a mixture of {components} Gaussians "
            "trained with the encoder and decoder instead of N(0, I), in the spirit of Tomczak & Welling's "
            "VampPrior (2018). Under N(0, I) much of the prior's mass lies where no digit's code goes, and "
            "samples from there decode to blends; the learnt prior follows the codes, so prior samples read "
            "as digits far more often and the ELBO improves too. Its KL term has no closed form and is "
            "estimated with one draw per digit.",
        ]
    if training.get("ema"):
        lines += [
            "",
            f"The saved weights are an exponential moving average of the training weights (decay "
            f"{training['ema']:g}, `--ema`), which generalises a little better than the last step's.",
        ]
    if training.get("mmd"):
        lines += [
            "",
            f"Trained with an MMD penalty (weight {training['mmd']:g}, `--mmd`) that pulls the codes' overall "
            "distribution onto the N(0, I) prior (InfoVAE, Zhao et al. 2019): fewer prior samples fall between "
            "the digit clusters and decode to blends, for a few nats of ELBO.",
        ]
    lines += [
        "",
        "## Metrics on the validation split",
    ]
    if ev:
        lines += [
            f"Measured with `{ev.get('command', 'python -m vaedemo evaluate')}`"
            f" ({'stochastically binarized digits' if ev.get('binarized') else 'grey-level digits'},"
            f" seed {ev.get('seed', 0)}).",
            "",
            "| metric | value | target (from the project's issue) |",
            "| --- | --- | --- |",
            *_metric_rows(ev, _targets(config.get("name")), learnt_prior=bool(components)),
        ]
        if ev.get("samples"):
            lines += ["", SAMPLE_NOTE.format(acc=_classifier_accuracy())]
            if "frechet_distance" in ev["samples"]:
                lines += ["", FIDELITY_NOTE.format(n_ref=ev["samples"].get("n_reference", 1000),
                                                   k=ev["samples"].get("pr_k", 3))]
    else:
        lines.append("Not evaluated yet: run `python -m vaedemo evaluate NAME --record`.")
    lines += [
        "",
        "## Intended use",
        INTENDED.get(kind, "Exploring a latent space in vaedemo."),
        "",
        "## Limits",
        "- Trained on 9,000 MNIST digits only: expect it to fail on letters, photos and digits drawn very unlike "
        "MNIST.",
        ("- An implicit model: it gives no likelihood, and its reconstructions are the nearest digits it can make, "
         "not a code it was trained to keep." if kind == "gan" else
         "- Likelihoods are under a Bernoulli decoder on 28×28 pixels; they compare models on the same data, not "
         "across datasets."),
        "- Not for any decision about people: it is a teaching and exploration model.",
        "",
    ]
    return "\n".join(lines)


def _targets(name: str | None) -> dict:
    """The card's targets; gan-mnist's Fréchet distance must be below vae-mnist's recorded one."""
    targets = dict(TARGETS.get(name, {}))
    if name == "gan-mnist":
        try:
            bar = read_config(find(GAN_FD_BAR))["metrics"]["evaluation"]["samples"]["frechet_distance"]
            targets["frechet_distance"] = ("≤", round(float(bar), 2))
        except (ValueError, KeyError, TypeError):
            pass
    return targets


def _classifier_accuracy() -> str:
    try:
        from .checkpoints import read_config as _read
        from .classifier import DEFAULT_NAME

        acc = _read(find(DEFAULT_NAME), kinds=("classifier",))["metrics"]["val_accuracy"]
        return f"{100 * acc:.1f}%"
    except (ValueError, KeyError):
        return "unknown"


def write_card(name: str) -> Path:
    folder = find(name)
    path = folder / "README.md"
    write_bytes_atomic(path, render_card(read_config(folder)).encode())
    return path
