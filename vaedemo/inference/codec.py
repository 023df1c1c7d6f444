"""Encode and decode numpy digits in batches, and score them: the torch side of every feature.

numpy in, numpy out; batches of BATCH on the model's device, no gradients.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import distributions
from ..models import LatentModel
from ..validation import whole

BATCH = 1000  # inference batch for encoding many digits
ELBO_SAMPLES = 8  # z samples per image for the -ELBO shown in the app (fixed seed, so it is repeatable)


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """Float images (N, 28, 28) → (N, 1, 28, 28) on ``device``."""
    return torch.tensor(np.asarray(images, dtype=np.float32)).reshape(-1, 1, 28, 28).to(device)


def labels_tensor(labels: Any, n: int, device: torch.device) -> torch.Tensor | None:
    """None, one label for all n, or n labels → (n,) int64 on ``device``."""
    if labels is None:
        return None
    y = torch.tensor(np.asarray(labels, dtype=np.int64)).reshape(-1)
    return (y.expand(n) if len(y) == 1 else y).to(device)


def _batch_labels(model: LatentModel, labels: Any, i: int, n: int, device: torch.device) -> torch.Tensor | None:
    """The labels of batch [i, i + n) for a conditional model (None for the others)."""
    if not model.conditional:
        return None
    part = labels[i : i + n] if labels is not None and np.ndim(labels) else labels
    return labels_tensor(part, n, device)


def label_for(model: LatentModel, label: Any, what: str = "The digit") -> int | None:
    """A class label for a cvae (None stays None); other models ignore labels."""
    if not model.conditional or label is None:
        return None
    return whole(label, what, 0, model.config.num_classes - 1)


@torch.no_grad()
def encode(model: LatentModel, images: np.ndarray, labels: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(mu (N, D), logvar (N, D) or None) for float images (N, 28, 28), in batches of BATCH."""
    device = model_device(model)
    mus, logvars = [], []
    for i in range(0, len(images), BATCH):
        x = to_tensor(images[i : i + BATCH], device)
        mu, logvar = model.encode(x, _batch_labels(model, labels, i, len(x), device))
        mus.append(mu.float().cpu().numpy())
        if logvar is not None:
            logvars.append(logvar.float().cpu().numpy())
    return np.concatenate(mus), (np.concatenate(logvars) if logvars else None)


@torch.no_grad()
def decode(model: LatentModel, z: np.ndarray, labels: Any = None) -> np.ndarray:
    """Pixel probabilities (N, 28, 28) for codes (N, D)."""
    device = model_device(model)
    out = []
    for i in range(0, len(z), BATCH):
        zb = torch.tensor(np.asarray(z[i : i + BATCH], dtype=np.float32)).to(device)
        out.append(model.decode(zb, _batch_labels(model, labels, i, len(zb), device)).float().cpu().numpy()[:, 0])
    return np.concatenate(out) if out else np.zeros((0, 28, 28), np.float32)


@torch.no_grad()
def neg_elbo(
    model: LatentModel, images: np.ndarray, labels: Any = None, samples: int = ELBO_SAMPLES, seed: int = 0
) -> np.ndarray:
    """-ELBO per image (N,) in nats with beta = 1, from ``samples`` fixed draws of z ~ q(z|x).

    The same draws for every image (seeded), so a digit's score does not depend on its batch-mates.
    """
    device = model_device(model)
    eps = distributions.standard_normal((samples, 1, model.latent_dim), seed).to(device)  # (S, 1, D)
    out = []
    step = max(1, BATCH // samples)
    for i in range(0, len(images), step):
        x = to_tensor(images[i : i + step], device)
        y = _batch_labels(model, labels, i, len(x), device)
        out.append(distributions.neg_elbo(model, x, y, eps=eps).double().cpu().numpy())
    return np.concatenate(out)


def best_label(model: LatentModel, image: np.ndarray) -> int:
    """For a cvae without a given label: the class whose -ELBO for this image is lowest."""
    k = model.config.num_classes
    scores = neg_elbo(model, np.repeat(image[None], k, axis=0), np.arange(k))
    return int(np.argmin(scores))


def resolve_label(model: LatentModel, label: Any, image: np.ndarray) -> int | None:
    """The label a conditional model decodes ``image`` with: the one given, else its most likely one."""
    label = label_for(model, label)
    if model.conditional and label is None:
        label = best_label(model, image)
    return label
