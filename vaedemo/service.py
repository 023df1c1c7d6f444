"""The app's backend: a shared cache of loaded models, inference for each tab, latent maps and a training runner.

numpy arrays, dataclasses and plain values in and out (no gradio). Errors a user can cause are
``ValueError`` with one sentence to act on. Nothing here keeps per-user state: loaded models,
latent maps and per-checkpoint statistics are read-only caches shared by every request.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from statistics import NormalDist
from typing import Any, Callable

import numpy as np
import torch

from . import __version__
from .checkpoints import CONFIG, WEIGHTS, file_signature, load_folder, resolve, scan_checkpoints, validate_name, write_bytes_atomic
from .data import bundled_digits, load_dataset
from .device import pick_device
from .images import preprocess_image
from .models import LatentModel, bernoulli_nll, gaussian_kl, normal_logpdf
from .projections import PCAProjection, TSNEProjection, _median_nn_spacing, far_from_map

log = logging.getLogger(__name__)

KIND_LABELS = {"ae": "AE", "vae": "VAE", "conv-vae": "Conv VAE", "cvae": "CVAE"}
METHODS = ("pca", "tsne")
MAP_SIZE = 10_000  # digits on a latent map: all the bundled ones
MIN_MAP_SIZE = 20
BATCH = 1000  # inference batch for encoding many digits
ELBO_SAMPLES = 8  # z samples per image for the -ELBO shown in the app (fixed seed, so it is repeatable)
# With Barnes-Hut angle 0.8 (projections.TSNEProjection), 600 iterations map 10,000 codes in about 0.4x
# the time of scikit-learn's defaults and keep nearly as many 10-NN neighbours (BENCHMARKS.md, section 3).
TSNE_MAX_ITER = 600
MAP_FORMAT = 2  # 2: keyed by the weights' content hash, not their mtime
_BLANK = "The image looks blank — draw or upload a digit."

ProgressFn = Callable[[float, str], Any]  # progress(fraction in [0, 1], message); gr.Progress fits


# ---------------------------------------------------------------------------------- input checks


def _to_float(value: Any, what: str) -> float:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{what} must be a number, not {value!r}.")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError(f"{what} must be a number, not {value!r}.") from None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, not {value!r}.") from None
    if not math.isfinite(number):
        raise ValueError(f"{what} must be a finite number, not {value!r}.")
    return number


def _whole(value: Any, what: str, lo: int, hi: int) -> int:
    """An integer in [lo, hi]; whole floats such as 16.0 (web forms send them) are accepted."""
    number = _to_float(value, what)
    if number != int(number) or not lo <= number <= hi:
        raise ValueError(f"{what} must be a whole number from {lo} to {hi}, not {value!r}.")
    return int(number)


def _number(value: Any, what: str, lo: float, hi: float, lo_open: bool = False) -> float:
    number = _to_float(value, what)
    if number > hi or number < lo or (lo_open and number == lo):
        allowed = f"above {lo:g} and at most {hi:g}" if lo_open else f"from {lo:g} to {hi:g}"
        raise ValueError(f"{what} must be a number {allowed}, not {value!r}.")
    return number


def _method(method: Any) -> str:
    m = str(method or "").strip().lower().replace("-", "").replace("_", "")
    if m not in METHODS:
        raise ValueError(f"Unknown map method {method!r}; use 'pca' or 'tsne'.")
    return m


def _label(model: LatentModel, label: Any, what: str = "The digit") -> int | None:
    """A class label for a cvae (None stays None); other models ignore labels."""
    if not model.conditional or label is None:
        return None
    return _whole(label, what, 0, model.config.num_classes - 1)


# ---------------------------------------------------------------------------------- shared data


@lru_cache(maxsize=1)
def _bundled() -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 bundled digits, loaded once and read-only: uint8 (N, 28, 28), int64 (N,)."""
    x, y = bundled_digits()
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


@lru_cache(maxsize=1)
def _validation() -> tuple[np.ndarray, np.ndarray]:
    """mnist-10k's validation split (1,000 digits), the reference for the -ELBO percentile."""
    ds = load_dataset("mnist-10k")
    ds.x_val.setflags(write=False)
    ds.y_val.setflags(write=False)
    return ds.x_val, ds.y_val


def digit_input(source: Any) -> np.ndarray:
    """An upload, sketch dict, file path, PIL image or array → float32 (28, 28) in [0, 1], framed like MNIST.

    An int picks bundled digit number ``source`` (0..9999) as it is, without re-framing.
    """
    if isinstance(source, (int, np.integer)) and not isinstance(source, bool):
        x, _ = _bundled()
        index = _whole(source, "The digit number", 0, len(x) - 1)
        return x[index].astype(np.float32) / 255.0
    return preprocess_image(source)


def _as_digit(image: Any) -> np.ndarray:
    """A float (28, 28) array in [0, 1] is taken as already preprocessed; anything else goes through digit_input."""
    arr = image if isinstance(image, np.ndarray) else None
    if arr is None or arr.shape != (28, 28) or not np.issubdtype(arr.dtype, np.floating):
        return digit_input(image)
    if not np.isfinite(arr).all():
        raise ValueError("The image contains NaN or infinite values.")
    if arr.max() > 1.0 + 1e-6 or arr.min() < -1e-6:  # not our format, e.g. 0..255: frame it like an upload
        return digit_input(arr)
    arr = np.clip(arr.astype(np.float32), 0.0, 1.0)
    if arr.max() < 0.05:
        raise ValueError(_BLANK)
    return arr


