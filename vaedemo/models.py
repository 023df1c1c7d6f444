"""The networks: the lecture's conv AE and MLP VAE (bugs fixed), a conv VAE, a conditional VAE and a GAN.

Every model is a config dataclass plus an ``nn.Module`` built from it, shares one interface
(``encode``, ``decode``, ``forward``, ``loss``) and is found by name in ``REGISTRY``. The GAN is the
lecture's implicit model: it only samples, and its ``encode`` is a search (GAN inversion).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm

from . import distributions
from .distributions import LOG_2PI, prior_mmd  # noqa: F401  (prior_mmd: re-exported for training.py)


class Loss(NamedTuple):
    """Per-image averages, in nats: ``total = recon + beta * kl``."""

    total: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor


class Output(NamedTuple):
    loss: Loss
    x_hat: torch.Tensor  # (N, 1, H, W) pixel probabilities
    z: torch.Tensor  # (N, latent_dim) the code fed to the decoder
    mu: torch.Tensor  # (N, latent_dim)
    logvar: torch.Tensor | None  # (N, latent_dim); None for an AE


# ---------------------------------------------------------------------------------- configs


@dataclass
class AEConfig:
    latent_dim: int = 4  # the lecture's encoded_space_dim
    image_size: int = 28  # the conv stack below is sized for 28x28 (28→14→7→3)
    channels: tuple[int, int, int] = (8, 16, 32)  # conv widths, as in the lecture
    hidden_dim: int = 128  # the lecture's fc2_input_dim, now actually used


@dataclass
class ConvVAEConfig(AEConfig):
    latent_dim: int = 16
    beta: float = 1.0  # weight on the KL term (Higgins et al. 2017, beta-VAE)
    prior_components: int = 0  # 0: the N(0, I) prior; K: a learnt mixture of K Gaussians (MixturePrior)


@dataclass
class VAEConfig:
    input_dim: int = 784  # 28*28 pixels, flattened
    hidden_dim: int = 400
    latent_dim: int = 200
    beta: float = 1.0  # weight on the KL term (beta-VAE)
    image_size: int = 28
    prior_components: int = 0  # 0: the N(0, I) prior; K: a learnt mixture of K Gaussians (MixturePrior)


@dataclass
class CVAEConfig(VAEConfig):
    latent_dim: int = 16
    num_classes: int = 10  # labels are one-hot and concatenated to encoder and decoder inputs


GAN_AUGMENTS = ("none", "translation", "translation,cutout")


@dataclass
class GANConfig:
    latent_dim: int = 32  # z ~ N(0, I) of this size is all the generator starts from
    image_size: int = 28  # the conv stacks below are sized for 28x28 (7→14→28)
    g_channels: tuple[int, int] = (128, 64)  # generator widths at 7x7 and 14x14 (DCGAN's halved; twice as wide
    # again costs a training step only ~12% more on a CPU: the discriminator and the inverter dominate it)
    g_hidden: int = 0  # a fully connected layer of this width before the generator's 7x7 projection (0: none)
    d_channels: tuple[int, int] = (64, 128)  # discriminator widths at 14x14 and 7x7
    d_hidden: int = 0  # a fully connected layer of this width before the discriminator's logit (0: none)
    d_norm: str = "spectral"  # the discriminator's normalisation: "spectral" (Miyato et al. 2018), "batch", "none"
    d_augment: str = "none"  # DiffAugment (Zhao et al. 2020) on every image D sees, real or generated, in training:
    # "none", "translation" (up to 1/8 of the side) or "translation,cutout" (and a zeroed square of half the side)
    e_channels: tuple[int, int] = (32, 64)  # the inverter's conv widths at 14x14 and 7x7
    hidden_dim: int = 256  # the inverter's fully connected layer before its z head
    beta1: float = 0.5  # Adam's first-moment decay for G and D (DCGAN, Radford et al. 2016)
    ema: float = 0.999  # decay of the moving average of G's weights; the averaged G samples and decodes
    inverter_pixel_weight: float = 1.0  # weight of the inverter's pixel loss on real digits beside its z loss
    inversion_steps: int = 30  # Adam steps refining the inverter's guess in encode(); fixed, so results repeat
    inversion_lr: float = 0.05  # their learning rate, on z


def config_to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)


def config_from_dict(cls: type, data: dict) -> Any:
    """Rebuild a config, ignoring unknown keys so older files still load; tuples stay tuples."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key in known:
            kwargs[key] = tuple(value) if isinstance(value, list) else value
    config = cls(**kwargs)
    validate_config(config)
    return config


