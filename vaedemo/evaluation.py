"""The figures a model card reports: validation metrics, prior-sample quality and fidelity, the AE's PCA baseline."""

from __future__ import annotations

import numpy as np
import torch

from .checkpoints import find, load_folder
from .classifier import classifier_available, load_classifier, sample_quality
from .data import load_dataset, load_npz, to_unit_float
from .distributions import prior_draws
from .metrics import evaluate, sample_fidelity
from .models import LatentModel
from .projections import PCAProjection


@torch.no_grad()
def prior_samples(model: LatentModel, n: int, temperature: float = 1.0, seed: int = 0) -> np.ndarray:
    """(n, 28, 28) decoded means of n prior draws at temperature T, from ``distributions.prior_draws``:
    the images the app's Sample tab shows for the same count, temperature and seed. A cvae cycles
    through the digits 0..9, as the Sample tab does when no digit is chosen."""
    z = prior_draws(model, n, seed=seed, temperature=temperature)
    y = torch.arange(n, device=z.device) % model.config.num_classes if model.conditional else None
    return model.decode(z, y)[:, 0].cpu().numpy()


def pca_baseline_mse(x_train: np.ndarray, x_val: np.ndarray, n_components: int) -> float:
    """Reconstruction MSE of PCA with the same number of components, fitted on the training split
    (the maps' ``PCAProjection``: scikit-learn's PCA)."""
    pca = PCAProjection(n_components).fit(x_train.reshape(len(x_train), -1) / 255.0)
    v = x_val.reshape(len(x_val), -1) / 255.0
    return float(((pca.inverse_transform(pca.transform(v)) - v) ** 2).mean())


def full_evaluation(name: str, *, data: str | None = None, iwae_k: int = 100, binarized: bool = False,
                    seed: int = 0, samples: int = 1000, device=None) -> dict:
    """Everything ``python -m vaedemo evaluate`` prints, as a dict."""
    folder = find(name)
    model, config = load_folder(folder, device)
    if data:
        x, y = load_npz(data)
        source, ds = data, None
    else:
        ds = load_dataset((config.get("data") or {}).get("dataset", "mnist-10k"))
        x, y, source = ds.x_val, ds.y_val, f"{ds.name} validation split"
    implicit = getattr(model, "implicit", False)
    reader = load_classifier() if classifier_available() else None
    out = {"checkpoint": name, "kind": model.kind, "data": source}
    out.update(evaluate(model, x, y, iwae_k=iwae_k if model.variational else 0, binarized=binarized, seed=seed,
                        classifier=reader if implicit else None))
    if not model.variational and not implicit and ds is not None:
        out["pca_mse"] = pca_baseline_mse(ds.x_train, ds.x_val, model.latent_dim)
        out["mse_vs_pca"] = out["mse"] / out["pca_mse"]
    if samples and (model.variational or implicit) and reader is not None:
        images = prior_samples(model, samples, 1.0, seed)
        # against the digits evaluated (grey levels, as the classifier was trained on, even with --binarized)
        out["samples"] = {**sample_quality(images, reader), **sample_fidelity(images, to_unit_float(x), reader)}
    return out