# ---------------------------------------------------------------------------------- model cache


def _fingerprint(folder: Path) -> int:
    """A content hash of the weights: unlike mtimes it survives a git clone, so shipped maps stay valid."""
    digest = hashlib.sha256((folder / WEIGHTS).read_bytes()).digest()
    return int.from_bytes(digest[:7], "big")  # fits an int64 in the map files


def _signature(folder: Path) -> tuple:
    """The checkpoint's file signature (checkpoints.file_signature), refusing a folder with a file missing."""
    sig = file_signature(folder)
    for fname, part in zip((CONFIG, WEIGHTS), sig):
        if part is None:
            raise ValueError(f"The checkpoint {folder.name!r} is incomplete (its {fname} is missing).")
    return sig


@dataclass(eq=False)
class _Entry:
    """One loaded checkpoint plus statistics computed once on first use (under ``lock``)."""

    name: str
    folder: Path
    fingerprint: int  # content hash of the weights (see _fingerprint)
    sig: tuple
    model: torch.nn.Module  # a LatentModel, or the digit classifier in READERS
    config: dict
    lock: threading.RLock = field(default_factory=threading.RLock)
    extras: dict = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def extra(self, key: str, compute: Callable[["_Entry"], Any]) -> Any:
        value = self.extras.get(key)
        if value is None:
            with self.lock:
                value = self.extras.get(key)
                if value is None:
                    value = compute(self)
                    self.extras[key] = value
        return value


class ModelStore:
    """Process-wide, thread-safe cache of loaded models keyed by (name, files' mtime).

    Models are in eval mode and are never changed by requests; a checkpoint saved again under
    the same name is reloaded on the next call. At most ``max_models`` stay loaded (LRU).
    Entries are keyed by folder, so changing $VAEDEMO_CHECKPOINT_DIR never mixes two checkpoints.
    ``load(folder, device)`` returns (model, config) and raises ValueError with the reason.
    """

    def __init__(self, max_models: int = 8, load: Callable[[Path, Any], tuple[torch.nn.Module, dict]] = load_folder):
        self.max_models = max_models
        self._load = load
        self._lock = threading.Lock()  # guards the two dicts below
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # folder → entry
        self._loading: dict[str, threading.Lock] = {}  # one loader per folder; others wait for it

    def entry(self, name: Any) -> _Entry:
        folder = resolve(validate_name(name))
        if not folder.is_dir():
            raise ValueError(f"There is no checkpoint named {name!r}; pick one from the list.")
        sig = _signature(folder)
        key = str(folder)
        with self._lock:
            cached = self._entries.get(key)
            if cached is not None and cached.sig == sig:
                self._entries.move_to_end(key)
                return cached
            folder_lock = self._loading.setdefault(key, threading.Lock())
        with folder_lock:
            with self._lock:
                cached = self._entries.get(key)
                if cached is not None and cached.sig == sig:
                    return cached
            model, config = self._load(folder, pick_device())  # raises ValueError with the reason
            model.eval().requires_grad_(False)
            entry = _Entry(name, folder, _fingerprint(folder), sig, model, config)
            with self._lock:
                self._entries[key] = entry
                self._entries.move_to_end(key)
                while len(self._entries) > self.max_models:
                    self._entries.popitem(last=False)
        return entry

    def get(self, name: Any) -> torch.nn.Module:
        """The loaded model (eval mode, on ``pick_device()``); ValueError for a bad, missing or broken name."""
        return self.entry(name).model

    def loaded(self) -> list[str]:
        """Names of the checkpoints in memory, least recently used first."""
        with self._lock:
            return [e.name for e in self._entries.values()]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


STORE = ModelStore()


def checkpoint_choices() -> list[tuple[str, str]]:
    """(label, name) for every checkpoint that loads, e.g. ('vae-mnist · VAE · latent 200', 'vae-mnist')."""
    return [(f"{i.name} · {KIND_LABELS.get(i.kind, i.kind)} · latent {i.latent_dim}", i.name)
            for i in scan_checkpoints() if i.ok]


def broken_checkpoints() -> list[tuple[str, str]]:
    """(name, reason) for every checkpoint folder that does not load."""
    return [(i.name, i.reason) for i in scan_checkpoints() if not i.ok]


