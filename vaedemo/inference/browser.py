"""What the page needs to decode in the browser: a checkpoint's ONNX files, and each map's way back from a
place to a code in a compact form the page's script mirrors exactly (``latent_map.js``, ``live_decode.js``).

The server decodes the same places with ``maps.decode_at``; ``tests/test_browser_live.py`` checks they agree.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from .. import onnx_export
from ..checkpoints import ensure_onnx
from ..projections import UMAP_NEIGHBOURS
from ..validation import whole
from .codec import decode, label_for
from .data import bundled
from .maps import LatentMap, full_map
from .sampling import MAX_SAMPLES
from .stats import bundled_codes, prior_draws
from .store import STORE

log = logging.getLogger(__name__)

FILES = {"decoder": onnx_export.DECODER, "encoder": onnx_export.ENCODER}
CODE_RANK = 32  # codes wider than this reach the page as their top principal components (see map_inverse)
TSNE_K = 10  # TSNEProjection's k, as maps.decode_at uses it
MAX_INVERSES = 6  # maps' inverses kept (about 1 MB each at most)
_INVERSES: dict[tuple, dict] = {}
_INVERSES_LOCK = threading.Lock()


def onnx_file(checkpoint: str, which: str) -> bytes:
    """The bytes of a checkpoint's ``decoder.onnx`` or ``encoder.onnx``: its files, made on first use for a
    checkpoint saved before they existed (in memory where the folder is read-only or the model was handed
    over in memory). ValueError when there is none (a GAN's encoder) or the model cannot be exported."""
    if which not in FILES:
        raise ValueError(f"There is no ONNX file {which!r}; ask for 'decoder' or 'encoder'.")
    entry = STORE.entry(checkpoint)
    fname = FILES[which]
    if not entry.in_memory:
        try:
            paths = ensure_onnx(entry.folder)
        except ValueError as e:
            log.info("ONNX files of %s made in memory: %s", checkpoint, e)
        else:
            if fname not in paths:
                raise ValueError(f"{checkpoint} has no {fname} (a GAN's encoder is a search the server runs).")
            return paths[fname].read_bytes()
    files = entry.extra("onnx_files", lambda e: onnx_export.export_files(e.model))
    if fname not in files:
        raise ValueError(f"{checkpoint} has no {fname} (a GAN's encoder is a search the server runs).")
    return files[fname]


def browser_model(checkpoint: str) -> dict:
    """What the page's script needs to run a checkpoint's decoder: its size, whether it takes a label, whether
    it has an encoder file, and a version that changes when the weights do (so a browser's cache never serves
    a retrained model's old file)."""
    entry = STORE.entry(checkpoint)
    model = entry.model
    version = f"{entry.fingerprint:x}" if not entry.in_memory else f"m{id(model):x}"
    return {
        "name": checkpoint,
        "latent_dim": int(model.latent_dim),
        "conditional": bool(model.conditional),
        "classes": int(getattr(model.config, "num_classes", 10)) if model.conditional else 0,
        "encoder": onnx_export.has_encoder(model),
        "version": version,
    }


def bundled_code_file(checkpoint: str) -> bytes:
    """The bundled digits' codes for the page's nearest-digit search while drawing (``live_sketch.js``): int32
    [N, D, r], then ``code_mean`` float32 (D), ``basis`` float32 (r, D), ``coeffs`` float16 (N, r) and the labels
    uint8 (N), little-endian; codes ≈ code_mean + coeffs · basis (``_low_rank``). 10,000 digits of a 200-D model
    come to about 0.7 MB. ValueError for a model without an encoder the page can run (a GAN)."""
    entry = STORE.entry(checkpoint)
    if not onnx_export.has_encoder(entry.model):
        raise ValueError(f"{checkpoint} has no encoder the page can run (a GAN's encoding is a search).")

    def make(e) -> bytes:
        codes = bundled_codes(e)
        mean, basis, coeffs = _low_rank(codes)
        head = np.array([len(codes), codes.shape[1], len(basis)], "<i4")
        return b"".join([head.tobytes(), mean.astype("<f4").tobytes(), basis.astype("<f4").tobytes(),
                         coeffs.astype("<f2").tobytes(), np.asarray(bundled()[1], np.uint8).tobytes()])

    return entry.extra("bundled_code_file", make)


def _low_rank(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean (D,), basis (r, D), coefficients (N, r)): codes ≈ mean + coefficients · basis, r ≤ CODE_RANK.

    A blend of codes is linear, so blending the coefficients and expanding once gives the blend of the
    (approximated) codes. For the shipped 200-D VAE, 32 components keep 99.95% of the codes' variance."""
    codes = np.asarray(codes, np.float64)
    mean = codes.mean(0)
    if codes.shape[1] <= CODE_RANK:
        return np.zeros_like(mean), np.eye(codes.shape[1]), codes
    _, _, vt = np.linalg.svd(codes - mean, full_matrices=False)
    basis = vt[:CODE_RANK]
    return mean, basis, (codes - mean) @ basis.T


def map_inverse(m: LatentMap) -> dict:
    """How the page turns a place (x, y) of map ``m`` into a code, the way ``maps.decode_at`` does (of the
    full map, whatever the drawn map's size), as numpy arrays:

    - PCA: ``mean`` (D,) and ``components`` (2, D): z = mean + [x, y]·components, exact.
    - t-SNE: ``coords`` (N, 2) and the codes; z = the inverse-distance-weighted mean of the codes of the
      ``k`` = 10 nearest map points (weights 1 / max(d, eps), ``TSNEProjection.inverse``).
    - UMAP: the same with k = 15 and weights 1 / (1 + a d^(2b)) (``UMAPProjection.inverse_transform``).

    The codes go as ``code_mean`` + ``coeffs`` (N, r) · ``basis`` (r, D) (``_low_rank``), so 10,000 codes of a
    200-D model stay within about 1 MB. A conditional model also gets every map point's ``labels``: the server
    decodes a place with the nearest digit's label.
    """
    full = full_map(m.checkpoint, m.method)
    key = (full.checkpoint, full.method, full.checkpoint_fingerprint, id(full))
    with _INVERSES_LOCK:
        if key in _INVERSES:
            return _INVERSES[key]
    out = inverse_of(full, conditional=bool(STORE.get(full.checkpoint).conditional))
    with _INVERSES_LOCK:
        while len(_INVERSES) >= MAX_INVERSES:  # the oldest first (dicts keep their order)
            del _INVERSES[next(iter(_INVERSES))]
        _INVERSES[key] = out
    return out


def inverse_of(full: LatentMap, *, conditional: bool = False) -> dict:
    """``map_inverse`` of a full map already at hand (its ``projection`` attached)."""
    out: dict = {"method": full.method}
    if full.method == "pca":
        out.update(mean=np.asarray(full.mean, np.float32), components=np.asarray(full.components, np.float32))
    else:
        code_mean, basis, coeffs = _low_rank(full.codes)
        out.update(
            coords=np.asarray(full.coords, np.float32),
            code_mean=code_mean.astype(np.float32),
            basis=basis.astype(np.float32),
            coeffs=coeffs.astype(np.float16),
        )
        if full.method == "tsne":
            out.update(k=TSNE_K, eps=1e-9 * max(full.projection.spacing_, 1e-12))
        else:
            a, b = (float(v) for v in full.umap_ab)
            out.update(k=UMAP_NEIGHBOURS, a=a, b=b)
    if conditional:
        out["labels"] = np.asarray(full.labels, np.uint8)
        if "coords" not in out:
            out["coords"] = np.asarray(full.coords, np.float32)
    return out


CODE_LIMIT = 1e4  # |z| above this is no code a model was trained near (and float32 sums stay finite)


def decode_codes(checkpoint: str, codes: Any, labels: Any = None) -> np.ndarray:
    """Pixel probabilities (N, 28, 28) for codes (N, D), or one code (D,), given as an array or nested lists:
    the server's answer where the page cannot decode, and /decode's for API clients that compute codes
    themselves (for instance from the inverse /latent_map ships). A conditional model needs labels: one for
    all the codes or one per code."""
    model = STORE.get(checkpoint)
    dim = model.latent_dim
    if isinstance(codes, (list, tuple)) and len(codes) > max(MAX_SAMPLES, dim):  # before building a huge array
        raise ValueError(f"The codes must be 1 to {MAX_SAMPLES} lists of {dim} numbers each, not {len(codes):,}.")
    try:
        z = np.asarray(codes, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"The codes must be a list of lists of {dim} numbers.") from None
    if z.ndim == 1:
        z = z[None]
    if z.ndim != 2 or z.shape[1] != dim or not 1 <= len(z) <= MAX_SAMPLES:
        raise ValueError(f"The codes must be 1 to {MAX_SAMPLES} lists of {dim} numbers each ({checkpoint}'s "
                         f"latent size), not an array of shape {z.shape}.")
    if not np.isfinite(z).all() or np.abs(z).max() > CODE_LIMIT:
        raise ValueError(f"The codes must be finite numbers within ±{CODE_LIMIT:g}.")
    y = None
    if model.conditional and labels is not None:
        y = [whole(v, "A label", 0, model.config.num_classes - 1) for v in np.ravel(np.asarray(labels, object))]
        if len(y) == 1:
            y = y * len(z)
        if len(y) != len(z):
            raise ValueError(f"Give one label for all the codes or one per code ({len(z)}), not {len(y)}.")
        y = np.asarray(y)
    return decode(model, z.astype(np.float32), y)


def sample_draws(checkpoint: str, count: int, seed: int, digit: int | None = None) -> dict:
    """The draws behind ``sampling.sample``'s grid at every temperature: its codes are z(T) = centre + T·offset,
    with the same seeded eps (and, for a learnt mixture, the same component per draw) whatever T is, as
    ``distributions.prior_draws`` makes them. Arrays ``centre`` and ``offset`` (count, D) float32, and the
    cvae's ``labels`` (count,) (None for other models), so the page re-decodes the grid as T moves."""
    entry = STORE.entry(checkpoint)
    model = entry.model
    count = whole(count, "The number of samples", 1, MAX_SAMPLES)
    seed = whole(seed, "The seed", 0, 2**31 - 1)
    centre = prior_draws(entry, count, seed, 0.0)  # (count, D): m_k, the fitted mean, or 0
    offset = prior_draws(entry, count, seed, 1.0) - centre  # (count, D): the draws' spread at T = 1
    labels = None
    if model.conditional:  # as sampling.sample labels them
        digit = label_for(model, digit)
        labels = np.full(count, digit) if digit is not None else np.arange(count) % model.config.num_classes
    return {
        "centre": centre.astype(np.float32),
        "offset": offset.astype(np.float32),
        "labels": None if labels is None else labels.astype(np.uint8),
    }
