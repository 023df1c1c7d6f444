"""Turning whatever people upload or draw into an MNIST-style 28x28 digit.

Owns safe image loading (size and decompression-bomb limits) and MNIST framing.
"""

from __future__ import annotations

import io
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageFilter, ImageOps

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_IMAGE_PIXELS = 50_000_000
WORK_SIDE = 1024  # long side we shrink to before the per-pixel work, for speed

_FORMATS_HINT = "Upload a PNG, JPEG, GIF, BMP or WebP of a digit."
BLANK_SENTENCE = "The image looks blank — draw or upload a digit."


class BlankImageError(ValueError):
    """The picture holds no digit (an empty canvas, a white page): a sketchpad just cleared, not a mistake."""

    def __init__(self, message: str = BLANK_SENTENCE):
        super().__init__(message)


def configure_pillow() -> None:
    """Process-wide Pillow settings for a server that decodes visitors' pictures; called by the app's setup.

    ``load_image`` enforces the same limits on its own, so library users need not call this.
    """
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a half-uploaded file is an error, not a grey digit
    # Pillow only warns between 1x and 2x the limit; make that an error wherever an image is decoded.
    warnings.simplefilter("error", Image.DecompressionBombWarning)


def _unreadable(reason: str) -> ValueError:
    return ValueError(f"This file is not an image we can read ({reason}). {_FORMATS_HINT}")


def _read_bytes(source: str | os.PathLike | bytes | bytearray | memoryview) -> bytes:
    """Read a path or bytes, refusing oversize files before reading them into memory."""
    path = None
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        size = len(data)
    else:
        path = Path(source)
        if not path.is_file():
            raise _unreadable("the file could not be found")
        size = path.stat().st_size
    if size > MAX_UPLOAD_BYTES:
        raise ValueError(
            f"The file is {size / 2**20:.1f} MB, larger than the "
            f"{MAX_UPLOAD_BYTES / 2**20:.3g} MB limit; upload a smaller image."
        )
    if path is not None:
        data = path.read_bytes()
    if not data:
        raise _unreadable("the file is empty")
    head = data[:1024].lstrip().lower()
    if b"<svg" in head or (head.startswith(b"<?xml") and b"svg" in data[:4096].lower()):
        raise _unreadable("SVG drawings are not supported, only pixel images")
    return data