def checkpoint_info(checkpoint: str) -> dict:
    """What the UI needs to adapt to a model: kind, sizes, and how sampling works for it."""
    entry = STORE.entry(checkpoint)
    m = entry.model
    typical = None  # the root-mean-square length of a prior draw: sqrt(sum_d mean_d² + var_d)
    if not m.variational:
        note = ("A plain autoencoder has no prior, so samples come from a Gaussian fitted to the codes of "
                "the bundled digits.")
    else:
        mean, scale = _prior(entry)
        typical = math.sqrt(float((mean**2 + np.diag(scale) ** 2).sum()))
        note = ("Samples are decoded from z ~ N(0, T²·I)." if m.prior is None else
                f"This model learnt its prior: a mixture of {len(m.prior.means)} Gaussians placed where digits' "
                "codes lie. Each sample picks one at random and draws from it, its spread scaled by T.")
    return {"name": entry.name, "kind": m.kind, "kind_label": KIND_LABELS.get(m.kind, m.kind),
            "latent_dim": m.latent_dim, "variational": m.variational, "conditional": m.conditional,
            "num_classes": int(getattr(m.config, "num_classes", 10)), "sampling_note": note,
            "typical_norm": typical,
            "class_names": entry.config.get("class_names") or [str(i) for i in range(10)],
            "metrics": (entry.config.get("metrics") or {}).get("validation", {})}


# ---------------------------------------------------------------------------------- torch helpers


def _tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.tensor(np.asarray(images, dtype=np.float32)).reshape(-1, 1, 28, 28).to(device)


def _labels_t(labels: Any, n: int, device: torch.device) -> torch.Tensor | None:
    if labels is None:
        return None
    y = torch.tensor(np.asarray(labels, dtype=np.int64)).reshape(-1)
    return (y.expand(n) if len(y) == 1 else y).to(device)


