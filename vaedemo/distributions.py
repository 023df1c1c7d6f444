"""The Gaussian and prior math every part of vaedemo shares: reparameterisation, KL, log-densities,
the one prior sampler and the per-image −ELBO.

No import of ``vaedemo.models``: a model is read through duck typing — ``model.prior`` (None for
N(0, I), or a mixture with ``means``, ``logvars``, ``sample(eps, k, T)`` and ``log_prob(z)``),
``model.variational``, ``model.implicit`` (absent: False), ``model.conditional``, ``model.latent_dim``,
``model.encode(x, y)`` and ``model.decode_logits(z, y)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

LOG_2PI = math.log(2 * math.pi)


def _device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


# ---------------------------------------------------------------------------------- Gaussians


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
    """z = mu + sigma * eps (Kingma & Welling 2014, sec. 2.4); fresh eps ~ N(0, I) unless given.

    With ``eps`` given the result is deterministic; it broadcasts, so eps of shape (S, N, D) or
    (S, 1, D) against mu (N, D) gives S draws per image.

    Lecture bug: ``reparameterization(mean, var)`` was handed exp(0.5*logvar), a standard
    deviation, under the name ``var``. Here the log-variance goes in and sigma is derived once.
    """
    std = torch.exp(0.5 * logvar)
    if eps is None:
        eps = torch.randn_like(std)
    return mu + std * eps


def normal_logpdf(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag exp(logvar)) summed over the last dimension."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) / logvar.exp()).sum(-1)


def standard_normal_logpdf(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last dimension."""
    return -0.5 * (LOG_2PI + z.pow(2)).sum(-1)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) per dimension, (N, D) (Kingma & Welling 2014, appendix B)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


class _BernoulliNLL(torch.autograd.Function):
    """Per image, sum over pixels of softplus(l) - x·l = max(l, 0) - x·l + log(1 + exp(-|l|)).

    The same value as ``F.binary_cross_entropy_with_logits`` (within float32 rounding: 1 + exp(-|l|)
    lies in (1, 2], so log does what log1p would), about 4× faster on a CPU, where torch's log1p and
    log_sigmoid kernels are not vectorised (0.5 ms for a batch of 128 digits against 0.06 for log). The
    gradient is the textbook one, sigmoid(l) - x, in one pass: no log_sigmoid buffer is kept.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(logits, x)
        nll = logits.abs().neg_().exp_().add_(1).log_()
        nll.add_(logits.clamp_min(0)).addcmul_(x, logits, value=-1)
        return nll.flatten(1).sum(1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logits, x = ctx.saved_tensors
        g = grad.reshape(-1, *([1] * (logits.dim() - 1)))
        grad_logits = (torch.sigmoid(logits) - x).mul_(g) if ctx.needs_input_grad[0] else None
        grad_x = (-logits * g) if ctx.needs_input_grad[1] else None
        return grad_logits, grad_x


def bernoulli_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log p(x|z) per image, (N,), for pixel intensities x in [0, 1] under a Bernoulli decoder."""
    dtype = torch.promote_types(logits.dtype, torch.float32)  # a bf16 logit is scored in float32
    logits, x = torch.broadcast_tensors(logits.to(dtype), x.to(dtype))
    return _BernoulliNLL.apply(logits, x)


def prior_mmd(z: torch.Tensor) -> torch.Tensor:
    """Squared MMD between a batch of codes (N, D) and as many draws from the prior N(0, I).

    Penalising it pulls the codes' aggregate distribution q(z) onto the prior, so fewer prior
    samples land in the "holes" between digit clusters and decode to blends (InfoVAE, Zhao et
    al. 2019; WAE, Tolstikhin et al. 2018). Inverse multiquadric kernels C / (C + |a - b|^2) at
    several scales with C = 2 D s, the unbiased estimator, as in the WAE paper.
    """
    n, d = z.shape
    if n < 2:
        return z.new_zeros(())
    p = torch.randn_like(z)
    both = torch.cat([z, p])
    sq = torch.cdist(both, both).pow(2)
    off = ~torch.eye(n, dtype=torch.bool, device=z.device)
    total = z.new_zeros(())
    for s in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0):
        c = 2.0 * d * s
        k = c / (c + sq)
        total = total + (k[:n, :n][off].mean() + k[n:, n:][off].mean() - 2 * k[:n, n:].mean())
    return total


# ---------------------------------------------------------------------------------- the prior


def log_prior(model: Any, z: torch.Tensor) -> torch.Tensor:
    """log p(z), (...,) for z of shape (..., D): N(0, I), or the model's learnt mixture."""
    if model.prior is not None:
        return model.prior.log_prob(z)
    return standard_normal_logpdf(z)


