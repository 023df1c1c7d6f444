"""Per-checkpoint statistics, computed once on first use and kept with the loaded model.

The bundled digits' codes, the validation digits' -ELBO, a Gaussian fitted to an AE's codes,
the prior's Gaussian stand-in, and how much each latent dimension is used.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import distributions
from .codec import encode, neg_elbo
from .data import bundled, validation
from .store import Entry


def is_implicit(model) -> bool:
    """An implicit generative model (a GAN) only samples: it defines no p(x), so no -ELBO and no posterior."""
    return bool(getattr(model, "implicit", False))


# Where a GAN's codes can be read instead of searched for: functions entry → (10000, D) codes or None. maps adds
# its cached latent maps (it builds on this module, so it registers itself rather than being imported here).
CODE_SOURCES: list = []


def bundled_codes(entry: Entry) -> np.ndarray:
    """mu of every bundled digit (10000, D) float32, with its true label for a cvae. A GAN's codes are a search
    per digit (minutes for 10,000 on a CPU): they come from a ``CODE_SOURCES`` entry where one has them (the
    checkpoint's cached latent map made by these weights, which holds the codes this function gave)."""

    def compute(e: Entry) -> np.ndarray:
        if is_implicit(e.model):
            for source in CODE_SOURCES:
                codes = source(e)
                if codes is not None:
                    codes = np.array(codes, np.float32)
                    codes.setflags(write=False)
                    return codes
        x, y = bundled()
        codes, _ = encode(e.model, x.astype(np.float32) / 255.0, y)
        codes.setflags(write=False)
        return codes

    return entry.extra("bundled_codes", compute)


def validation_neg_elbo(entry: Entry) -> np.ndarray:
    """Sorted -ELBO of the 1,000 validation digits, for the percentile of a new digit."""

    def compute(e: Entry) -> np.ndarray:
        x, y = validation()
        values = np.sort(neg_elbo(e.model, x.astype(np.float32) / 255.0, y))
        values.setflags(write=False)
        return values

    return entry.extra("val_neg_elbo", compute)


def fit_code_gaussian(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), Cholesky factor (D, D)) of a Gaussian fitted to codes (N, D), slightly regularised."""
    codes = np.asarray(codes, np.float64)
    cov = np.atleast_2d(np.cov(codes, rowvar=False))
    cov += 1e-6 * np.eye(len(cov)) * max(1.0, float(np.trace(cov)) / len(cov))
    return codes.mean(0), np.linalg.cholesky(cov)


def code_gaussian(entry: Entry) -> tuple[np.ndarray, np.ndarray]:
    """The Gaussian fitted to the bundled digits' codes: an AE has no prior, and this stands in for it."""
    return entry.extra("code_gaussian", lambda e: fit_code_gaussian(bundled_codes(e)))


def prior_gaussian(entry: Entry) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) such that z = mean + scale @ eps, eps ~ N(0, I), draws from the sampling prior.

    N(0, I) for a VAE and for a GAN (an implicit model samples z ~ N(0, I) too); for a learnt mixture
    prior, the Gaussian with the mixture's mean and spread per dimension (what grids and traversals
    measure in); the AE's fitted code Gaussian."""
    model = entry.model
    if (model.variational or is_implicit(model)) and model.prior is None:
        d = model.latent_dim
        return np.zeros(d), np.eye(d)
    if model.variational:
        with torch.no_grad():
            mean, std = (t.double().cpu().numpy() for t in model.prior.moments())
        return mean, np.diag(std)
    return code_gaussian(entry)


def prior_draws(entry: Entry, count: int, seed: int, temperature: float = 1.0) -> np.ndarray:
    """Codes (count, D) from the model's prior (the AE's fitted Gaussian), through the one sampler."""
    fitted = None if entry.model.variational or is_implicit(entry.model) else code_gaussian(entry)
    z = distributions.prior_draws(entry.model, count, seed=seed, temperature=temperature, code_gaussian=fitted)
    return z.double().cpu().numpy()


def dim_scores(entry: Entry) -> np.ndarray:
    """(D,) average KL per dimension on the validation digits (VAE), or the codes' variance (AE).

    Under a learnt prior a single dimension's KL is not defined; the KL to the prior's Gaussian
    stand-in (``prior_gaussian``) ranks the dimensions the same way, and is the KL itself under N(0, I)."""

    def compute(e: Entry) -> np.ndarray:
        if not e.model.variational:
            return bundled_codes(e).astype(np.float64).var(0)
        x, y = validation()
        mu, logvar = encode(e.model, x.astype(np.float32) / 255.0, y)
        mean, scale = prior_gaussian(e)
        std = np.diag(scale)
        return (
            distributions.gaussian_kl(torch.from_numpy((mu - mean) / std), torch.from_numpy(logvar - 2 * np.log(std)))
            .double()
            .mean(0)
            .numpy()
        )

    return entry.extra("dim_scores", compute)
