"""Evaluation: negative ELBO, the IWAE bound as an NLL estimate, reconstruction MSE, active units.

All figures are per image, in nats, under the Bernoulli decoder the models are trained with.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .data import to_unit_float
from .distributions import bernoulli_nll, gaussian_kl, log_ratio, reparameterize
from .models import LatentModel


def binarize(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Stochastic binarization: each pixel is 1 with probability equal to its intensity."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return torch.bernoulli(x.cpu(), generator=gen).to(x.device)


@torch.no_grad()
def iwae_nll(model: LatentModel, x: torch.Tensor, y: torch.Tensor | None, k: int,
             chunk: int = 100) -> torch.Tensor:
    """-log p(x) estimated with k importance samples (Burda et al. 2016, eq. 8), per image (N,).

    log p(x) ≈ logsumexp_i [log p(x|z_i) + log p(z_i) - log q(z_i|x)] - log k,  z_i ~ q(z|x).
    """
    mu, logvar = model.encode(x, y)  # (N, D) each
    n, d = mu.shape
    log_w = []
    for start in range(0, k, chunk):
        m = min(chunk, k - start)
        eps = torch.randn(m, n, d, device=x.device)
        z = reparameterize(mu, logvar, eps)  # (m, N, D)
        yy = y.repeat(m) if y is not None else None
        logits = model.decode_logits(z.reshape(m * n, d), yy)  # (m*N, 1, 28, 28)
        log_px_z = -bernoulli_nll(logits, x.repeat(m, 1, 1, 1)).view(m, n)
        log_w.append(log_px_z - log_ratio(model, z, mu, logvar))  # log p(x|z) + log p(z) - log q(z|x)
    log_w = torch.cat(log_w)  # (k, N)
    return -(torch.logsumexp(log_w, 0) - math.log(k))


@torch.no_grad()
def evaluate(model: LatentModel, images: np.ndarray, labels: np.ndarray | None = None, *,
             iwae_k: int = 100, binarized: bool = False, seed: int = 0, batch_size: int = 500) -> dict:
    """Metrics on uint8 images (N, 28, 28); a fixed ``seed`` makes every figure reproducible."""
    if iwae_k < 0 or iwae_k > 100_000:
        raise ValueError("The IWAE sample count must be between 0 and 100000.")
    if len(images) == 0:
        raise ValueError("There are no images to evaluate.")
    if model.conditional and labels is None:
        raise ValueError("A cvae needs labels to be evaluated; the .npz must hold 'y'.")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    x_all = to_unit_float(images)
    if binarized:
        x_all = binarize(x_all, seed)
    y_all = torch.as_tensor(labels, dtype=torch.long) if (labels is not None and model.conditional) else None

    sums = {"recon": 0.0, "kl": 0.0, "mse": 0.0, "iwae": 0.0}
    kl_per_dim = torch.zeros(model.latent_dim, dtype=torch.float64)
    means = []
    with torch.random.fork_rng(devices=[device.type] if device.type == "cuda" else []):
        for i in range(0, len(x_all), batch_size):
            torch.manual_seed(seed * 1_000_003 + i)  # per batch, so the ELBO does not depend on iwae_k
            x = x_all[i : i + batch_size].to(device)
            y = y_all[i : i + batch_size].to(device) if y_all is not None else None
            out = model(x, y, beta=1.0, sample=True)  # one-sample ELBO estimate
            sums["recon"] += out.loss.recon.item() * len(x)
            sums["kl"] += out.loss.kl.item() * len(x)
            mean_out = model(x, y, sample=False)  # reconstruction from the posterior mean
            sums["mse"] += (mean_out.x_hat - x).pow(2).mean(dim=(1, 2, 3)).sum().item()
            if out.logvar is not None:
                kl_per_dim += gaussian_kl(out.mu, out.logvar).sum(0).double().cpu()
                means.append(out.mu.double().cpu())
                if iwae_k:
                    sums["iwae"] += iwae_nll(model, x, y, iwae_k).sum().item()
    model.train(was_training)
    n = len(x_all)
    result = {
        "n": n,
        "binarized": binarized,
        "seed": seed,
        "recon_nats": sums["recon"] / n,
        "mse": sums["mse"] / n,
    }
    if model.variational:
        if model.prior is None:  # a unit whose posteriors stay on the prior carries no information
            used = kl_per_dim / n > 0.01
        else:  # under a learnt prior: Burda et al.'s (2016) test, Cov_x(E_q[z]) > 0.01
            used = torch.cat(means).var(0) > 0.01
        result.update(
            neg_elbo=(sums["recon"] + sums["kl"]) / n,
            kl_nats=sums["kl"] / n,
            active_units=int(used.sum()),
            latent_dim=model.latent_dim,
        )
        if iwae_k:
            result.update(iwae_nll=sums["iwae"] / n, iwae_k=iwae_k)
    return result

