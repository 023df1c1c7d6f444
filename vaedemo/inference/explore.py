"""Looking at one digit through a model: reconstruct it, walk from it to another, move along each dimension."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import distributions
from ..validation import number, whole
from .codec import decode, encode, labels_tensor, neg_elbo, resolve_label, to_tensor
from .data import as_digit, bundled
from .stats import bundled_codes, dim_scores, is_implicit, prior_gaussian, validation_neg_elbo
from .store import STORE

NEIGHBOURS = 5


@dataclass
class Reconstruction:
    input: np.ndarray  # (28, 28)
    recon: np.ndarray  # (28, 28) decoded from the posterior mean
    samples: np.ndarray  # (n, 28, 28) decodes of z ~ q(z|x); (0, 28, 28) for an AE
    error_map: np.ndarray  # (28, 28) recon - input, signed
    mu: np.ndarray  # (D,)
    sigma: np.ndarray | None  # (D,), None for an AE
    mse: float  # mean squared error per pixel
    bce_nats: float  # -log p(x | z = mu), summed over pixels
    neg_elbo: float | None  # None for an AE
    elbo_percentile: float | None  # % of validation digits with a lower -ELBO; high = atypical
    neighbours: list[tuple[int, int, float]]  # 5 × (bundled index, label, distance on mu)
    label_used: int | None = None  # the cvae's label


def reconstruct(image: Any, checkpoint: str, n_samples: int = 6, label: int | None = None) -> Reconstruction:
    """Encode a digit, decode it, and say how typical it is and which bundled digits are nearest."""
    entry = STORE.entry(checkpoint)
    model = entry.model
    x = as_digit(image)
    n_samples = whole(n_samples, "The number of samples", 0, 64)
    label = resolve_label(model, label, x)
    mu, logvar = encode(model, x[None], label)
    with torch.no_grad():
        z = torch.from_numpy(mu).to(entry.device)
        y = labels_tensor(label, 1, entry.device) if model.conditional else None
        logits = model.decode_logits(z, y)
        bce = float(distributions.bernoulli_nll(logits, to_tensor(x, entry.device))[0])
        recon = torch.sigmoid(logits).float().cpu().numpy()[0, 0]
    sigma = np.exp(0.5 * logvar[0]) if logvar is not None else None
    if sigma is not None and n_samples:
        eps = distributions.standard_normal((n_samples, model.latent_dim), 0).double().numpy()
        samples = decode(model, mu + sigma * eps, label)
    else:
        samples = np.zeros((0, 28, 28), np.float32)
    score = percentile = None
    if model.variational:
        score = float(neg_elbo(model, x[None], label)[0])
        reference = validation_neg_elbo(entry)
        percentile = 100.0 * np.searchsorted(reference, score, side="left") / len(reference)
    codes = bundled_codes(entry)
    dist = np.sqrt(np.maximum(((codes - mu[0]) ** 2).sum(1), 0.0))  # (10000,)
    nearest = np.argpartition(dist, NEIGHBOURS)[:NEIGHBOURS]
    nearest = nearest[np.argsort(dist[nearest], kind="stable")]
    labels = bundled()[1]
    return Reconstruction(
        input=x,
        recon=recon,
        samples=samples,
        error_map=recon - x,
        mu=mu[0],
        sigma=sigma,
        mse=float(np.mean((recon - x) ** 2)),
        bce_nats=bce,
        neg_elbo=score,
        elbo_percentile=None if percentile is None else float(percentile),
        neighbours=[(int(i), int(labels[i]), float(dist[i])) for i in nearest],
        label_used=label,
    )


@dataclass
class Interpolation:
    lerp: np.ndarray  # (steps, 28, 28) decodes along the straight line
    slerp: np.ndarray  # (steps, 28, 28) decodes along the great circle
    lerp_norms: np.ndarray  # (steps,) ‖z‖ along the straight line
    slerp_norms: np.ndarray  # (steps,)
    t: np.ndarray  # (steps,) from 0 to 1
    label_used: int | None = None
    ends: np.ndarray | None = None  # (2, D) the two codes the paths join (the page's live scrubber)


def slerp(z0: np.ndarray, z1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation (Shoemake 1985; White 2016 for generative models), (len(t), D).

    Falls back to a straight line when the codes are (anti)parallel or one is zero.
    """
    n0, n1 = np.linalg.norm(z0), np.linalg.norm(z1)
    t = np.asarray(t, dtype=np.float64)[:, None]
    if n0 < 1e-12 or n1 < 1e-12:
        return (1 - t) * z0 + t * z1
    omega = np.arccos(np.clip(np.dot(z0 / n0, z1 / n1), -1.0, 1.0))
    if np.sin(omega) < 1e-6:
        return (1 - t) * z0 + t * z1
    return (np.sin((1 - t) * omega) * z0 + np.sin(t * omega) * z1) / np.sin(omega)