def log_ratio(model: Any, z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log q(z|x) - log p(z) per draw, (..., N) for draws z (..., N, D) of the posteriors (N, D).

    The one log-q/log-p path: the KL's Monte Carlo estimate averages it, the IWAE bound weighs by it.
    """
    return normal_logpdf(z, mu, logvar) - log_prior(model, z)


def kl_term(model: Any, mu: torch.Tensor, logvar: torch.Tensor | None, z: torch.Tensor | None = None,
            *, eps: torch.Tensor | None = None) -> torch.Tensor:
    """KL(q(z|x) || p(z)) per image, (N,), in nats; zeros for an AE (``logvar`` None).

    Under N(0, I): the closed form (Kingma & Welling 2014, appendix B), and ``z`` is not used.
    Under a learnt prior there is none: the Monte Carlo estimate E_q[log q(z|x) - log p(z)],
    averaged over the given draws ``z`` ((N, D) or (S, N, D)); without ``z``, one draw is made
    from ``eps`` (or fresh noise when that is None too).
    """
    if logvar is None:
        return mu.new_zeros(mu.shape[:-1])
    if model.prior is None:
        return gaussian_kl(mu, logvar).sum(-1)
    if z is None:
        z = reparameterize(mu, logvar, eps)
    ratio = log_ratio(model, z, mu, logvar)  # (..., N)
    return ratio.reshape(-1, mu.shape[0]).mean(0)


def standard_normal(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """float32 N(0, I) draws of ``shape`` on the CPU from a private generator seeded with ``seed``:
    the same seed gives the same draws, whatever else runs in other threads."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(tuple(shape), generator=gen)


def prior_draws(model: Any, n: int, *, seed: int, temperature: float = 1.0,
                code_gaussian: tuple[Any, Any] | None = None) -> torch.Tensor:
    """The one prior sampler: (n, D) float32 codes on the model's device, the same for the same arguments.

    A private CPU generator seeded with ``seed`` draws eps ~ N(0, I) (n, D) first and then, for a
    learnt mixture, a component k per draw (n,), so the draws depend on nothing outside the call:

    - N(0, I) prior: z = T eps, that is z ~ N(0, T² I); an implicit model (a GAN, ``model.implicit``)
      samples its generator's input the same way;
    - learnt mixture: z = m_k + T s_k eps, each component's spread scaled by the temperature T;
    - a non-variational model (the AE) has no prior: ``code_gaussian = (mean (D,), L (D, D))``, a
      Gaussian fitted to its codes with Cholesky factor L, stands in and z = mean + T eps Lᵀ.

    The model cards' sample figures, the Sample tab and the training previews all draw here.
    """
    n, d = int(n), int(model.latent_dim)
    device = _device(model)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    eps = torch.randn(n, d, generator=gen)  # (n, D)
    if getattr(model, "implicit", False):  # a GAN's generator was trained on z ~ N(0, I)
        return (temperature * eps).to(device)
    if not model.variational:
        if code_gaussian is None:
            raise ValueError("An autoencoder has no prior to sample from: pass code_gaussian, the "
                             "(mean, Cholesky factor) of a Gaussian fitted to its codes.")
        mean, chol = (torch.as_tensor(np.asarray(a), dtype=torch.float64) for a in code_gaussian)
        if mean.shape != (d,) or chol.shape != (d, d):
            raise ValueError(f"code_gaussian must be a mean of shape ({d},) and a ({d}, {d}) Cholesky factor, "
                             f"not {tuple(mean.shape)} and {tuple(chol.shape)}.")
        z = mean + temperature * eps.double() @ chol.T  # (n, D)
        return z.float().to(device)
    if model.prior is None:
        return (temperature * eps).to(device)
    k = torch.randint(len(model.prior.means), (n,), generator=gen)  # (n,)
    with torch.no_grad():
        z = model.prior.sample(eps.to(device), k.to(device), temperature)
    return z.float()


# ---------------------------------------------------------------------------------- the ELBO


def neg_elbo(model: Any, x: torch.Tensor, y: torch.Tensor | None = None, *, eps: torch.Tensor) -> torch.Tensor:
    """-ELBO per image (N,) in nats with beta = 1, for images x (N, 1, 28, 28) in [0, 1].

    z = mu + sigma eps for the given standard-normal draws ``eps``: (S, N, D), or (S, 1, D) to
    use the same draws for every image (then a digit's score does not depend on its batch-mates).
    The reconstruction term is averaged over the S draws (Kingma & Welling 2014, eq. 10); the KL
    is ``kl_term``'s, closed form under N(0, I) and averaged over the same draws under a learnt prior.
    """
    if not model.variational:
        raise ValueError("An autoencoder has no ELBO: its code is deterministic.")
    if eps.ndim == 2:
        eps = eps[None]
    n = len(x)
    if not model.conditional:
        y = None
    elif y is not None:
        y = torch.as_tensor(y, device=x.device).long().reshape(-1)
        y = y.expand(n) if len(y) == 1 else y
    mu, logvar = model.encode(x, y)  # (N, D) each
    s = eps.shape[0]
    z = reparameterize(mu, logvar, eps.to(device=mu.device, dtype=mu.dtype))  # (S, N, D)
    logits = model.decode_logits(z.reshape(s * n, -1), y.repeat(s) if y is not None else None)
    recon = bernoulli_nll(logits, x.repeat(s, 1, 1, 1)).view(s, n).mean(0)  # (N,)
    return recon + kl_term(model, mu, logvar, z)
