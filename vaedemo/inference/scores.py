"""Per-digit figures to colour a latent map by: reconstruction error, −ELBO, KL and the classifier's confidence.

Each is computed once per model for all 10,000 bundled digits, the way the app reports it for one digit
elsewhere (the Reconstruct tab's error and −ELBO, the Sample tab's classifier reading), and cut to a map's
digits. A cvae is given each digit's true label, as its map's codes are.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import distributions
from ..validation import choice
from .codec import BATCH, ELBO_SAMPLES, decode, labels_tensor, model_device, neg_elbo, to_tensor
from .data import bundled
from .sampling import read_digits
from .stats import bundled_codes
from .store import STORE, Entry

# name → what the colour bar says
COLOUR_BY = {
    "label": "label",
    "error": "reconstruction error (MSE per pixel)",
    "neg_elbo": "−ELBO (nats)",
    "kl": "KL(q(z|x) ‖ p(z)) (nats)",
    "confidence": "classifier's confidence in the reconstruction",
}


def check_colour(value: Any) -> str:
    """One of COLOUR_BY's names ('label' when empty), else a sentence."""
    return "label" if value in (None, "") else choice(value, "colouring", tuple(COLOUR_BY))


def _images() -> tuple[np.ndarray, np.ndarray]:
    x, y = bundled()
    return x.astype(np.float32) / 255.0, y


def _recons(entry: Entry) -> np.ndarray:
    """Every bundled digit decoded from its code (posterior mean), (10000, 28, 28)."""
    return decode(entry.model, bundled_codes(entry), bundled()[1])


@torch.no_grad()
def _kl(entry: Entry) -> np.ndarray:
    """KL(q(z|x) ‖ p(z)) per digit: closed form under N(0, I); under a learnt prior the estimate from the
    same fixed draws the −ELBO uses, so −ELBO = reconstruction term + this KL for every digit."""
    model = entry.model
    device = model_device(model)
    x, y = _images()
    eps = distributions.standard_normal((ELBO_SAMPLES, 1, model.latent_dim), 0).to(device)  # (S, 1, D)
    out = []
    for i in range(0, len(x), BATCH):
        xb = to_tensor(x[i : i + BATCH], device)
        yb = labels_tensor(y[i : i + BATCH], len(xb), device) if model.conditional else None
        mu, logvar = model.encode(xb, yb)
        z = distributions.reparameterize(mu, logvar, eps.to(mu.dtype))
        out.append(distributions.kl_term(model, mu, logvar, z).double().cpu().numpy())
    return np.concatenate(out)


def _compute(entry: Entry, what: str) -> np.ndarray:
    model = entry.model
    if what in ("neg_elbo", "kl") and not model.variational:
        name = "−ELBO" if what == "neg_elbo" else "KL"
        raise ValueError(f"An autoencoder has no {name}: its code is deterministic. Colour by the error instead.")
    if what == "error":
        x, _ = _images()
        return ((_recons(entry) - x) ** 2).mean((1, 2)).astype(np.float64)
    if what == "neg_elbo":
        x, y = _images()
        return neg_elbo(model, x, y)
    if what == "kl":
        return _kl(entry)
    reading = read_digits(_recons(entry))
    if reading is None:
        raise ValueError("There is no digit classifier to read the reconstructions with (checkpoints/"
                         "classifier-mnist); colour by another figure.")
    return reading.confidence.astype(np.float64)


def digit_scores(checkpoint: str, what: str) -> np.ndarray | None:
    """The figure ``what`` (a COLOUR_BY name) for every bundled digit, (10000,) float64, read-only;
    None for 'label'. ValueError when the model has no such figure (an AE's −ELBO)."""
    what = check_colour(what)
    if what == "label":
        return None
    entry = STORE.entry(checkpoint)

    def compute(e: Entry) -> np.ndarray:
        values = _compute(e, what)
        values.setflags(write=False)
        return values

    return entry.extra(f"digit_scores_{what}", compute)


def map_values(lm: Any, what: str) -> np.ndarray | None:
    """``digit_scores`` for the digits of map ``lm`` (a LatentMap), in its order; None for 'label'."""
    scores = digit_scores(lm.checkpoint, what)
    return None if scores is None else scores[lm.indices]
