"""Latent maps: every bundled digit's code projected to 2-D, and the reverse (a place on the map → a code).

One full map of all 10,000 digits per checkpoint and method (PCA, t-SNE, UMAP) is built (or read from
``checkpoints/<name>/latent_map_<method>.npz``) and a map of n digits is cut from it, so every size
shares the same axes and a restart never runs t-SNE or UMAP again for another size. A model registered
in memory (``vaedemo.serve(models=...)``) keeps its maps in memory only.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoints import write_bytes_atomic
from ..projections import PCAProjection, TSNEProjection, UMAPProjection, far_from_map, median_nn_spacing
from ..validation import to_float, whole
from .codec import decode, encode, label_for, resolve_label
from .data import MAP_SIZE, as_digit, bundled
from .stats import CODE_SOURCES, bundled_codes
from .store import STORE, Entry, KeyedLocks

log = logging.getLogger(__name__)

METHODS = ("pca", "tsne", "umap")
MIN_MAP_SIZE = 20
# With Barnes-Hut angle 0.8 (projections.TSNEProjection), 600 iterations map 10,000 codes in about 0.4x
# the time of scikit-learn's defaults and keep nearly as many 10-NN neighbours (BENCHMARKS.md, the latent map section).
TSNE_MAX_ITER = 600
MAP_FORMAT = 2  # 2: keyed by the weights' content hash, not their mtime
MAX_MAPS = 24  # full maps kept in memory (three per checkpoint)

ProgressFn = Callable[[float, str], Any]  # progress(fraction in [0, 1], message); gr.Progress fits


def check_method(method: Any) -> str:
    """'pca', 'tsne' or 'umap' (also 't-SNE', 'TSNE', 'UMAP'), else a sentence."""
    m = str(method or "").strip().lower().replace("-", "").replace("_", "")
    if m not in METHODS:
        raise ValueError(f"Unknown map method {str(method)[:40]!r}; use 'pca', 'tsne' or 'umap'.")
    return m


@dataclass(eq=False)
class LatentMap:
    """A 2-D map of the bundled digits' codes. Shared by every user: its arrays are read-only."""

    checkpoint: str
    method: str  # "pca", "tsne" or "umap"
    coords: np.ndarray  # (n, 2) float32
    labels: np.ndarray  # (n,) int64
    indices: np.ndarray  # (n,) into the bundled digits
    codes: np.ndarray  # (n, D) float32, the posterior means
    mean: np.ndarray | None = None  # (D,) PCA only
    components: np.ndarray | None = None  # (2, D) PCA only
    umap_ab: np.ndarray | None = None  # (2,) UMAP only: its low-dimensional kernel 1 / (1 + a d^2b)
    checkpoint_fingerprint: int = 0  # the weights' content hash; the disk copy is reused only while it matches
    spacing: float = 0.0  # median distance from a point of the full map to its nearest neighbour
    seconds: float = 0.0  # time the projection took when it was computed
    from_disk: bool = False
    projection: Any = field(default=None, repr=False)  # PCA-, TSNE- or UMAPProjection of the full map

    @property
    def n(self) -> int:
        return len(self.coords)


_MAPS: OrderedDict[tuple, LatentMap] = OrderedDict()  # (folder, method) → full map; read-only values
_MAPS_LOCK = threading.Lock()
_BUILDERS = KeyedLocks()  # one builder per (folder, method); others wait for its result


def clear_cache() -> None:
    """Forget the maps in memory (the files on disk stay): the next call reads or builds them again."""
    with _MAPS_LOCK:
        _MAPS.clear()


def map_indices(n: int) -> np.ndarray:
    """Which bundled digits a map of size n shows: all of them, or a fixed random subset (sorted)."""
    total = len(bundled()[0])
    if n >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(0).permutation(total)[:n])


def map_path(folder: Path, method: str) -> Path:
    return folder / f"latent_map_{method}.npz"


def _finish(m: LatentMap) -> LatentMap:
    """Attach the projection and spacing of a full map and make its arrays read-only."""
    if m.method == "pca":
        m.projection = PCAProjection.from_arrays(m.mean, m.components)
    elif m.method == "umap":
        m.projection = UMAPProjection.from_arrays(m.codes, m.coords, m.umap_ab)
    else:
        m.projection = TSNEProjection.from_arrays(m.codes, m.coords)
    m.spacing = median_nn_spacing(m.coords.astype(np.float64))
    for arr in (m.coords, m.labels, m.indices, m.codes, m.mean, m.components, m.umap_ab):
        if arr is not None:
            arr.setflags(write=False)
    return m


