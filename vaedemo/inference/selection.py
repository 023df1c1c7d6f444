"""Acting on a selection of map digits: what is in it, its codes as CSV, and attribute vectors.

An attribute vector is the mean code of one selection minus the mean code of another (or of every other
digit), as in White's "Sampling generative networks" (2016, sec. 2.4): added to a digit's code with a
strength s, it moves the digit from the second group towards the first (s = 1 is the whole gap).
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..validation import number, quote, whole
from .codec import decode, encode, resolve_label
from .data import MAP_SIZE, as_digit, bundled, digit_input
from .stats import bundled_codes
from .store import STORE

STRENGTHS = tuple(float(s) for s in np.linspace(-3.0, 3.0, 7))  # the strip: −3 to +3
MAX_STRENGTHS = 32
MAX_STRENGTH = 3.0
NOISE_RATIO = 2.0  # ‖Δ‖² under this many times what chance alone gives → "mostly noise"


def check_indices(value: Any, what: str, allow_empty: bool = False) -> np.ndarray:
    """Digit numbers from a list, an array, or text such as "3, 17, 42" or "[3, 17]": sorted, unique int64."""
    if value is None or (isinstance(value, str) and not value.strip()):
        items: list = []
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > 12 * MAP_SIZE:
            raise ValueError(f"{what} is too long: give at most {MAP_SIZE:,} digit numbers.")
        if text.startswith("["):
            try:
                items = json.loads(text)
            except ValueError:
                raise ValueError(f"{what} must be digit numbers separated by commas, not {quote(value)}.") from None
            if not isinstance(items, list):
                raise ValueError(f"{what} must be a list of digit numbers, not {quote(value)}.")
        else:
            items = [part for part in re.split(r"[\s,;]+", text) if part]
    elif isinstance(value, (list, tuple, np.ndarray)):
        items = list(np.asarray(value).reshape(-1)) if isinstance(value, np.ndarray) else list(value)
    else:
        raise ValueError(f"{what} must be a list of digit numbers, not {quote(value)}.")
    if len(items) > MAP_SIZE:
        raise ValueError(f"{what} holds {len(items):,} numbers; at most {MAP_SIZE:,} digits can be selected.")
    indices = np.unique(np.array([whole(v, f"A digit number in {what.lower()}", 0, MAP_SIZE - 1) for v in items],
                                 dtype=np.int64))
    if not len(indices) and not allow_empty:
        raise ValueError(f"{what} is empty: select some digits on the map first (lasso or box).")
    return indices


@dataclass
class Selection:
    """Some bundled digits, with what a grid of them says."""

    indices: np.ndarray  # (n,) sorted bundled indices
    labels: np.ndarray  # (n,)
    images: np.ndarray  # (n, 28, 28) float in [0, 1]

    @property
    def counts(self) -> dict[int, int]:
        """How many of each label, for labels present."""
        values, counts = np.unique(self.labels, return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts)}

    def summary(self) -> str:
        """e.g. "42 digits: 1×30 · 7×12"."""
        return f"{len(self.indices):,} digits: " + " · ".join(f"{k}×{v}" for k, v in self.counts.items())


def selection(indices: Any) -> Selection:
    """The bundled digits ``indices`` (a list or text of digit numbers)."""
    idx = check_indices(indices, "The selection")
    x, y = bundled()
    return Selection(idx, y[idx].copy(), x[idx].astype(np.float32) / 255.0)


def selection_csv(checkpoint: str, indices: Any) -> bytes:
    """CSV of the selection: one row per digit with its number, label and code (z0, z1, ...)."""
    sel = selection(indices)
    codes = bundled_codes(STORE.entry(checkpoint))[sel.indices]  # (n, D)
    buf = io.StringIO()
    buf.write(",".join(["index", "label", *(f"z{d}" for d in range(codes.shape[1]))]) + "\n")
    for i, label, code in zip(sel.indices, sel.labels, codes):
        buf.write(f"{int(i)},{int(label)}," + ",".join(f"{float(v):.6g}" for v in code) + "\n")
    return buf.getvalue().encode()


@dataclass
class AttributeVector:
    """mean(A) − mean(B) in latent space, and how much of it is more than noise."""

    direction: np.ndarray  # (D,) mean code of A minus mean code of B
    n_a: int
    n_b: int
    separation: float  # ‖Δ‖ over the two groups' pooled spread along Δ (a d′); below 1 they overlap
    noise_ratio: float  # ‖Δ‖² over its expected value if A and B were random groups of one population
    b_is_rest: bool = False  # B was "every other digit"

    @property
    def noisy(self) -> bool:
        return self.noise_ratio < NOISE_RATIO or self.separation < 1.0

    def note(self) -> str:
        """One sentence on whether the direction is worth following."""
        other = "every other digit" if self.b_is_rest else "the second selection"
        if self.noise_ratio < NOISE_RATIO:
            return (f"**Mostly noise:** the means of the selection ({self.n_a}) and {other} ({self.n_b}) differ "
                    f"hardly more than two random groups of these sizes would ({self.noise_ratio:.1f}× chance), "
                    "so this direction moves digits about at random; select more, or more different, digits.")
        if self.separation < 1.0:
            return (f"**Mostly noise:** the two means are closer than the groups' spread along the direction "
                    f"(d′ = {self.separation:.2f}), so the selections overlap and the change will be faint.")
        return (f"A clear direction: the two means are {self.separation:.1f} spreads apart along it "
                f"({self.noise_ratio:.0f}× what chance gives), from {self.n_b} digits towards {self.n_a}.")


def attribute_from_codes(codes_a: np.ndarray, codes_b: np.ndarray, b_is_rest: bool = False) -> AttributeVector:
    """The attribute vector of two groups of codes (n_a, D) and (n_b, D), each with at least 2 codes."""
    a, b = np.asarray(codes_a, np.float64), np.asarray(codes_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError("Both selections' codes must be (N, D) arrays of one latent size.")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("An attribute vector needs at least 2 digits in each selection.")
    delta = a.mean(0) - b.mean(0)  # (D,)
    # Under "no difference", E‖Δ‖² = tr(Σ_a)/n_a + tr(Σ_b)/n_b: the noise of two sample means.
    chance = a.var(0, ddof=1).sum() / len(a) + b.var(0, ddof=1).sum() / len(b)
    norm = float(np.linalg.norm(delta))
    unit = delta / norm if norm > 0 else delta
    pa, pb = a @ unit, b @ unit  # each code's position along Δ
    pooled = np.sqrt(((len(a) - 1) * pa.var(ddof=1) + (len(b) - 1) * pb.var(ddof=1)) / (len(a) + len(b) - 2))
    separation = norm / pooled if pooled > 0 else (np.inf if norm > 0 else 0.0)
    ratio = norm**2 / chance if chance > 0 else (np.inf if norm > 0 else 0.0)
    return AttributeVector(delta, len(a), len(b), float(separation), float(ratio), b_is_rest)


def attribute_vector(checkpoint: str, a: Any, b: Any = None) -> AttributeVector:
    """Selection ``a``'s mean code minus selection ``b``'s (empty or None: every digit not in ``a``)."""
    ia = check_indices(a, "The first selection")
    ib = check_indices(b, "The second selection", allow_empty=True)
    rest = not len(ib)
    if rest:
        ib = np.setdiff1d(np.arange(MAP_SIZE), ia)
    codes = bundled_codes(STORE.entry(checkpoint))
    return attribute_from_codes(codes[ia], codes[ib], b_is_rest=rest)


def check_strengths(value: Any) -> np.ndarray:
    """Strengths from −3 to +3: a number, a list, or text such as "-3, 0, 3"; empty → the strip's seven."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return np.array(STRENGTHS)
    if isinstance(value, str):
        text = value.strip().strip("[]")
        items: list = [part for part in re.split(r"[\s,;]+", text) if part]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    if not 1 <= len(items) <= MAX_STRENGTHS:
        raise ValueError(f"Give from 1 to {MAX_STRENGTHS} strengths, not {len(items)}.")
    return np.array([number(v, "A strength", -MAX_STRENGTH, MAX_STRENGTH) for v in items])


