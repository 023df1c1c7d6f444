"""New digits from a model: prior samples, the digit classifier's reading of them, and the 2-D manifold grid."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from ..exports import tile
from ..validation import number, whole
from .codec import decode, label_for
from .stats import prior_draws, prior_gaussian
from .store import READERS, STORE

log = logging.getLogger(__name__)

MAX_SAMPLES = 256


def sample(
    checkpoint: str, count: int = 16, temperature: float = 1.0, seed: int = 0, digit: int | None = None
) -> np.ndarray:
    """Decoded prior draws, (count, 28, 28); the same arguments give the same images.

    Draws come from ``distributions.prior_draws``, the sampler behind the model cards' figures:
    N(0, T²I), a learnt mixture (a component per draw, its spread scaled by T), or for an AE a
    Gaussian fitted to the bundled digits' codes (``checkpoint_info`` says so). A cvae draws
    ``digit``, or cycles 0..9 when it is None; other models ignore it.
    """
    entry = STORE.entry(checkpoint)
    model = entry.model
    count = whole(count, "The number of samples", 1, MAX_SAMPLES)
    temperature = number(temperature, "The temperature", 0.0, 5.0, lo_open=True)
    seed = whole(seed, "The seed", 0, 2**31 - 1)
    digit = label_for(model, digit)
    z = prior_draws(entry, count, seed, temperature)
    labels = None
    if model.conditional:
        labels = np.full(count, digit) if digit is not None else np.arange(count) % model.config.num_classes
    return decode(model, z, labels)


@dataclass
class Reading:
    """What the digit classifier reads in each image."""

    labels: np.ndarray  # (N,) the most likely digit
    confidence: np.ndarray  # (N,) its probability
    threshold: float  # at or above it a reading counts as clear (the 0.9)

    @property
    def clear(self) -> np.ndarray:
        return self.confidence >= self.threshold


def read_digits(images: np.ndarray, threshold: float = 0.9) -> Reading | None:
    """``classifier-mnist``'s reading of images (N, 28, 28) in [0, 1]; None when it is not installed
    or cannot be read, so the app still shows the images."""
    from ..classifier import DEFAULT_NAME, classifier_available

    if not classifier_available(DEFAULT_NAME):
        return None
    try:
        reader = READERS.get(DEFAULT_NAME)
    except ValueError as e:
        log.warning("No digit classifier to read samples with: %s", e)
        return None
    probs = reader.predict_proba(np.asarray(images, dtype=np.float32))
    return Reading(probs.argmax(1), probs.max(1), threshold)


def manifold_grid(checkpoint: str, n: int = 15, span: float = 3.0, digit: int | None = None) -> np.ndarray:
    """Decodes over a 2-D latent plane, (n*28, n*28), like Kingma & Welling's figure 4.

    The grid is evenly spaced in probability, so the codes are Gaussian quantiles between
    -span and +span σ (of the prior for a VAE, of the fitted code Gaussian for an AE). The top
    row has the largest z₂. A cvae needs ``digit``.
    """
    entry = STORE.entry(checkpoint)
    model = entry.model
    if model.latent_dim != 2:
        raise ValueError(
            f"The manifold grid needs a model with a 2-D latent space; {checkpoint!r} has "
            f"{model.latent_dim} dimensions."
        )
    n = whole(n, "The grid size", 2, 40)
    span = number(span, "The span", 0.0, 5.0, lo_open=True)
    digit = label_for(model, digit)
    if model.conditional and digit is None:
        raise ValueError("A cvae draws one digit at a time; choose which digit (0-9) to show.")
    lo = norm.cdf(-span)
    q = norm.ppf(np.linspace(lo, 1 - lo, n))  # (n,)
    gx, gy = np.meshgrid(q, q[::-1])  # rows top to bottom: z2 from high to low
    eps = np.stack([gx.ravel(), gy.ravel()], axis=1)  # (n*n, 2)
    mean, scale = prior_gaussian(entry)
    images = decode(model, mean + eps @ scale.T, digit)  # (n*n, 28, 28)
    return tile(images, ncols=n)