@torch.no_grad()
def _encode(model: LatentModel, images: np.ndarray, labels: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(mu (N, D), logvar (N, D) or None) for float images (N, 28, 28), in batches of BATCH."""
    device = next(model.parameters()).device
    mus, logvars = [], []
    for i in range(0, len(images), BATCH):
        x = _tensor(images[i : i + BATCH], device)
        y = _labels_t(labels[i : i + BATCH] if labels is not None and np.ndim(labels) else labels, len(x), device)
        mu, logvar = model.encode(x, y if model.conditional else None)
        mus.append(mu.float().cpu().numpy())
        if logvar is not None:
            logvars.append(logvar.float().cpu().numpy())
    return np.concatenate(mus), (np.concatenate(logvars) if logvars else None)


@torch.no_grad()
def _decode(model: LatentModel, z: np.ndarray, labels: Any = None) -> np.ndarray:
    """Pixel probabilities (N, 28, 28) for codes (N, D)."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(z), BATCH):
        zb = torch.tensor(np.asarray(z[i : i + BATCH], dtype=np.float32)).to(device)
        y = _labels_t(labels[i : i + BATCH] if labels is not None and np.ndim(labels) else labels, len(zb), device)
        out.append(model.decode(zb, y if model.conditional else None).float().cpu().numpy()[:, 0])
    return np.concatenate(out) if out else np.zeros((0, 28, 28), np.float32)


def _normal(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Standard normal draws from a private, seeded generator: repeatable and thread-safe."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(shape, generator=gen).numpy()


@torch.no_grad()
def _neg_elbo(model: LatentModel, images: np.ndarray, labels: Any = None, samples: int = ELBO_SAMPLES,
              seed: int = 0) -> np.ndarray:
    """-ELBO per image (N,) in nats, with beta = 1: KL analytically plus the reconstruction term
    averaged over ``samples`` fixed draws of z ~ q(z|x) (Kingma & Welling 2014, eq. 10). Under a
    learnt prior the KL has no closed form and is averaged over the same draws."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(images), BATCH // samples):
        x = _tensor(images[i : i + BATCH // samples], device)
        n = len(x)
        y = _labels_t(labels[i : i + n] if labels is not None and np.ndim(labels) else labels, n, device)
        y = y if model.conditional else None
        mu, logvar = model.encode(x, y)
        # The same draws for every image, so a digit's score does not depend on its batch-mates.
        eps = torch.from_numpy(_normal((samples, 1, mu.shape[1]), seed)).to(device)  # (S, 1, D)
        z = (mu + (0.5 * logvar).exp() * eps).reshape(samples * n, -1)  # (S*n, D)
        logits = model.decode_logits(z, y.repeat(samples) if y is not None else None)
        recon = bernoulli_nll(logits, x.repeat(samples, 1, 1, 1)).view(samples, n).mean(0)
        if model.prior is None:
            kl = gaussian_kl(mu, logvar).sum(1)  # (n,)
        else:
            zs = z.view(samples, n, -1)
            kl = (normal_logpdf(zs, mu, logvar) - model.log_prior(zs)).mean(0)
        out.append((recon + kl).double().cpu().numpy())
    return np.concatenate(out)


def _best_label(model: LatentModel, image: np.ndarray) -> int:
    """For a cvae without a given label: the class whose -ELBO for this image is lowest."""
    k = model.config.num_classes
    scores = _neg_elbo(model, np.repeat(image[None], k, axis=0), np.arange(k))
    return int(np.argmin(scores))


# ---------------------------------------------------------------------------------- per-checkpoint statistics


def _bundled_codes(entry: _Entry) -> np.ndarray:
    """mu of every bundled digit (10000, D) float32, with its true label for a cvae."""
    def compute(e: _Entry) -> np.ndarray:
        x, y = _bundled()
        codes, _ = _encode(e.model, x.astype(np.float32) / 255.0, y)
        codes.setflags(write=False)
        return codes
    return entry.extra("bundled_codes", compute)


def _validation_neg_elbo(entry: _Entry) -> np.ndarray:
    """Sorted -ELBO of the 1,000 validation digits, for the percentile of a new digit."""
    def compute(e: _Entry) -> np.ndarray:
        x, y = _validation()
        values = np.sort(_neg_elbo(e.model, x.astype(np.float32) / 255.0, y))
        values.setflags(write=False)
        return values
    return entry.extra("val_neg_elbo", compute)


def _code_gaussian(entry: _Entry) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), Cholesky factor (D, D)) of a Gaussian fitted to the bundled digits' codes.

    An AE has no prior to sample from; this Gaussian stands in for it.
    """
    def compute(e: _Entry) -> tuple[np.ndarray, np.ndarray]:
        codes = _bundled_codes(e).astype(np.float64)
        cov = np.atleast_2d(np.cov(codes, rowvar=False))
        cov += 1e-6 * np.eye(len(cov)) * max(1.0, float(np.trace(cov)) / len(cov))
        return codes.mean(0), np.linalg.cholesky(cov)
    return entry.extra("code_gaussian", compute)


def _prior(entry: _Entry) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) such that z = mean + scale @ eps, eps ~ N(0, I), draws from the sampling prior.

    N(0, I) for a VAE; for a learnt mixture prior, the Gaussian with the mixture's mean and spread
    per dimension (what grids and traversals measure in); the AE's fitted code Gaussian."""
    model = entry.model
    if model.variational and model.prior is None:
        d = model.latent_dim
        return np.zeros(d), np.eye(d)
    if model.variational:
        with torch.no_grad():
            mean, std = (t.double().cpu().numpy() for t in model.prior.moments())
        return mean, np.diag(std)
    return _code_gaussian(entry)


def _prior_draws(model: LatentModel, eps: np.ndarray, seed: int, temperature: float = 1.0) -> np.ndarray:
    """A VAE's prior draws (N, D) made from standard-normal ``eps``: T * eps under N(0, I); a learnt
    mixture also picks a component per draw, seeded by ``seed``."""
    if model.prior is None:
        return temperature * eps
    k = np.random.default_rng(seed).integers(len(model.prior.means), size=len(eps))
    device = next(model.parameters()).device
    with torch.no_grad():
        z = model.prior.sample(torch.from_numpy(eps).float().to(device), torch.from_numpy(k).to(device), temperature)
    return z.double().cpu().numpy()


def _dim_scores(entry: _Entry) -> np.ndarray:
    """(D,) average KL per dimension on the validation digits (VAE), or the codes' variance (AE).

    Under a learnt prior a single dimension's KL is not defined; the KL to the prior's Gaussian
    stand-in (``_prior``) ranks the dimensions the same way, and is the KL itself under N(0, I)."""
    def compute(e: _Entry) -> np.ndarray:
        if not e.model.variational:
            return _bundled_codes(e).astype(np.float64).var(0)
        x, y = _validation()
        mu, logvar = _encode(e.model, x.astype(np.float32) / 255.0, y)
        mean, scale = _prior(e)
        std = np.diag(scale)
        return gaussian_kl(torch.from_numpy((mu - mean) / std),
                           torch.from_numpy(logvar - 2 * np.log(std))).double().mean(0).numpy()
    return entry.extra("dim_scores", compute)


# ---------------------------------------------------------------------------------- reconstruct


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
    x = _as_digit(image)
    n_samples = _whole(n_samples, "The number of samples", 0, 64)
    label = _label(model, label)
    if model.conditional and label is None:
        label = _best_label(model, x)
    mu, logvar = _encode(model, x[None], label)
    with torch.no_grad():
        z = torch.from_numpy(mu).to(entry.device)
        y = _labels_t(label, 1, entry.device) if model.conditional else None
        logits = model.decode_logits(z, y)
        bce = float(bernoulli_nll(logits, _tensor(x, entry.device))[0])
        recon = torch.sigmoid(logits).float().cpu().numpy()[0, 0]
    sigma = np.exp(0.5 * logvar[0]) if logvar is not None else None
    if sigma is not None and n_samples:
        zs = mu + sigma * _normal((n_samples, model.latent_dim), seed=0)
        samples = _decode(model, zs, label)
    else:
        samples = np.zeros((0, 28, 28), np.float32)
    neg_elbo = percentile = None
    if model.variational:
        neg_elbo = float(_neg_elbo(model, x[None], label)[0])
        reference = _validation_neg_elbo(entry)
        percentile = 100.0 * np.searchsorted(reference, neg_elbo, side="left") / len(reference)
    codes = _bundled_codes(entry)
    dist = np.sqrt(np.maximum(((codes - mu[0]) ** 2).sum(1), 0.0))  # (10000,)
    nearest = np.argpartition(dist, 5)[:5]
    nearest = nearest[np.argsort(dist[nearest], kind="stable")]
    labels = _bundled()[1]
    return Reconstruction(
        input=x, recon=recon, samples=samples, error_map=recon - x, mu=mu[0],
        sigma=sigma, mse=float(np.mean((recon - x) ** 2)), bce_nats=bce, neg_elbo=neg_elbo,
        elbo_percentile=None if percentile is None else float(percentile),
        neighbours=[(int(i), int(labels[i]), float(dist[i])) for i in nearest], label_used=label,
    )


# ---------------------------------------------------------------------------------- sample


def sample(checkpoint: str, count: int = 16, temperature: float = 1.0, seed: int = 0,
           digit: int | None = None) -> np.ndarray:
    """Decoded draws z ~ N(0, T²I), (count, 28, 28); the same arguments give the same images.

    A learnt mixture prior picks a component per draw and scales its spread by T. An AE samples
    a Gaussian fitted to the bundled digits' codes instead (``checkpoint_info`` says so). A cvae
    draws ``digit``, or cycles 0..9 when it is None; other models ignore it.
    """
    entry = STORE.entry(checkpoint)
    model = entry.model
    count = _whole(count, "The number of samples", 1, 256)
    temperature = _number(temperature, "The temperature", 0.0, 5.0, lo_open=True)
    seed = _whole(seed, "The seed", 0, 2**31 - 1)
    digit = _label(model, digit)
    eps = _normal((count, model.latent_dim), seed).astype(np.float64)
    if model.variational:
        z = _prior_draws(model, eps, seed, temperature)
    else:
        mean, scale = _prior(entry)
        z = mean + temperature * eps @ scale.T  # (count, D)
    labels = None
    if model.conditional:
        labels = np.full(count, digit) if digit is not None else np.arange(count) % model.config.num_classes
    return _decode(model, z, labels)


@dataclass
class Reading:
    """What the digit classifier reads in each image."""

    labels: np.ndarray  # (N,) the most likely digit
    confidence: np.ndarray  # (N,) its probability
    threshold: float  # at or above it a reading counts as clear (the 0.9)

    @property
    def clear(self) -> np.ndarray:
        return self.confidence >= self.threshold


def _load_classifier(folder: Path, device: Any) -> tuple[torch.nn.Module, dict]:
    from .classifier import load_classifier

    return load_classifier(folder.name).to(device), {}


READERS = ModelStore(max_models=1, load=_load_classifier)  # the digit classifier, reloaded when saved again


def read_digits(images: np.ndarray, threshold: float = 0.9) -> Reading | None:
    """``classifier-mnist``'s reading of images (N, 28, 28) in [0, 1]; None when it is not installed
    or cannot be read, so the app still shows the images."""
    from .classifier import DEFAULT_NAME, classifier_available

    if not classifier_available(DEFAULT_NAME):
        return None
    try:
        reader = READERS.get(DEFAULT_NAME)
    except ValueError as e:
        log.warning("No digit classifier to read samples with: %s", e)
        return None
    probs = reader.predict_proba(np.asarray(images, dtype=np.float32))
    return Reading(probs.argmax(1), probs.max(1), threshold)


# ---------------------------------------------------------------------------------- interpolate


@dataclass
class Interpolation:
    lerp: np.ndarray  # (steps, 28, 28) decodes along the straight line
    slerp: np.ndarray  # (steps, 28, 28) decodes along the great circle
    lerp_norms: np.ndarray  # (steps,) ‖z‖ along the straight line
    slerp_norms: np.ndarray  # (steps,)
    t: np.ndarray  # (steps,) from 0 to 1
    label_used: int | None = None


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
    entry = STORE.entry(checkpoint)
    model = entry.model
    steps = _whole(steps, "The number of steps", 2, 64)
    xa, xb = _as_digit(a), _as_digit(b)
    label = _label(model, label)
    if model.conditional and label is None:
        label = _best_label(model, xa)
    mu, _ = _encode(model, np.stack([xa, xb]), label)
    z0, z1 = mu[0].astype(np.float64), mu[1].astype(np.float64)
    t = np.linspace(0.0, 1.0, steps)
    z_lerp = (1 - t)[:, None] * z0 + t[:, None] * z1
    z_slerp = slerp(z0, z1, t)
    images = _decode(model, np.concatenate([z_lerp, z_slerp]), label)
    return Interpolation(lerp=images[:steps], slerp=images[steps:], lerp_norms=np.linalg.norm(z_lerp, axis=1),
                         slerp_norms=np.linalg.norm(z_slerp, axis=1), t=t, label_used=label)


# ---------------------------------------------------------------------------------- traverse


@dataclass
class Traversal:
    images: np.ndarray  # (len(dims), steps, 28, 28)
    dims: list[int]
    values: np.ndarray  # (steps,) offsets in σ units
    label_used: int | None = None


def dims_by_kl(checkpoint: str) -> list[tuple[int, float]]:
    """(dimension, average KL in nats over the validation digits), largest first.

    An AE has no KL; its list ranks dimensions by the variance of the codes instead.
    """
    scores = _dim_scores(STORE.entry(checkpoint))
    order = np.argsort(-scores, kind="stable")
    return [(int(d), float(scores[d])) for d in order]


def _dims(value: Any, latent_dim: int) -> list[int]:
    items = [value] if isinstance(value, (int, float, str, np.integer)) else list(value)
    if not 1 <= len(items) <= 16:
        raise ValueError("Choose between 1 and 16 latent dimensions to traverse.")
    dims = [_whole(v, "A latent dimension", 0, latent_dim - 1) for v in items]
    if len(set(dims)) != len(dims):
        raise ValueError("Each latent dimension can be traversed only once; remove the repeats.")
    return dims


def traverse(checkpoint: str, image: Any, dims: Any = None, steps: int = 7, span: float = 3.0,
             label: int | None = None) -> Traversal:
    """Move a digit's code along single dimensions, from -span to +span σ, and decode each step.

    σ is the prior's (1 under N(0, I); the mixture's spread for a learnt prior) for a VAE and the
    spread of the bundled digits' codes for an AE.
    ``dims`` None picks the top min(8, D) dimensions by KL (VAE) or variance (AE).
    """
    entry = STORE.entry(checkpoint)
    model = entry.model
    steps = _whole(steps, "The number of steps", 2, 32)
    span = _number(span, "The span", 0.0, 10.0, lo_open=True)
    x = _as_digit(image)
    if dims is None:
        dims = [d for d, _ in dims_by_kl(checkpoint)[: min(8, model.latent_dim)]]
    else:
        dims = _dims(dims, model.latent_dim)
    label = _label(model, label)
    if model.conditional and label is None:
        label = _best_label(model, x)
    mu, _ = _encode(model, x[None], label)
    unit = np.diag(_prior(entry)[1]) if model.variational else np.sqrt(_dim_scores(entry))
    values = np.linspace(-span, span, steps)
    z = np.repeat(mu.astype(np.float64), len(dims) * steps, axis=0).reshape(len(dims), steps, -1)
    for row, d in enumerate(dims):
        z[row, :, d] += values * unit[d]
    images = _decode(model, z.reshape(len(dims) * steps, -1), label)
    return Traversal(images=images.reshape(len(dims), steps, 28, 28), dims=dims, values=values, label_used=label)


# ---------------------------------------------------------------------------------- latent maps


@dataclass(eq=False)
class LatentMap:
    """A 2-D map of the bundled digits' codes. Shared by every user: its arrays are read-only."""

    checkpoint: str
    method: str  # "pca" or "tsne"
    coords: np.ndarray  # (n, 2) float32
    labels: np.ndarray  # (n,) int64
    indices: np.ndarray  # (n,) into the bundled digits
    codes: np.ndarray  # (n, D) float32, the posterior means
    mean: np.ndarray | None = None  # (D,) PCA only
    components: np.ndarray | None = None  # (2, D) PCA only
    checkpoint_fingerprint: int = 0  # the weights' content hash; the disk copy is reused only while it matches
    spacing: float = 0.0  # median distance from a map point to its nearest neighbour
    seconds: float = 0.0  # time the projection took when it was computed
    from_disk: bool = False
    projection: Any = field(default=None, repr=False)  # PCAProjection or TSNEProjection

    @property
    def n(self) -> int:
        return len(self.coords)


_MAPS: OrderedDict[tuple, LatentMap] = OrderedDict()  # (folder, method, n) → map; read-only values
_MAPS_LOCK = threading.Lock()
_MAP_BUILDERS: dict[tuple, threading.Lock] = {}  # one builder per key; others wait for its result
MAX_MAPS = 16


def _map_indices(n: int) -> np.ndarray:
    """Which bundled digits a map of size n shows: all of them, or a fixed random subset."""
    total = len(_bundled()[0])
    if n >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(0).permutation(total)[:n])


