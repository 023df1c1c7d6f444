"""Files people can download: image grids, PNG bytes, animated GIFs, and Embedding Projector bundles."""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .images import to_pil

MAX_GRID_IMAGES = 100_000
MAX_SPRITE_SIDE = 8192  # the Embedding Projector's limit on sprite width and height


def _stack(images: np.ndarray) -> np.ndarray:
    """Float [0, 1] images (N, H, W); a (R, C, H, W) grid is flattened row-major."""
    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim == 4:
        arr = arr.reshape(-1, *arr.shape[2:])
    elif arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.size == 0:
        raise ValueError(f"Expected a stack of greyscale images (N, H, W), got shape {np.shape(images)}.")
    if len(arr) > MAX_GRID_IMAGES:
        raise ValueError(f"At most {MAX_GRID_IMAGES} images fit in one grid.")
    return np.clip(np.nan_to_num(arr), 0.0, 1.0)


def tile(images: np.ndarray, ncols: int | None = None, pad: int = 0) -> np.ndarray:
    """Tile images row-major into one float array (torchvision's make_grid), ``pad`` black pixels between
    tiles and none around them. ``ncols`` None → the grid's own column count for a (R, C, H, W) array,
    else a near-square grid."""
    from torch import from_numpy
    from torchvision.utils import make_grid

    if ncols is not None and (isinstance(ncols, bool) or not isinstance(ncols, (int, np.integer)) or ncols < 1):
        raise ValueError(f"The number of columns must be a whole number of at least 1, not {ncols!r}.")
    if isinstance(pad, bool) or not isinstance(pad, (int, np.integer)) or not 0 <= pad <= 64:
        raise ValueError(f"The padding must be a whole number from 0 to 64, not {pad!r}.")
    arr = _stack(images)
    n = len(arr)
    if ncols is None:
        ncols = np.shape(images)[1] if np.ndim(images) == 4 else math.ceil(math.sqrt(n))
    grid = make_grid(from_numpy(arr)[:, None], nrow=min(int(ncols), n), padding=int(pad), pad_value=0.0)
    grid = grid[0].numpy()  # (rows, cols); make_grid also pads the outer border: cut it off
    return grid[pad : grid.shape[0] - pad, pad : grid.shape[1] - pad] if pad else grid


def image_grid(images: np.ndarray, ncols: int | None = None, scale: int = 1, pad: int = 0) -> Image.Image:
    """``tile`` as a greyscale PIL image; ``scale`` enlarges with crisp pixels."""
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or not 1 <= scale <= 64:
        raise ValueError(f"The scale must be a whole number from 1 to 64, not {scale!r}.")
    return to_pil(tile(images, ncols, pad), scale)