def _read(entry: Entry, method: str) -> LatentMap | None:
    if entry.in_memory:
        return None
    path = map_path(entry.folder, method)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            if (
                int(f["format"]) != MAP_FORMAT
                or str(f["method"]) != method
                or int(f["n"]) != MAP_SIZE
                or int(f["checkpoint_fingerprint"]) != entry.fingerprint
            ):
                return None
            arrays = {k: f[k] for k in ("coords", "labels", "indices", "codes")}
            pca = {k: f[k] for k in ("mean", "components")} if method == "pca" else {}
            ab = f["umap_ab"].astype(np.float64) if method == "umap" else None
    except Exception as e:  # a damaged or foreign file is simply recomputed
        log.warning("ignoring %s: %s", path, e)
        return None
    d, n = entry.model.latent_dim, MAP_SIZE
    if (
        arrays["coords"].shape != (n, 2)
        or arrays["codes"].shape != (n, d)
        or len(arrays["labels"]) != n
        or not np.isfinite(arrays["coords"]).all()
        or (pca and pca["components"].shape != (2, d))
        or (method == "umap" and (ab.shape != (2,) or not (ab > 0).all()))
    ):
        return None
    return _finish(
        LatentMap(
            entry.name,
            method,
            arrays["coords"].astype(np.float32),
            arrays["labels"].astype(np.int64),
            arrays["indices"].astype(np.int64),
            arrays["codes"].astype(np.float32),
            pca.get("mean"),
            pca.get("components"),
            ab,
            entry.fingerprint,
            from_disk=True,
        )
    )


def _cached_codes(entry: Entry) -> np.ndarray | None:
    """The bundled digits' codes from a cached map of all of them, or None (for stats.bundled_codes)."""
    for method in METHODS:
        m = _read(entry, method)
        if m is not None and np.array_equal(m.indices, np.arange(len(bundled()[1]))):
            return m.codes
    return None


CODE_SOURCES.append(_cached_codes)

def _write(entry: Entry, m: LatentMap) -> Path | None:
    if entry.in_memory:  # a model registered in memory has no folder to cache its maps in
        return None
    buf = io.BytesIO()
    extra = {"mean": m.mean, "components": m.components} if m.method == "pca" else {}
    if m.method == "umap":
        extra = {"umap_ab": m.umap_ab}
    np.savez_compressed(
        buf,
        format=MAP_FORMAT,
        method=m.method,
        n=m.n,
        checkpoint_fingerprint=np.int64(m.checkpoint_fingerprint),
        coords=m.coords,
        labels=m.labels,
        indices=m.indices,
        codes=m.codes,
        **extra,
    )
    path = map_path(entry.folder, m.method)
    try:
        write_bytes_atomic(path, buf.getvalue())
    except OSError as e:  # a read-only checkpoints folder (e.g. a Space) keeps the map in memory only
        log.warning("could not cache the latent map at %s: %s", path, e)
        return None
    return path


