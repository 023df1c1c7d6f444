"""Evaluation: negative ELBO, the IWAE bound as an NLL estimate, reconstruction MSE, active units, a GAN's
inversion, and the sample yardsticks every generative model shares (Fréchet distance, precision and recall).

Likelihood figures are per image, in nats, under the Bernoulli decoder the models are trained with.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.spatial import cKDTree

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
             iwae_k: int = 100, binarized: bool = False, seed: int = 0, batch_size: int = 500,
             classifier=None) -> dict:
    """Metrics on uint8 images (N, 28, 28); a fixed ``seed`` makes every figure reproducible.

    An implicit model (a GAN) has no ELBO, IWAE bound or active units; it gets ``evaluate_inversion``'s
    figures instead (``classifier``, a ``DigitClassifier``, adds its ``inversion_accuracy``).
    """
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
    if getattr(model, "implicit", False):
        result = {"n": len(x_all), "binarized": binarized, "seed": seed,
                  **evaluate_inversion(model, x_all, labels, classifier, batch_size=batch_size)}
        model.train(was_training)
        return result
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



def evaluate_inversion(model: LatentModel, x: torch.Tensor, labels: np.ndarray | None = None, classifier=None,
                       batch_size: int = 500) -> dict:
    """A GAN's "reconstructions": each digit (N, 1, 28, 28) in [0, 1] inverted (``model.invert``) and decoded.

    ``mse`` and ``recon_nats`` (the Bernoulli reconstruction error, nats per image) of the refined codes,
    ``inverter_mse`` of the inverter's first guesses, and with a ``classifier`` and ``labels``,
    ``inversion_accuracy``: the share of digits whose reconstruction it reads as the true digit.
    """
    device = next(model.parameters()).device
    sums = {"mse": 0.0, "recon": 0.0, "guess": 0.0}
    predicted = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].to(device)
        guess, z = model.invert(xb)
        logits = model.decode_logits(z)
        recon = torch.sigmoid(logits)
        sums["mse"] += (recon - xb).pow(2).mean(dim=(1, 2, 3)).sum().item()
        sums["recon"] += bernoulli_nll(logits, xb).sum().item()
        sums["guess"] += (model.decode(guess) - xb).pow(2).mean(dim=(1, 2, 3)).sum().item()
        if classifier is not None:
            predicted.append(classifier.predict_proba(recon.cpu()).argmax(1))
    n = max(1, len(x))
    out = {"mse": sums["mse"] / n, "recon_nats": sums["recon"] / n, "inverter_mse": sums["guess"] / n,
           "inversion_steps": int(model.config.inversion_steps), "latent_dim": model.latent_dim}
    if classifier is not None and labels is not None:
        out["inversion_accuracy"] = float((np.concatenate(predicted) == np.asarray(labels)[: len(x)]).mean())
    return out


# ---------------------------------------------------------------------------------- sample yardsticks


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance between Gaussians fitted to two sets of features, (N, F) and (M, F):
    |m_a - m_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) (Dowson & Landau 1982; FID, Heusel et al. 2017).

    Tr((S_a S_b)^(1/2)) is computed as the sum of the square roots of the eigenvalues of the symmetric
    S_a^(1/2) S_b S_a^(1/2), which has the same spectrum, so no complex square root is needed.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError("The Fréchet distance needs two sets of at least two feature vectors of the same size.")
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)  # (F, F)
    w, v = np.linalg.eigh(cov_a)
    root_a = (v * np.sqrt(w.clip(0))) @ v.T
    cross = np.sqrt(np.linalg.eigvalsh(root_a @ cov_b @ root_a).clip(0)).sum()
    return float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def _kth_radius(points: np.ndarray, k: int) -> np.ndarray:
    """Each point's distance to its k-th nearest other point, (N,)."""
    dist, _ = cKDTree(points).query(points, k=k + 1)  # column 0 is the point itself
    return dist[:, k]


def _inside(queries: np.ndarray, centres: np.ndarray, radii: np.ndarray, chunk: int = 1000) -> np.ndarray:
    """Whether each query lies in at least one ball (centre, radius), (Q,) bools; exact, by pairwise distances."""
    sq = (centres**2).sum(1)
    out = []
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk]
        d2 = (q**2).sum(1)[:, None] + sq[None] - 2 * q @ centres.T  # (chunk, C)
        out.append((d2 <= radii[None] ** 2 + 1e-9).any(1))
    return np.concatenate(out)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019, sec. 2) of ``fake`` features against ``real``.

    Each set's manifold is the union of balls around its points, each as wide as the distance to the
    point's k-th nearest neighbour in its own set. Precision: the share of fakes inside the real manifold
    (how many samples look real); recall: the share of reals inside the fake manifold (how much of the
    data the samples cover).
    """
    real, fake = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"Precision and recall with k = {k} need more than {k} points in each set.")
    precision = _inside(fake, real, _kth_radius(real, k)).mean()
    recall = _inside(real, fake, _kth_radius(fake, k)).mean()
    return float(precision), float(recall)


PR_K = 3  # neighbours that set each ball's radius, as Kynkäänniemi et al. recommend


def sample_fidelity(samples: np.ndarray, reference: np.ndarray, classifier, k: int = PR_K) -> dict:
    """The Fréchet distance and precision / recall of ``samples`` against ``reference`` images (both in
    [0, 1], (N, 28, 28) or (N, 1, 28, 28)) in the digit classifier's penultimate features
    (``DigitClassifier.features``): an FID for MNIST, on the project's own classifier."""
    fake, real = classifier.features(samples), classifier.features(reference)
    precision, recall = precision_recall(real, fake, k)
    return {"frechet_distance": frechet_distance(fake, real), "precision": precision, "recall": recall,
            "pr_k": k, "n_reference": int(len(real)), "feature_dim": int(real.shape[1])}