def _map_path(folder: Path, method: str) -> Path:
    return folder / f"latent_map_{method}.npz"


def _freeze(m: LatentMap) -> LatentMap:
    for arr in (m.coords, m.labels, m.indices, m.codes, m.mean, m.components):
        if arr is not None:
            arr.setflags(write=False)
    return m


def _finish_map(m: LatentMap) -> LatentMap:
    if m.method == "pca":
        m.projection = PCAProjection.from_arrays(m.mean, m.components)
    else:
        m.projection = TSNEProjection.from_arrays(m.codes, m.coords)
    m.spacing = _median_nn_spacing(m.coords.astype(np.float64))
    return _freeze(m)


def _read_map(entry: _Entry, method: str, n: int) -> LatentMap | None:
    path = _map_path(entry.folder, method)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            if (int(f["format"]) != MAP_FORMAT or str(f["method"]) != method or int(f["n"]) != n
                    or int(f["checkpoint_fingerprint"]) != entry.fingerprint):
                return None
            arrays = {k: f[k] for k in ("coords", "labels", "indices", "codes")}
            pca = {k: f[k] for k in ("mean", "components")} if method == "pca" else {}
    except Exception as e:  # a damaged or foreign file is simply recomputed
        log.warning("ignoring %s: %s", path, e)
        return None
    d = entry.model.latent_dim
    if (arrays["coords"].shape != (n, 2) or arrays["codes"].shape != (n, d) or len(arrays["labels"]) != n
            or not np.isfinite(arrays["coords"]).all() or (pca and pca["components"].shape != (2, d))):
        return None
    m = LatentMap(entry.name, method, arrays["coords"].astype(np.float32), arrays["labels"].astype(np.int64),
                  arrays["indices"].astype(np.int64), arrays["codes"].astype(np.float32),
                  pca.get("mean"), pca.get("components"), entry.fingerprint, from_disk=True)
    return _finish_map(m)