def validate_config(config: Any) -> None:
    for name in ("latent_dim", "hidden_dim", "input_dim", "num_classes", "image_size"):
        value = getattr(config, name, None)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value > 100_000:
            raise ValueError(f"{name} must be a whole number between 1 and 100000, not {value!r}.")
    beta = getattr(config, "beta", None)
    if beta is not None and not (isinstance(beta, (int, float)) and math.isfinite(beta) and 0 <= beta <= 1000):
        raise ValueError(f"beta must be a number between 0 and 1000, not {beta!r}.")
    components = getattr(config, "prior_components", 0)
    if isinstance(components, bool) or not isinstance(components, int) or not 0 <= components <= 10_000:
        raise ValueError(f"prior_components must be a whole number from 0 to 10000, not {components!r}.")
    if getattr(config, "image_size", 28) != 28:
        raise ValueError("These models are built for 28x28 images.")
    for name in ("g_channels", "d_channels", "e_channels"):
        widths = getattr(config, name, None)
        if widths is not None and (len(widths) != 2 or any(isinstance(c, bool) or not isinstance(c, int)
                                                          or not 1 <= c <= 1024 for c in widths)):
            raise ValueError(f"{name} must be two whole numbers between 1 and 1024, not {widths!r}.")
    for name in ("g_hidden", "d_hidden"):
        value = getattr(config, name, None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100_000):
            raise ValueError(f"{name} must be a whole number from 0 (none) to 100000, not {value!r}.")
    if getattr(config, "d_augment", "none") not in GAN_AUGMENTS:
        raise ValueError(f"d_augment must be one of {', '.join(map(repr, GAN_AUGMENTS))}, not {config.d_augment!r}.")
    if getattr(config, "d_norm", "spectral") not in ("spectral", "batch", "none"):
        raise ValueError(f"d_norm must be 'spectral', 'batch' or 'none', not {config.d_norm!r}.")
    steps = getattr(config, "inversion_steps", None)
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= 10_000):
        raise ValueError(f"inversion_steps must be a whole number from 0 to 10000, not {steps!r}.")
    for name, lo, hi in (("beta1", 0.0, 0.999), ("ema", 0.0, 0.99999), ("inversion_lr", 0.0, 10.0),
                         ("inverter_pixel_weight", 0.0, 1000.0)):
        value = getattr(config, name, None)
        if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                      and math.isfinite(value) and lo <= value <= hi):
            raise ValueError(f"{name} must be a number from {lo:g} to {hi:g}, not {value!r}.")
    channels = getattr(config, "channels", None)
    if channels is not None and (len(channels) != 3 or any(isinstance(c, bool) or not isinstance(c, int)
                                                           or not 1 <= c <= 1024 for c in channels)):
        raise ValueError(f"channels must be three whole numbers between 1 and 1024, not {channels!r}.")


# ---------------------------------------------------------------------------------- priors