def _report(progress: ProgressFn | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(fraction, message)


def _compute(entry: Entry, method: str, progress: ProgressFn | None) -> LatentMap:
    _report(progress, 0.0, "Encoding the digits")
    codes = np.ascontiguousarray(bundled_codes(entry))  # (10000, D)
    labels = bundled()[1].copy()
    start = time.perf_counter()
    if method == "pca":
        _report(progress, 0.2, "Fitting PCA")
        proj = PCAProjection(2).fit(codes)
        coords = proj.transform(codes).astype(np.float32)
        pca = {"mean": proj.mean_.astype(np.float32), "components": proj.components_.astype(np.float32)}
    elif method == "umap":
        _report(progress, 0.1, f"Running UMAP on {len(codes):,} codes (10-60 s on a laptop CPU, once per model)")
        proj = UMAPProjection().fit(codes)
        coords = proj.embedding_.astype(np.float32)
        pca = {"umap_ab": proj.ab_}
    else:
        _report(progress, 0.1, f"Running t-SNE on {len(codes):,} codes (15-30 s on a laptop CPU, once per model)")
        coords = TSNEProjection(max_iter=TSNE_MAX_ITER).fit_transform(codes).astype(np.float32)
        pca = {}
    seconds = time.perf_counter() - start
    m = _finish(
        LatentMap(
            entry.name,
            method,
            coords,
            labels,
            np.arange(len(codes)),
            codes.copy(),
            pca.get("mean"),
            pca.get("components"),
            pca.get("umap_ab"),
            entry.fingerprint,
            seconds=seconds,
        )
    )
    _report(progress, 0.95, "Saving the map")
    _write(entry, m)
    _report(progress, 1.0, "Done")
    return m


def full_map(checkpoint: str, method: str = "pca", progress: ProgressFn | None = None) -> LatentMap:
    """The map of all 10,000 bundled digits: from memory, from the checkpoint's file, or built once."""
    method = check_method(method)
    entry = STORE.entry(checkpoint)
    key = (str(entry.folder), method)

    def cached() -> LatentMap | None:
        with _MAPS_LOCK:
            m = _MAPS.get(key)
            if m is not None and m.checkpoint_fingerprint == entry.fingerprint:
                _MAPS.move_to_end(key)
                return m
        return None

    m = cached()
    if m is not None:
        return m
    with _BUILDERS.hold(key):
        m = cached()
        if m is None:
            m = _read(entry, method) or _compute(entry, method, progress)
            with _MAPS_LOCK:
                _MAPS[key] = m
                while len(_MAPS) > MAX_MAPS:
                    _MAPS.popitem(last=False)
    return m


def latent_map(
    checkpoint: str, method: str = "pca", n: int = MAP_SIZE, progress: ProgressFn | None = None
) -> LatentMap:
    """The 2-D map of n bundled digits' codes: the full map's points for a fixed subset of the digits.

    ``progress(fraction, message)`` is called while a full map is computed (t-SNE takes a while).
    """
    method = check_method(method)
    n = whole(n, "The number of digits on the map", MIN_MAP_SIZE, MAP_SIZE)
    full = full_map(checkpoint, method, progress)
    if n >= full.n:
        return full
    pick = np.searchsorted(full.indices, map_indices(n))
    part = replace(
        full, coords=full.coords[pick], labels=full.labels[pick], indices=full.indices[pick], codes=full.codes[pick]
    )
    for arr in (part.coords, part.labels, part.indices, part.codes):
        arr.setflags(write=False)
    return part


def precompute_maps(name: str, progress: ProgressFn | None = None) -> list[Path]:
    """Compute every map (PCA, t-SNE, UMAP) of checkpoint ``name`` at full size and return the files written."""
    for method in METHODS:
        full_map(name, method, progress)
    folder = STORE.entry(name).folder
    return [p for p in (map_path(folder, m) for m in METHODS) if p.is_file()]


@dataclass
class DecodedPoint:
    image: np.ndarray  # (28, 28)
    z: np.ndarray  # (D,)
    far: bool  # no digit of the map lies near this point, so the decode is a guess
    label_used: int | None = None


def decode_at(
    checkpoint: str, method: str, x: float, y: float, *, n: int | None = None, label: int | None = None
) -> DecodedPoint:
    """Decode the code behind a point of the map.

    PCA inverts exactly: z = mean + [x, y]·components. t-SNE has no inverse, so z is the
    inverse-distance-weighted mean of the k = 10 nearest map points' codes (of the full map, so
    every size answers alike); UMAP's is approximate too (``UMAPProjection.inverse_transform``). ``far`` is
    set when the nearest map point is farther than 3× the map's median nearest-neighbour spacing. A cvae
    decodes with ``label``, or the label of the nearest map point. ``n`` is accepted for callers that name the
    map's size; it changes nothing.
    """
    m = full_map(checkpoint, method)
    point = np.array([[to_float(x, "The x coordinate"), to_float(y, "The y coordinate")]])
    model = STORE.get(checkpoint)
    z = map_codes(m, point)
    far = bool(far_from_map(m.coords, point, m.spacing)[0])
    label = label_for(model, label)
    if model.conditional and label is None:
        label = int(m.labels[np.argmin(((m.coords - point.astype(np.float32)) ** 2).sum(1))])
    image = decode(model, z, label)[0]
    return DecodedPoint(image=image, z=z[0].astype(np.float32), far=far, label_used=label)


def place_codes(m: LatentMap, codes: np.ndarray) -> np.ndarray:
    """Where codes (N, D) land on map ``m``, (N, 2): exact for PCA, among their nearest digits for t-SNE
    and UMAP (approximate)."""
    return np.asarray(m.projection.place(codes) if m.method == "tsne" else m.projection.transform(codes), np.float32)


def map_codes(m: LatentMap, xy: np.ndarray) -> np.ndarray:
    """The codes (N, D) behind map points (N, 2): exact for PCA, neighbour-weighted for t-SNE and UMAP."""
    return m.projection.inverse(xy) if m.method == "tsne" else m.projection.inverse_transform(xy)


def project_point(
    checkpoint: str, method: str, image: Any, *, n: int | None = None, label: int | None = None
) -> tuple[float, float]:
    """Where a digit lands on the map ("you are here"): exact for PCA, the weighted mean of its
    k nearest latent neighbours' positions for t-SNE."""
    m = full_map(checkpoint, method)
    model = STORE.get(checkpoint)
    x = as_digit(image)
    label = resolve_label(model, label, x)
    mu, _ = encode(model, x[None], label)
    xy = place_codes(m, mu)
    return float(xy[0, 0]), float(xy[0, 1])


def prior_centres(checkpoint: str, method: str, *, n: int | None = None) -> np.ndarray | None:
    """Where the centres of a learnt mixture prior land on the map, (K, 2); None under N(0, I) or for
    an AE. Exact for PCA; for t-SNE each centre is placed among its nearest digits, as a new digit is."""
    model = STORE.get(checkpoint)
    if not model.variational or model.prior is None:
        return None
    with torch.no_grad():
        means = model.prior.means.float().cpu().numpy()
    return place_codes(full_map(checkpoint, method), means)


CLOUD_SAMPLES = 200  # draws of z ~ q(z|x) shown around "your digit"
ELLIPSE_MASS = 0.95  # the PCA ellipse holds this much of q(z|x)'s projected mass


@dataclass
class PosteriorCloud:
    """Where q(z|x) of one digit lies on a map: its mean, draws from it, and (PCA) its covariance ellipse."""

    mean: np.ndarray  # (2,) the mean's place (the star)
    samples: np.ndarray  # (S, 2) draws z = mu + sigma * eps, each placed by the map's own rule
    ellipse: np.ndarray | None  # (K, 2) a closed outline, PCA only: W diag(sigma²) Wᵀ at ELLIPSE_MASS


def posterior_cloud(
    checkpoint: str, method: str, image: Any, *, samples: int = CLOUD_SAMPLES, seed: int = 0, label: int | None = None
) -> PosteriorCloud | None:
    """q(z|x) of a digit drawn on the map: None for an AE (its code is one point). PCA projects exactly, so
    its ellipse is the projected covariance; t-SNE and UMAP place each draw among its nearest digits."""
    from scipy.stats import chi2

    from .. import distributions

    m = full_map(checkpoint, method)
    model = STORE.get(checkpoint)
    samples = whole(samples, "The number of posterior samples", 1, 2000)
    x = as_digit(image)
    label = resolve_label(model, label, x)
    mu, logvar = encode(model, x[None], label)
    if logvar is None:
        return None
    sigma = np.exp(0.5 * logvar[0].astype(np.float64))  # (D,)
    eps = distributions.standard_normal((samples, model.latent_dim), seed).double().numpy()
    z = mu[0].astype(np.float64) + sigma * eps  # (S, D)
    ellipse = None
    if m.method == "pca":
        w = np.asarray(m.components, np.float64)  # (2, D)
        cov = (w * sigma**2) @ w.T  # (2, 2): the covariance of q(z|x) seen through the projection
        vals, vecs = np.linalg.eigh(cov)
        radius = np.sqrt(chi2.ppf(ELLIPSE_MASS, df=2))
        t = np.linspace(0, 2 * np.pi, 73)
        circle = np.stack([np.cos(t), np.sin(t)], 1)  # (K, 2)
        centre = place_codes(m, mu)[0].astype(np.float64)
        ellipse = (centre + radius * (circle * np.sqrt(np.clip(vals, 0, None))) @ vecs.T).astype(np.float32)
    return PosteriorCloud(place_codes(m, mu)[0], place_codes(m, z), ellipse)
