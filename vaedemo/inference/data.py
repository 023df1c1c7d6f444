"""The digits every feature reads: the 10,000 bundled ones, the validation split, and a visitor's own.

Loaded once and read-only, shared by every request.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from ..data import bundled_digits, load_dataset
from ..images import BlankImageError, preprocess_image
from ..validation import whole

MAP_SIZE = 10_000  # digits on a latent map: all the bundled ones


@lru_cache(maxsize=1)
def bundled() -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 bundled digits, loaded once and read-only: uint8 (N, 28, 28), int64 (N,)."""
    x, y = bundled_digits()
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


@lru_cache(maxsize=1)
def validation() -> tuple[np.ndarray, np.ndarray]:
    """mnist-10k's validation split (1,000 digits), the reference for the -ELBO percentile."""
    ds = load_dataset("mnist-10k")
    ds.x_val.setflags(write=False)
    ds.y_val.setflags(write=False)
    return ds.x_val, ds.y_val


def bundled_digit(index: Any) -> np.ndarray:
    """Bundled digit number ``index`` (0..9999) as float32 (28, 28) in [0, 1]."""
    x, _ = bundled()
    return x[whole(index, "The digit number", 0, len(x) - 1)].astype(np.float32) / 255.0


def digit_input(source: Any) -> np.ndarray:
    """An upload, sketch dict, file path, PIL image or array → float32 (28, 28) in [0, 1], framed like MNIST.

    An int picks bundled digit number ``source`` (0..9999) as it is, without re-framing.
    """
    if isinstance(source, (int, np.integer)) and not isinstance(source, bool):
        return bundled_digit(source)
    return preprocess_image(source)


def as_digit(image: Any) -> np.ndarray:
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
        raise BlankImageError()
    return arr