def _write_map(entry: _Entry, m: LatentMap) -> Path | None:
    buf = io.BytesIO()
    extra = {"mean": m.mean, "components": m.components} if m.method == "pca" else {}
    np.savez_compressed(buf, format=MAP_FORMAT, method=m.method, n=m.n, checkpoint_fingerprint=np.int64(m.checkpoint_fingerprint),
                        coords=m.coords, labels=m.labels, indices=m.indices, codes=m.codes, **extra)
    path = _map_path(entry.folder, m.method)
    try:
        write_bytes_atomic(path, buf.getvalue())
    except OSError as e:  # a read-only checkpoints folder (e.g. a Space) keeps the map in memory only
        log.warning("could not cache the latent map at %s: %s", path, e)
        return None
    return path


def _report(progress: ProgressFn | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(fraction, message)


def _compute_map(entry: _Entry, method: str, n: int, progress: ProgressFn | None) -> LatentMap:
    _report(progress, 0.0, "Encoding the digits")
    codes_all = _bundled_codes(entry)
    indices = _map_indices(n)
    codes = np.ascontiguousarray(codes_all[indices])  # (n, D)
    labels = _bundled()[1][indices].copy()
    start = time.perf_counter()
    if method == "pca":
        _report(progress, 0.2, "Fitting PCA")
        proj = PCAProjection(2).fit(codes)
        coords = proj.transform(codes).astype(np.float32)
        pca = {"mean": proj.mean_.astype(np.float32), "components": proj.components_.astype(np.float32)}
    else:
        _report(progress, 0.1, f"Running t-SNE on {n:,} codes (15-30 s for 10,000 on a laptop CPU)")
        coords = TSNEProjection(max_iter=TSNE_MAX_ITER).fit_transform(codes).astype(np.float32)
        pca = {}
    seconds = time.perf_counter() - start
    m = _finish_map(LatentMap(entry.name, method, coords, labels, indices, codes, pca.get("mean"),
                              pca.get("components"), entry.fingerprint, seconds=seconds))
    if n == MAP_SIZE:  # only the full map goes to disk: a smaller one must never replace the shipped file
        _report(progress, 0.95, "Saving the map")
        _write_map(entry, m)
    _report(progress, 1.0, "Done")
    return m


def _subset_of_full_map(entry: _Entry, method: str, n: int) -> LatentMap | None:
    """A smaller map cut from the full one already in memory or on disk (same axes), or None."""
    if n >= MAP_SIZE:
        return None
    with _MAPS_LOCK:
        full = _MAPS.get((str(entry.folder), method, MAP_SIZE))
    if full is None or full.checkpoint_fingerprint != entry.fingerprint:
        full = _read_map(entry, method, MAP_SIZE)
    if full is None:
        return None
    pick = np.searchsorted(full.indices, _map_indices(n))  # the same digits a map of n would show
    m = LatentMap(entry.name, method, full.coords[pick].copy(), full.labels[pick].copy(), full.indices[pick].copy(),
                  full.codes[pick].copy(), full.mean, full.components, entry.fingerprint, from_disk=full.from_disk)
    return _finish_map(m)


def latent_map(checkpoint: str, method: str = "pca", n: int = MAP_SIZE, progress: ProgressFn | None = None) -> LatentMap:
    """The 2-D map of n bundled digits' codes; cached in memory and as checkpoints/<name>/latent_map_<method>.npz.

    ``progress(fraction, message)`` is called while a map is computed (t-SNE takes a while).
    """
    method = _method(method)
    n = _whole(n, "The number of digits on the map", MIN_MAP_SIZE, MAP_SIZE)
    entry = STORE.entry(checkpoint)
    key = (str(entry.folder), method, n)
    with _MAPS_LOCK:
        cached = _MAPS.get(key)
        if cached is not None and cached.checkpoint_fingerprint == entry.fingerprint:
            _MAPS.move_to_end(key)
            return cached
        builder = _MAP_BUILDERS.setdefault(key, threading.Lock())
    with builder:
        with _MAPS_LOCK:
            cached = _MAPS.get(key)
            if cached is not None and cached.checkpoint_fingerprint == entry.fingerprint:
                return cached
        m = _read_map(entry, method, n) or _subset_of_full_map(entry, method, n) or _compute_map(entry, method, n, progress)
        with _MAPS_LOCK:
            _MAPS[key] = m
            _MAPS.move_to_end(key)
            while len(_MAPS) > MAX_MAPS:
                _MAPS.popitem(last=False)
    return m


def precompute_maps(name: str, progress: ProgressFn | None = None) -> list[Path]:
    """Compute both maps of checkpoint ``name`` at full size and return the files written."""
    for method in METHODS:
        latent_map(name, method, MAP_SIZE, progress)
    folder = STORE.entry(name).folder
    return [p for p in (_map_path(folder, m) for m in METHODS) if p.is_file()]


def _map_for(checkpoint: str, method: str, n: Any) -> LatentMap:
    """The map to read coordinates against: size n, or (n None) the largest one in memory, else the full one."""
    method = _method(method)
    if n is not None:
        return latent_map(checkpoint, method, n)
    entry = STORE.entry(checkpoint)
    with _MAPS_LOCK:
        ready = [m for (folder, meth, _), m in _MAPS.items()
                 if folder == str(entry.folder) and meth == method and m.checkpoint_fingerprint == entry.fingerprint]
    return max(ready, key=lambda m: m.n) if ready else latent_map(checkpoint, method)


@dataclass
class DecodedPoint:
    image: np.ndarray  # (28, 28)
    z: np.ndarray  # (D,)
    far: bool  # no digit of the map lies near this point, so the decode is a guess
    label_used: int | None = None


def decode_at(checkpoint: str, method: str, x: float, y: float, *, n: int | None = None,
              label: int | None = None) -> DecodedPoint:
    """Decode the code behind a point of the map.

    PCA inverts exactly: z = mean + [x, y]·components. t-SNE has no inverse, so z is the
    inverse-distance-weighted mean of the k = 10 nearest map points' codes. ``far`` is set when
    the nearest map point is farther than 3× the map's median nearest-neighbour spacing. A cvae
    decodes with ``label``, or the label of the nearest map point.
    """
    m = _map_for(checkpoint, method, n)
    point = np.array([[_to_float(x, "The x coordinate"), _to_float(y, "The y coordinate")]])
    model = STORE.get(checkpoint)
    if m.method == "pca":
        z = m.projection.inverse_transform(point)
    else:
        z = m.projection.inverse(point)
    far = bool(far_from_map(m.coords, point, m.spacing)[0])
    label = _label(model, label)
    if model.conditional and label is None:
        label = int(m.labels[np.argmin(((m.coords - point.astype(np.float32)) ** 2).sum(1))])
    image = _decode(model, z, label)[0]
    return DecodedPoint(image=image, z=z[0].astype(np.float32), far=far, label_used=label)


def project_point(checkpoint: str, method: str, image: Any, *, n: int | None = None,
                  label: int | None = None) -> tuple[float, float]:
    """Where a digit lands on the map ("you are here"): exact for PCA, the weighted mean of its
    k nearest latent neighbours' positions for t-SNE."""
    m = _map_for(checkpoint, method, n)
    model = STORE.get(checkpoint)
    x = _as_digit(image)
    label = _label(model, label)
    if model.conditional and label is None:
        label = _best_label(model, x)
    mu, _ = _encode(model, x[None], label)
    xy = m.projection.transform(mu) if m.method == "pca" else m.projection.place(mu)
    return float(xy[0, 0]), float(xy[0, 1])


def prior_centres(checkpoint: str, method: str, *, n: int | None = None) -> np.ndarray | None:
    """Where the centres of a learnt mixture prior land on the map, (K, 2); None under N(0, I) or for
    an AE. Exact for PCA; for t-SNE each centre is placed among its nearest digits, as a new digit is."""
    model = STORE.get(checkpoint)
    if not model.variational or model.prior is None:
        return None
    m = _map_for(checkpoint, method, n)
    with torch.no_grad():
        means = model.prior.means.float().cpu().numpy()
    xy = m.projection.transform(means) if m.method == "pca" else m.projection.place(means)
    return np.asarray(xy, np.float32)


def manifold_grid(checkpoint: str, n: int = 15, span: float = 3.0, digit: int | None = None) -> np.ndarray:
    """Decodes over a 2-D latent plane, (n*28, n*28), like Kingma & Welling's figure 4.

    The grid is evenly spaced in probability, so the codes are Gaussian quantiles between
    -span and +span σ (of the prior for a VAE, of the fitted code Gaussian for an AE). The top
    row has the largest z₂. A cvae needs ``digit``.
    """
    entry = STORE.entry(checkpoint)
    model = entry.model
    if model.latent_dim != 2:
        raise ValueError(f"The manifold grid needs a model with a 2-D latent space; {checkpoint!r} has "
                         f"{model.latent_dim} dimensions.")
    n = _whole(n, "The grid size", 2, 40)
    span = _number(span, "The span", 0.0, 5.0, lo_open=True)
    digit = _label(model, digit)
    if model.conditional and digit is None:
        raise ValueError("A cvae draws one digit at a time; choose which digit (0-9) to show.")
    nd = NormalDist()
    lo = nd.cdf(-span)
    q = np.array([nd.inv_cdf(p) for p in np.linspace(lo, 1 - lo, n)])  # (n,)
    gx, gy = np.meshgrid(q, q[::-1])  # rows top to bottom: z2 from high to low
    eps = np.stack([gx.ravel(), gy.ravel()], axis=1)  # (n*n, 2)
    mean, scale = _prior(entry)
    images = _decode(model, mean + eps @ scale.T, digit)  # (n*n, 28, 28)
    return images.reshape(n, n, 28, 28).transpose(0, 2, 1, 3).reshape(n * 28, n * 28)


def health() -> dict:
    """Version, device, torch, the checkpoints loaded in memory, and whether training is on."""
    try:
        device = str(pick_device())
    except ValueError as e:
        device = f"unavailable ({e})"
    from .jobs import TRAINER, training_policy  # jobs builds on this module

    policy = training_policy()
    return {"status": "ok", "version": __version__, "device": device, "torch": torch.__version__,
            "cuda": torch.cuda.is_available(), "loaded_checkpoints": STORE.loaded(),
            "training_enabled": policy["enabled"], "training_busy": TRAINER.status()["busy"]}