class MixturePrior(nn.Module):
    """A learnt prior p(z) = 1/K sum_k N(z; m_k, diag s_k^2), trained with the rest of the model.

    Under N(0, I) much of the prior's mass lies where no digit's code goes (its "holes"), and
    samples from there decode to blends. A prior learnt with the encoder follows the codes
    instead: the mixture-of-Gaussians prior that Tomczak & Welling's VampPrior (2018) starts
    from, with equal, fixed weights.
    """

    def __init__(self, components: int, latent_dim: int):
        super().__init__()
        # Near-identical bumps around 0 that part as the codes spread out (as VampPrior starts).
        self.means = nn.Parameter(0.1 * torch.randn(components, latent_dim))
        self.logvars = nn.Parameter(torch.zeros(components, latent_dim))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z), (...,) for z of shape (..., D)."""
        # float32 even under bf16 autocast: the expanded sum below cancels large terms
        with torch.autocast(z.device.type, enabled=False):
            flat = z.reshape(-1, z.shape[-1]).float()
            means, logvars = self.means.float(), self.logvars.float()
            inv = torch.exp(-logvars)  # (K, D)
            # sum_d (z_d - m_kd)^2 / s_kd^2, expanded into matrix products: (M, K) without an (M, K, D) tensor
            quad = flat.pow(2) @ inv.T - 2 * flat @ (means * inv).T + (means.pow(2) * inv).sum(1)
            log_n = -0.5 * (z.shape[-1] * LOG_2PI + logvars.sum(1) + quad.clamp_min(0))
            return (torch.logsumexp(log_n, dim=1) - math.log(len(means))).view(z.shape[:-1])

    def sample(self, eps: torch.Tensor, components: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """z = m_k + T s_k eps for the given standard-normal draws (N, D) and component indices (N,)."""
        return self.means[components] + temperature * torch.exp(0.5 * self.logvars[components]) * eps

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean (D,), standard deviation (D,)) of the whole mixture, per dimension."""
        mean = self.means.mean(0)
        var = (self.logvars.exp() + self.means.pow(2)).mean(0) - mean.pow(2)
        return mean, var.clamp_min(0).sqrt()


# ---------------------------------------------------------------------------------- base


class LatentModel(nn.Module):
    """The interface the trainer and the UI use; subclasses provide the networks."""

    kind: str = ""
    conditional: bool = False
    variational: bool = True
    implicit: bool = False  # True for a GAN: it samples but defines no p(x), so no ELBO and no posterior

    def __init__(self, config: Any):
        super().__init__()
        validate_config(config)
        self.config = config
        components = getattr(config, "prior_components", 0)
        self.prior = MixturePrior(components, config.latent_dim) if components else None

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def beta(self) -> float:
        return float(getattr(self.config, "beta", 0.0))

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z), (...,) for z of shape (..., D): N(0, I), or the learnt mixture."""
        return distributions.log_prior(self, z)

    # -- to implement
    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    # -- shared
    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Pixel probabilities, (N, 1, 28, 28)."""
        return torch.sigmoid(self.decode_logits(z, y))

    def _labels(self, y: torch.Tensor | None) -> torch.Tensor | None:
        if not self.conditional:
            return None
        if y is None:
            raise ValueError(f"A {self.kind} model needs the digit's label as well.")
        return y

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, beta: float | None = None,
                sample: bool | None = None) -> Output:
        """Encode, draw z, decode and score; x is (N, 1, 28, 28) in [0, 1].

        z is sampled from q(z|x) in training mode (or when ``sample=True``, as an ELBO estimate
        needs) and is the mean otherwise, so inference is deterministic unless asked.
        """
        y = self._labels(y)
        mu, logvar = self.encode(x, y)
        sample = self.training if sample is None else sample
        z = distributions.reparameterize(mu, logvar) if logvar is not None and sample else mu
        logits = self.decode_logits(z, y)
        recon = distributions.bernoulli_nll(logits, x).mean()
        # Closed form under N(0, I); under a learnt prior a one-draw estimate, from this z when it was sampled.
        kl = distributions.kl_term(self, mu, logvar, z if sample else None).mean()
        b = self.beta if beta is None else beta
        return Output(Loss(recon + b * kl, recon, kl), torch.sigmoid(logits), z, mu, logvar)

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None, beta: float | None = None) -> Loss:
        """(total, recon, kl) per image in nats, with z sampled as in training."""
        return self.forward(x, y, beta, sample=True).loss

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


# ---------------------------------------------------------------------------------- conv nets