def interpolate(checkpoint: str, a: Any, b: Any, steps: int = 10, label: int | None = None) -> Interpolation:
    """Decode the straight and the spherical path between the codes (means) of digits a and b.

    A cvae keeps one label for the whole path: ``label``, or the best label for ``a``.
    """
    model = STORE.get(checkpoint)
    steps = whole(steps, "The number of steps", 2, 64)
    xa, xb = as_digit(a), as_digit(b)
    label = resolve_label(model, label, xa)
    mu, _ = encode(model, np.stack([xa, xb]), label)
    z0, z1 = mu[0].astype(np.float64), mu[1].astype(np.float64)
    t = np.linspace(0.0, 1.0, steps)
    z_lerp = (1 - t)[:, None] * z0 + t[:, None] * z1
    z_slerp = slerp(z0, z1, t)
    images = decode(model, np.concatenate([z_lerp, z_slerp]), label)
    return Interpolation(
        lerp=images[:steps],
        slerp=images[steps:],
        lerp_norms=np.linalg.norm(z_lerp, axis=1),
        slerp_norms=np.linalg.norm(z_slerp, axis=1),
        t=t,
        label_used=label,
        ends=np.stack([z0, z1]).astype(np.float32),
    )


@dataclass
class Traversal:
    images: np.ndarray  # (len(dims), steps, 28, 28)
    dims: list[int]
    values: np.ndarray  # (steps,) offsets in σ units
    label_used: int | None = None
    code: np.ndarray | None = None  # (D,) the digit's own code, the middle column (the page's live sliders)
    unit: np.ndarray | None = None  # (D,) σ per dimension: row d's step k adds values[k] * unit[d] to code[d]


def dims_by_kl(checkpoint: str) -> list[tuple[int, float]]:
    """(dimension, average KL in nats over the validation digits), largest first.

    An AE has no KL; its list ranks dimensions by the variance of the codes instead.
    """
    scores = dim_scores(STORE.entry(checkpoint))
    order = np.argsort(-scores, kind="stable")
    return [(int(d), float(scores[d])) for d in order]


def _dims(value: Any, latent_dim: int) -> list[int]:
    items = [value] if isinstance(value, (int, float, str, np.integer)) else list(value)
    if not 1 <= len(items) <= 16:
        raise ValueError("Choose between 1 and 16 latent dimensions to traverse.")
    dims = [whole(v, "A latent dimension", 0, latent_dim - 1) for v in items]
    if len(set(dims)) != len(dims):
        raise ValueError("Each latent dimension can be traversed only once; remove the repeats.")
    return dims


def traverse(
    checkpoint: str, image: Any, dims: Any = None, steps: int = 7, span: float = 3.0, label: int | None = None
) -> Traversal:
    """Move a digit's code along single dimensions, from -span to +span σ, and decode each step.

    σ is the prior's (1 under N(0, I); the mixture's spread for a learnt prior) for a VAE and the
    spread of the bundled digits' codes for an AE.
    ``dims`` None picks the top min(8, D) dimensions by KL (VAE) or variance (AE).
    """
    entry = STORE.entry(checkpoint)
    model = entry.model
    steps = whole(steps, "The number of steps", 2, 32)
    span = number(span, "The span", 0.0, 10.0, lo_open=True)
    x = as_digit(image)
    if dims is None:
        dims = [d for d, _ in dims_by_kl(checkpoint)[: min(8, model.latent_dim)]]
    else:
        dims = _dims(dims, model.latent_dim)
    label = resolve_label(model, label, x)
    mu, _ = encode(model, x[None], label)
    # σ of the prior (N(0, I) for a GAN's noise too); an AE has none: the spread of its codes stands in
    unit = np.diag(prior_gaussian(entry)[1]) if model.variational or is_implicit(model) else np.sqrt(dim_scores(entry))
    values = np.linspace(-span, span, steps)
    z = np.repeat(mu.astype(np.float64), len(dims) * steps, axis=0).reshape(len(dims), steps, -1)
    for row, d in enumerate(dims):
        z[row, :, d] += values * unit[d]
    images = decode(model, z.reshape(len(dims) * steps, -1), label)
    return Traversal(images=images.reshape(len(dims), steps, 28, 28), dims=dims, values=values, label_used=label,
                     code=mu[0].astype(np.float32), unit=np.asarray(unit, np.float32))