def load_image(source: Any, max_side: int | None = None) -> Image.Image:
    """Open a path, bytes, PIL image or array safely: size limits, bomb check, EXIF rotation, first frame.

    With ``max_side``, JPEGs are decoded at reduced resolution (``Image.draft``) when possible.
    """
    if isinstance(source, Image.Image):
        return _orient(source)
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if not isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)):
        kind = type(source).__name__
        raise ValueError(f"Cannot read an image from a value of type '{kind}'; give a picture, path or bytes.")
    data = _read_bytes(source)
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x the limit; we want a hard stop there too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.width * img.height > MAX_IMAGE_PIXELS:  # checked before decoding, whatever Pillow's setting
                raise Image.DecompressionBombError(f"({img.width * img.height} pixels)")
            if max_side and img.format == "JPEG":
                img.draft(None, (max_side, max_side))
            img.load()  # truncated files only fail here, not in open()
            return _orient(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f" ({int(found.group(1)) / 1e6:.0f} million)" if found else ""
        raise ValueError(
            f"The image is too large in pixels{size}; the limit is "
            f"{MAX_IMAGE_PIXELS / 1e6:.0f} million pixels, so upload a smaller picture."
        ) from None
    except Image.UnidentifiedImageError:
        raise _unreadable("it is not in a picture format we recognise") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        truncated = "truncat" in str(exc).lower()
        raise _unreadable("the file is truncated or damaged" if truncated else "the file is damaged") from None


def _orient(img: Image.Image) -> Image.Image:
    """Undo phone-camera rotation stored in EXIF (only copying when there is one)."""
    try:
        if img.getexif().get(0x0112, 1) != 1:
            return ImageOps.exif_transpose(img)
    except Exception:  # broken EXIF is common; the pixels are still fine
        pass
    return img


def _from_array(arr: np.ndarray) -> Image.Image:
    """Numpy (H,W[,1|3|4]) of uint8/uint16/bool/float/int -> PIL image (L, RGB, RGBA or F)."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.size == 0:
        raise ValueError("The image is empty (it has no pixels) — draw or upload a digit.")
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ValueError(f"Expected a greyscale or colour picture, but got an array of shape {arr.shape}.")
    if arr.dtype == np.uint8:
        return Image.fromarray(np.ascontiguousarray(arr))
    if arr.dtype == bool:
        arr = arr.astype(np.float32)
    elif np.issubdtype(arr.dtype, np.integer):
        top = arr.max(initial=0)
        arr = arr.astype(np.float32) / (255.0 if top <= 255 and arr.dtype != np.uint16 else 65535.0)
    elif np.issubdtype(arr.dtype, np.floating):
        arr = np.nan_to_num(arr.astype(np.float32))
        if arr.max(initial=0) > 1.0:  # float in [0, 255]
            arr = arr / 255.0
    else:
        raise ValueError(f"Cannot read an image from an array of type {arr.dtype}.")
    arr = np.clip(arr, 0.0, 1.0)
    if arr.ndim == 2:
        return Image.fromarray(arr.astype(np.float32), "F")
    return Image.fromarray(np.round(arr * 255).astype(np.uint8))


def _from_editor(value: dict) -> Image.Image | None:
    """Gradio Sketchpad/ImageEditor dict: the composite, else the layers over the background."""
    if value.get("composite") is not None:
        return load_image(value["composite"])
    parts = [value.get("background")] + list(value.get("layers") or [])
    parts = [load_image(p).convert("RGBA") for p in parts if p is not None]
    if not parts:
        return None
    canvas = Image.new("RGBA", parts[0].size, (0, 0, 0, 0))
    for part in parts:
        layer = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
        layer.paste(part, (0, 0))
        canvas = Image.alpha_composite(canvas, layer)
    return canvas


def _ink_map(img: Image.Image) -> np.ndarray:
    """Float (H,W) image where larger means 'more ink', shrunk to WORK_SIDE, polarity not yet fixed."""
    mode = img.mode
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info:
        work = img.convert("RGBA")
        alpha = np.asarray(work.getchannel("A"))
        # Real transparency: strokes live in alpha (Sketchpad draws black on a clear canvas).
        if (alpha < 128).mean() > 0.01 or alpha.max() == 0:
            work = work.getchannel("A")
        else:
            work = work.convert("RGB").convert("L")
    elif mode.startswith("I"):
        work = img.convert("I")
    elif mode == "F":
        work = img
    else:  # L, 1, P, RGB, CMYK, YCbCr, ...: luminance is what the eye reads as ink
        work = img.convert("RGB").convert("L") if mode not in ("L", "RGB") else img.convert("L")
    factor = math.ceil(max(work.size) / WORK_SIDE)
    if factor > 1:
        work = work.reduce(factor)  # box average: cheap and anti-aliased
    arr = np.asarray(work, dtype=np.float32)
    if work.mode == "I":
        arr = arr / (65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0)
    elif work.mode == "F":
        arr = arr / 255.0 if arr.max(initial=0) > 1.0 else arr
    else:
        arr = arr / 255.0
    return np.clip(np.nan_to_num(arr), 0.0, 1.0)


def _clean(arr: np.ndarray) -> np.ndarray:
    """Make ink bright on black: fix polarity, remove paper level and noise, scale ink peak to 1."""
    h, w = arr.shape
    b = max(1, round(0.03 * min(h, w)))
    border = np.concatenate([arr[:b].ravel(), arr[-b:].ravel(), arr[:, :b].ravel(), arr[:, -b:].ravel()])
    if np.median(border) > 0.5:  # dark ink on light paper
        arr, border = 1.0 - arr, 1.0 - border
    level = float(np.median(border))
    noise = 1.4826 * float(np.median(np.abs(border - level)))  # robust sigma, ignores ink on the edge
    arr = arr - level
    if noise > 0.01:  # speckle would stretch the bounding box; a 3x3 median removes it
        arr = np.asarray(Image.fromarray(arr, "F").filter(ImageFilter.MedianFilter(3)))
    arr = np.where(arr > max(4.0 * noise, 0.04), arr, 0.0)
    ink = arr[arr > 0]
    if ink.size < 2:
        raise BlankImageError()
    peak = float(np.percentile(ink, 99))
    if peak < 0.08:
        raise BlankImageError()
    return np.clip(arr / peak, 0.0, 1.0).astype(np.float32)


def _frame(arr: np.ndarray) -> np.ndarray:
    """MNIST framing: bounding box into 20x20 (aspect kept), centre of mass at the 28x28 centre."""
    rows, cols = np.nonzero(arr.any(axis=1))[0], np.nonzero(arr.any(axis=0))[0]
    crop = arr[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    s = 20.0 / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    small = np.asarray(Image.fromarray(crop, "F").resize(size, Image.Resampling.LANCZOS))
    small = np.clip(small, 0.0, None)  # Lanczos rings slightly below zero
    mass = small.sum()
    if mass <= 0:
        raise BlankImageError()
    ys, xs = np.indices(small.shape)
    # Measured on MNIST: the centre of mass sits at (14.0, 14.0) in 0-based pixel coordinates.
    top = int(round(14.0 - (ys * small).sum() / mass))
    left = int(round(14.0 - (xs * small).sum() / mass))
    out = np.zeros((28, 28), np.float32)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + small.shape[0], 28), min(left + small.shape[1], 28)
    out[y0:y1, x0:x1] = small[y0 - top : y1 - top, x0 - left : x1 - left]
    return np.clip(out / max(out.max(), 1e-6), 0.0, 1.0)


def preprocess_image(image: Any) -> np.ndarray:
    """Any upload or drawing -> float32 (28, 28) in [0, 1], white digit on black, framed like MNIST."""
    if image is None:
        raise BlankImageError()
    if isinstance(image, dict):
        img = _from_editor(image)
        if img is None:
            raise BlankImageError()
    else:
        img = load_image(image, max_side=WORK_SIDE)
    w, h = img.size
    if min(w, h) == 0:
        raise ValueError("The image is empty (it has no pixels) — draw or upload a digit.")
    if min(w, h) < 8 or max(w, h) > 40 * min(w, h):
        raise ValueError(
            f"The image is {w}×{h} pixels, too small or too thin to hold a digit; upload a larger picture."
        )
    return _frame(_clean(_ink_map(img)))


def to_pil(array28: np.ndarray, scale: int = 1) -> Image.Image:
    """Float [0, 1] (H, W) -> greyscale PIL image, nearest-neighbour enlarged so pixels stay crisp."""
    arr = np.asarray(array28, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"Expected a 2-D greyscale array, got shape {arr.shape}.")
    if int(scale) < 1:
        raise ValueError(f"The scale must be a whole number of at least 1, got {scale}.")
    img = Image.fromarray(np.round(np.clip(np.nan_to_num(arr), 0, 1) * 255).astype(np.uint8), "L")
    if scale > 1:
        img = img.resize((img.width * int(scale), img.height * int(scale)), Image.Resampling.NEAREST)
    return img