class ConvEncoder(nn.Module):
    """The lecture's encoder, layer for layer: 1x28x28 → 8x14x14 → 16x7x7 → 32x3x3 → hidden."""

    def __init__(self, config: AEConfig, out_dim: int | None = None):
        super().__init__()
        c1, c2, c3 = config.channels
        self.encoder_cnn = nn.Sequential(
            nn.Conv2d(1, c1, kernel_size=3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, kernel_size=3, stride=2, padding=1),
            nn.BatchNorm2d(c2),
            nn.ReLU(inplace=True),
            nn.Conv2d(c2, c3, kernel_size=3, stride=2, padding=0),
            nn.ReLU(inplace=True),
        )
        self.flatten = nn.Flatten(start_dim=1)
        # Lecture bug: fc2_input_dim was accepted and ignored (128 was hard-coded); it sizes this layer now.
        layers = [nn.Linear(3 * 3 * c3, config.hidden_dim), nn.ReLU(inplace=True)]
        if out_dim is not None:  # the AE's code layer; a VAE puts its two heads on the hidden features
            layers.append(nn.Linear(config.hidden_dim, out_dim))
        self.encoder_lin = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder_lin(self.flatten(self.encoder_cnn(x)))  # (N, out_dim or hidden_dim)


class ConvDecoder(nn.Module):
    """Mirror of the encoder: latent → 32x3x3 → 16x7x7 → 8x14x14 → 1x28x28 logits."""

    def __init__(self, config: AEConfig):
        super().__init__()
        c1, c2, c3 = config.channels
        self.decoder_lin = nn.Sequential(
            nn.Linear(config.latent_dim, config.hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(config.hidden_dim, 3 * 3 * c3),
            nn.ReLU(inplace=True),
        )
        self.unflatten = nn.Unflatten(dim=1, unflattened_size=(c3, 3, 3))
        self.decoder_cnn = nn.Sequential(
            nn.ConvTranspose2d(c3, c2, kernel_size=3, stride=2, output_padding=0),
            nn.BatchNorm2d(c2),
            nn.ReLU(inplace=True),
            # Lecture bug: output_padding=0 here made 3→7→13→26, so 28x28 came back 26x26.
            nn.ConvTranspose2d(c2, c1, kernel_size=3, stride=2, padding=1, output_padding=1),
            nn.BatchNorm2d(c1),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(c1, 1, kernel_size=3, stride=2, padding=1, output_padding=1),
            # Lecture bug: a ReLU here before the sigmoid made every output pixel >= 0.5.
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # Lecture bug: forward called self.decoder_conv, but the layer is named decoder_cnn.
        return self.decoder_cnn(self.unflatten(self.decoder_lin(z)))  # (N, 1, 28, 28) logits


class ConvAE(LatentModel):
    """The lecture's convolutional AutoEncoder (deterministic code, no KL)."""

    kind = "ae"
    variational = False

    def __init__(self, config: AEConfig):
        super().__init__(config)
        self.encoder = ConvEncoder(config, out_dim=config.latent_dim)
        self.decoder = ConvDecoder(config)

    @property
    def beta(self) -> float:
        return 0.0

    def encode(self, x, y=None):
        return self.encoder(x), None

    def decode_logits(self, z, y=None):
        return self.decoder(z)


class ConvVAE(LatentModel):
    """The AE's conv encoder/decoder with a Gaussian latent: mean and log-variance heads."""

    kind = "conv-vae"

    def __init__(self, config: ConvVAEConfig):
        super().__init__(config)
        self.encoder = ConvEncoder(config)
        self.mean = nn.Linear(config.hidden_dim, config.latent_dim)
        self.logvar = nn.Linear(config.hidden_dim, config.latent_dim)
        self.decoder = ConvDecoder(config)

    def encode(self, x, y=None):
        h = self.encoder(x)
        return self.mean(h), self.logvar(h)

    def decode_logits(self, z, y=None):
        return self.decoder(z)


# ---------------------------------------------------------------------------------- MLP nets


class MLPEncoder(nn.Module):
    def __init__(self, input_dim: int, hidden_dim: int, latent_dim: int):
        super().__init__()
        self.input1 = nn.Linear(input_dim, hidden_dim)
        self.input2 = nn.Linear(hidden_dim, hidden_dim)
        self.mean = nn.Linear(hidden_dim, latent_dim)
        self.var = nn.Linear(hidden_dim, latent_dim)  # outputs log sigma^2, as in the lecture
        self.LeakyReLU = nn.LeakyReLU(0.2)
        # Lecture bug: `self.training = True` here overrode nn.Module's train/eval flag; removed.

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.LeakyReLU(self.input1(x))
        h = self.LeakyReLU(self.input2(h))
        return self.mean(h), self.var(h)  # (N, latent), (N, latent)


class MLPDecoder(nn.Module):
    def __init__(self, latent_dim: int, hidden_dim: int, output_dim: int):
        super().__init__()
        self.hidden1 = nn.Linear(latent_dim, hidden_dim)
        self.hidden2 = nn.Linear(hidden_dim, hidden_dim)
        self.output = nn.Linear(hidden_dim, output_dim)
        self.LeakyReLU = nn.LeakyReLU(0.2)

    # Lecture bug: this method was spelt `foward`, so calling the decoder raised NotImplementedError.
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.LeakyReLU(self.hidden1(z))
        h = self.LeakyReLU(self.hidden2(h))
        return self.output(h)  # (N, output_dim) logits; the sigmoid is applied in decode()


class MLPVAE(LatentModel):
    """The lecture's MLP VAE: 784→400→400→(mu, logvar) of size 200, decoder 200→400→400→784."""

    kind = "vae"

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        extra = self._condition_dim()
        self.Encoder = MLPEncoder(config.input_dim + extra, config.hidden_dim, config.latent_dim)
        self.Decoder = MLPDecoder(config.latent_dim + extra, config.hidden_dim, config.input_dim)

    def _condition_dim(self) -> int:
        return 0

    def _with_label(self, h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return h

    def encode(self, x, y=None):
        return self.Encoder(self._with_label(x.flatten(1), y))

    def decode_logits(self, z, y=None):
        s = self.config.image_size
        return self.Decoder(self._with_label(z, y)).view(-1, 1, s, s)


class CVAE(MLPVAE):
    """Class-conditional MLP VAE (Sohn et al. 2015): the label is an input to both halves."""

    kind = "cvae"
    conditional = True

    def _condition_dim(self) -> int:
        return self.config.num_classes

    def _with_label(self, h, y):
        if y is None:
            raise ValueError("A cvae model needs the digit's label as well.")
        y = torch.as_tensor(y, device=h.device).long().view(-1)
        if len(y) == 1 and len(h) > 1:
            y = y.expand(len(h))
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.config.num_classes):
            raise ValueError(f"Labels must be between 0 and {self.config.num_classes - 1}.")
        return torch.cat([h, F.one_hot(y, self.config.num_classes).to(h.dtype)], dim=1)


# ---------------------------------------------------------------------------------- GAN


class Generator(nn.Module):
    """DCGAN's generator (Radford et al. 2016), sized for 28x28: z → c1x7x7 → c2x14x14 → 1x28x28 logits."""

    def __init__(self, config: GANConfig):
        super().__init__()
        c1, c2 = config.g_channels
        width, hidden = config.latent_dim, []
        if config.g_hidden:  # as InfoGAN's MNIST generator (Chen et al. 2016, appendix C.1)
            hidden = [nn.Linear(width, config.g_hidden), nn.BatchNorm1d(config.g_hidden), nn.ReLU(inplace=True)]
            width = config.g_hidden
        self.project = nn.Sequential(*hidden, nn.Linear(width, c1 * 7 * 7), nn.BatchNorm1d(c1 * 7 * 7),
                                     nn.ReLU(inplace=True), nn.Unflatten(1, (c1, 7, 7)))
        self.up = nn.Sequential(
            nn.ConvTranspose2d(c1, c2, kernel_size=4, stride=2, padding=1),  # 14x14
            nn.BatchNorm2d(c2),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(c2, 1, kernel_size=4, stride=2, padding=1),  # 28x28; the sigmoid is in decode()
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.up(self.project(z))  # (N, 1, 28, 28) logits


class Discriminator(nn.Module):
    """Real or generated? Strided convs with spectral normalisation on every layer (Miyato et al. 2018),
    which bounds its Lipschitz constant and keeps the non-saturating game stable without tuning."""

    def __init__(self, config: GANConfig):
        super().__init__()
        c1, c2 = config.d_channels
        norm = spectral_norm if config.d_norm == "spectral" else (lambda layer: layer)
        hidden = ([norm(nn.Linear(c2 * 7 * 7, config.d_hidden)), nn.LeakyReLU(0.2, inplace=True)]
                  if config.d_hidden else [])
        batch = [nn.BatchNorm2d(c2)] if config.d_norm == "batch" else []  # DCGAN: none on the first layer
        self.net = nn.Sequential(
            norm(nn.Conv2d(1, c1, kernel_size=4, stride=2, padding=1)),  # 14x14
            nn.LeakyReLU(0.2, inplace=True),
            norm(nn.Conv2d(c1, c2, kernel_size=4, stride=2, padding=1)),  # 7x7
            *batch,
            nn.LeakyReLU(0.2, inplace=True),
            nn.Flatten(),
            *hidden,
            norm(nn.Linear(config.d_hidden or c2 * 7 * 7, 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(2 * x - 1).squeeze(1)  # (N,) logits of "real"; pixels in [0, 1] → [-1, 1]


class Inverter(nn.Module):
    """The GAN's encoder: a first guess of the z that made an image, trained on the generator's own
    samples (and its reconstructions of real digits). No batch norm, so a guess never depends on batch-mates."""

    def __init__(self, config: GANConfig):
        super().__init__()
        c1, c2 = config.e_channels
        self.net = nn.Sequential(
            nn.Conv2d(1, c1, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),  # 14x14
            nn.Conv2d(c1, c2, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),  # 7x7
            nn.Flatten(),
            nn.Linear(c2 * 7 * 7, config.hidden_dim), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(config.hidden_dim, config.latent_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(2 * x - 1)  # (N, latent_dim)


class GAN(LatentModel):
    """A DCGAN (the lecture's implicit model: 생성자 G and 판별자 D) with an inverter for GAN inversion.

    ``generator`` and ``discriminator`` play the game in training (``training.train``); ``generator_ema``,
    a moving average of the generator's weights, is the one that samples and decodes (Karras et al. 2018;
    Yazıcı et al. 2019). ``encode`` is GAN inversion: the inverter's guess refined by a fixed number of
    steps that minimise the reconstruction error through the frozen averaged generator. There is no
    ELBO, so ``forward`` and ``loss`` refuse with a sentence.
    """

    kind = "gan"
    variational = False
    conditional = False
    implicit = True
    prior = None

    def __init__(self, config: GANConfig):
        super().__init__(config)
        self.generator = Generator(config)
        self.discriminator = Discriminator(config)
        self.inverter = Inverter(config)
        self.generator_ema = Generator(config)
        self.generator_ema.load_state_dict(self.generator.state_dict())
        self.generator_ema.requires_grad_(False)
        self.generator_ema.eval()

    def train(self, mode: bool = True) -> GAN:
        """The averaged generator stays in eval mode: it is never trained by gradients, and its batch-norm
        statistics are recomputed for it (``training.standing_statistics``), so decoding never depends on
        batch-mates."""
        super().train(mode)
        self.generator_ema.eval()
        return self

    def decode_logits(self, z, y=None):
        return self.generator_ema(z)  # (N, 1, 28, 28)

    def discriminate(self, x: torch.Tensor) -> torch.Tensor:
        """The discriminator's logit of "real" for images (N, 1, 28, 28) in [0, 1]: (N,)."""
        return self.discriminator(x)

    def inversion_loss(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per image (N,): -log p(x|z) - log N(z; 0, I) up to a constant, the Bernoulli reconstruction
        error of G(z) plus 0.5 |z|^2, so the search finds a MAP code that stays where the prior puts mass."""
        return distributions.bernoulli_nll(self.generator_ema(z), x) + 0.5 * z.pow(2).sum(1)

    def invert(self, x: torch.Tensor, steps: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(the inverter's guess, the refined code), each (N, latent_dim), for images (N, 1, 28, 28) in [0, 1].

        ``steps`` (default ``config.inversion_steps``) Adam steps on z alone, from the guess. Every image's
        loss is summed, not averaged, and Adam works per element, so an image's code does not depend on
        its batch-mates; nothing random is drawn, so the same image gives the same code. Works under
        ``torch.no_grad()`` and ``torch.inference_mode()`` callers, and never touches the weights' gradients.
        """
        steps = self.config.inversion_steps if steps is None else int(steps)
        with torch.inference_mode(False), torch.enable_grad():
            x = x.detach().clone().float()
            with torch.no_grad():
                guess = self.inverter(x).float()
            z = guess.clone().requires_grad_(True)
            if steps > 0:
                opt = torch.optim.Adam([z], lr=self.config.inversion_lr)
                for _ in range(steps):
                    loss = self.inversion_loss(z, x).sum()
                    (grad,) = torch.autograd.grad(loss, z)
                    z.grad = grad
                    opt.step()
            return guess.detach(), z.detach()

    def encode(self, x, y=None):
        """GAN inversion (see ``invert``): (z, None); there is no posterior, so no log-variance."""
        return self.invert(x)[1], None

    def forward(self, x, y=None, beta=None, sample=None):
        raise ValueError("A GAN has no ELBO to compute: it is an implicit model that only samples. "
                         "Train it with training.train and score it with metrics.evaluate.")

    def loss(self, x, y=None, beta=None):
        return self.forward(x, y, beta)


# ---------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class ModelSpec:
    config_cls: type
    model_cls: type
    description: str = field(default="")
    label: str = ""  # short name for menus and captions ("Conv VAE")
    title: str = ""  # long name for the Train tab's model menu ("VAE (MLP, as in the lecture)")


REGISTRY: dict[str, ModelSpec] = {
    "ae": ModelSpec(AEConfig, ConvAE, "The lecture's convolutional autoencoder (latent 4).",
                    "AE", "Plain autoencoder (AE)"),
    "vae": ModelSpec(VAEConfig, MLPVAE, "The lecture's MLP variational autoencoder (latent 200).",
                     "VAE", "VAE (MLP, as in the lecture)"),
    "conv-vae": ModelSpec(ConvVAEConfig, ConvVAE, "Convolutional VAE: the AE's conv layers with a Gaussian latent.",
                          "Conv VAE", "Conv VAE"),
    "cvae": ModelSpec(CVAEConfig, CVAE, "Class-conditional MLP VAE: ask it for a chosen digit.",
                      "CVAE", "Conditional VAE (CVAE)"),
    "gan": ModelSpec(GANConfig, GAN, "A DCGAN, the lecture's implicit model: a generator and a discriminator, "
                     "plus an inverter so real digits can be encoded by GAN inversion.",
                     label="GAN", title="GAN (DCGAN: generator and discriminator)"),
}


def kind_label(kind: str) -> str:
    """The short label of a model kind ("conv-vae" → "Conv VAE"); an unknown kind is shown as it is."""
    spec = REGISTRY.get(kind)
    return spec.label if spec is not None and spec.label else kind


def build_model(kind: str, **overrides: Any) -> LatentModel:
    """``build_model("vae", latent_dim=2, beta=4.0)``; unknown settings are refused."""
    if kind not in REGISTRY:
        raise ValueError(f"Unknown model {kind!r}; choose one of: {', '.join(REGISTRY)}.")
    spec = REGISTRY[kind]
    names = {f.name for f in dataclasses.fields(spec.config_cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"A {kind} model has no setting {', '.join(unknown)}.")
    config = spec.config_cls(**{k: v for k, v in overrides.items() if v is not None})
    return spec.model_cls(config)


def model_from_config(kind: str, config: dict) -> LatentModel:
    if kind not in REGISTRY:
        raise ValueError(f"Unknown model {kind!r}; choose one of: {', '.join(REGISTRY)}.")
    spec = REGISTRY[kind]
    return spec.model_cls(config_from_dict(spec.config_cls, config))