def label_grid(grid: Image.Image, labels: Any, clear: Any, ncols: int, cell: int, gap: int) -> Image.Image:
    """A colour copy of an ``image_grid`` with each tile's label in its top-left corner: green for a
    clear reading, amber with a "?" for an unsure one. ``cell`` and ``gap`` are in output pixels."""
    from PIL import ImageDraw, ImageFont

    out = grid.convert("RGB")
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=max(10, cell // 6))
    for i, (label, ok) in enumerate(zip(labels, clear)):
        r, c = divmod(i, ncols)
        draw.text(
            (c * (cell + gap) + 3, r * (cell + gap) + 1),
            f"{int(label)}" if ok else f"{int(label)}?",
            fill=(63, 185, 80) if ok else (230, 160, 40),
            font=font,
        )
    return out


def captioned_row(tiles: list[Image.Image], captions: list[str], gap: int = 10, caption_px: int = 28) -> Image.Image:
    """Pictures side by side on white, each with its caption centred under it: one picture for a figure such
    as input, reconstruction and error map (one file to send instead of one per picture)."""
    from PIL import ImageDraw, ImageFont

    if not tiles or len(tiles) != len(captions):
        raise ValueError("Give one caption for each picture.")
    width = sum(t.width for t in tiles) + gap * (len(tiles) - 1)
    height = max(t.height for t in tiles) + caption_px
    out = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=max(10, caption_px * 3 // 5))
    x = 0
    for tile_img, caption in zip(tiles, captions):
        out.paste(tile_img.convert("RGB"), (x, 0))
        text = str(caption)
        while len(text) > 4 and draw.textlength(text, font=font) > tile_img.width:  # long model names
            text = text[:-2].rstrip() + "…"
        draw.text((x + tile_img.width / 2, height - caption_px / 2), text, fill=(40, 40, 40), font=font, anchor="mm")
        x += tile_img.width + gap
    return out


def stack(pictures: list[Image.Image], gap: int = 12) -> Image.Image:
    """Pictures one above the other on white, aligned on the left (so the top one's tiles start at x = 0)."""
    width = max(p.width for p in pictures)
    out = Image.new("RGB", (width, sum(p.height for p in pictures) + gap * (len(pictures) - 1)), (255, 255, 255))
    y = 0
    for p in pictures:
        out.paste(p.convert("RGB"), (0, y))
        y += p.height + gap
    return out


def to_png_bytes(pil: Image.Image) -> bytes:
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def animated_gif(
    frames: np.ndarray,
    path_or_bytes: str | Path | None = None,
    fps: float = 8,
    scale: int = 4,
    loop: bool = True,
    bounce: bool = False,
) -> bytes | Path:
    """An animated GIF of float frames (N, H, W): written to ``path_or_bytes`` (returns the path),
    or returned as bytes when that is None.

    ``bounce`` plays forward then back (a ping-pong loop for interpolations). Pillow merges
    consecutive identical frames, so a GIF of repeated frames has fewer frames than given.
    """
    arr = _stack(frames)
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or not 0.5 <= fps <= 50:
        raise ValueError(f"Frames per second must be a number from 0.5 to 50, not {fps!r}.")
    if bounce and len(arr) > 2:
        arr = np.concatenate([arr, arr[-2:0:-1]])
    images = [to_pil(f, scale) for f in arr]
    buf = io.BytesIO()
    repeat = {"loop": 0} if loop else {}  # loop=0: forever; without the key a GIF plays once
    images[0].save(
        buf,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=int(round(1000 / fps)),
        disposal=1,
        **repeat,
    )
    data = buf.getvalue()
    if path_or_bytes is None:
        return data
    path = Path(path_or_bytes)
    path.write_bytes(data)
    return path


def projector_bundle(
    codes: np.ndarray,
    labels: np.ndarray,
    images: np.ndarray,
    class_names: list[str] | None = None,
    indices: np.ndarray | None = None,
) -> dict[str, bytes]:
    """Files for https://projector.tensorflow.org: ``tensors.tsv`` (N rows of D values),
    ``metadata.tsv`` (a header, then one row per point), ``sprite.png`` (a square grid of the
    images in row-major order) and ``projector_config.json`` naming them.
    """
    codes = np.asarray(codes, dtype=np.float32)
    labels = np.asarray(labels)
    arr = _stack(images)
    if codes.ndim != 2 or not len(codes) == len(labels) == len(arr):
        raise ValueError(f"Need N codes, N labels and N images; got {codes.shape}, {labels.shape}, {arr.shape}.")
    n, d = codes.shape
    side = math.ceil(math.sqrt(n))
    h, w = arr.shape[1:]
    if side * max(h, w) > MAX_SPRITE_SIDE:
        raise ValueError(
            f"Too many images for one sprite ({n}); the projector allows {(MAX_SPRITE_SIDE // max(h, w)) ** 2}."
        )
    indices = np.arange(n) if indices is None else np.asarray(indices)

    buf = io.StringIO()
    np.savetxt(buf, codes, fmt="%.6g", delimiter="\t")
    names = [class_names[int(c)] if class_names else str(c) for c in labels]
    # With two or more columns the projector reads the first row as column names.
    metadata = "label\tindex\n" + "".join(f"{name}\t{int(i)}\n" for name, i in zip(names, indices))
    sprite = image_grid(arr, ncols=side)
    if sprite.size != (side * w, side * h):  # fewer images than a full square: pad with black
        full = Image.new("L", (side * w, side * h))
        full.paste(sprite, (0, 0))
        sprite = full
    config = {
        "embeddings": [
            {
                "tensorName": "vaedemo latent codes",
                "tensorShape": [n, d],
                "tensorPath": "tensors.tsv",
                "metadataPath": "metadata.tsv",
                "sprite": {"imagePath": "sprite.png", "singleImageDim": [w, h]},
            }
        ]
    }
    return {
        "tensors.tsv": buf.getvalue().encode(),
        "metadata.tsv": metadata.encode(),
        "sprite.png": to_png_bytes(sprite),
        "projector_config.json": json.dumps(config, indent=2).encode(),
    }


def zip_bytes(files: dict[str, bytes]) -> bytes:
    """Pack named files into one zip in memory (e.g. a projector bundle for one download)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()