@dataclass
class Attributed:
    """A digit moved along an attribute vector."""

    images: np.ndarray  # (S, 28, 28), one per strength
    strengths: np.ndarray  # (S,)
    vector: AttributeVector
    label_used: int | None = None


def attribute_start(checkpoint: str, image: Any, vector: AttributeVector,
                    label: int | None = None) -> tuple[np.ndarray, int | None]:
    """The code an attribute vector moves: z(image) as float64 (D,), and the label a CVAE used for it."""
    model = STORE.get(checkpoint)
    if len(vector.direction) != model.latent_dim:
        raise ValueError("This attribute vector was made with another model; build it again for this one.")
    x = digit_input(int(image)) if isinstance(image, (int, np.integer)) and not isinstance(image, bool) \
        else as_digit(image)
    label = resolve_label(model, label, x)
    mu, _ = encode(model, x[None], label)
    return mu[0].astype(np.float64), label


def apply_attribute(checkpoint: str, image: Any, vector: AttributeVector, strengths: Any = None,
                    label: int | None = None) -> Attributed:
    """Decode z(image) + s·Δ for each strength s; ``image`` is a digit number (0-9999) or a picture."""
    s = check_strengths(strengths)
    z0, label = attribute_start(checkpoint, image, vector, label)
    z = z0[None] + s[:, None] * vector.direction[None]  # (S, D)
    return Attributed(decode(STORE.get(checkpoint), z, label), s, vector, label)


def attribute(checkpoint: str, a: Any, b: Any, image: Any, strengths: Any = None) -> Attributed:
    """Build the vector from selections ``a`` and ``b`` and apply it to ``image``: what /attribute returns."""
    return apply_attribute(checkpoint, image, attribute_vector(checkpoint, a, b), strengths)
