"""What every tab's handlers share: errors as sentences, named outputs, model lists, digit pictures, downloads.

No torch here: pictures are numpy and PIL, and the backend is ``vaedemo.inference``.
"""

from __future__ import annotations

import functools
import html
import inspect
import io
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from .. import exports, inference
from ..images import to_pil

log = logging.getLogger(__name__)

DIGIT_SCALE = 8  # 28 px → 224 px on screen, nearest-neighbour
SPRITE_COLS = 100  # the digit sprite is 100 × 100 tiles of 28 px
STATIC_DIR = Path(__file__).resolve().parents[1] / "static"  # the page's HTML, CSS, JS and texts
STATIC_ROUTE = "vaedemo-static"  # the page's own files (server.py); relative, so the app also works under a sub-path
NONE_CHOICE = ("— none —", "")
EXPORT_DIR = Path(tempfile.gettempdir()) / "vaedemo-downloads"
EXPORT_TTL_S = 3600

_OOPS = (
    "Something went wrong on the server ({kind}). Try again, or pick another model; the details are in the server log."
)


# ---------------------------------------------------------------------------------- errors


def as_gr_error(exc: Exception) -> gr.Error:
    """ValueError → its sentence; anything else → a generic sentence (the traceback goes to the log)."""
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, ValueError):
        return gr.Error(str(exc))
    log.error("handler failed", exc_info=exc)
    return gr.Error(_OOPS.format(kind=type(exc).__name__))


def friendly(fn):
    """Wrap a handler (function or generator) so that every failure reaches the user as a gr.Error."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise as_gr_error(exc) from None

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise as_gr_error(exc) from None

    return wrapper


class Outputs:
    """A tab's output components by name. Handlers return ``{name: value}`` (names left out keep their
    value); ``bind(handler)`` turns that into Gradio's ``{component: value}``, so no tuple order has to
    be kept in step with a list of outputs."""

    def __init__(self, **components: Any):
        self.components = components

    def __iter__(self):
        return iter(self.components.values())

    def __getitem__(self, name: str) -> Any:
        return self.components[name]

    def only(self, *names: str) -> Outputs:
        return Outputs(**{n: self.components[n] for n in names})

    def _map(self, values: dict) -> dict | tuple:
        if not values:  # nothing changes; Gradio reads an empty dict as one value, so skip each output
            return tuple(gr.skip() for _ in self.components)
        return {self.components[name]: value for name, value in values.items()}

    def bind(self, fn: Callable) -> Callable:
        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def gen_wrapper(*args, **kwargs):
                for values in fn(*args, **kwargs):
                    yield self._map(values)

            return gen_wrapper

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            return self._map(fn(*args, **kwargs))

        return wrapper


def event_data(evt: gr.EventData | None) -> dict:
    data = getattr(evt, "_data", None)
    return data if isinstance(data, dict) else {}


# ---------------------------------------------------------------------------------- model lists


def choices() -> list[tuple[str, str]]:
    return inference.checkpoint_choices()


def pick(current: Any, options: list[tuple[str, str]], prefer: tuple[str, ...] = ("VAE",)) -> str | None:
    """Keep ``current`` if it still exists, else the first checkpoint whose label shows a preferred kind.

    A visitor's run is never preselected while any other checkpoint exists: one visitor's 1-epoch model
    must not become every new visitor's default."""
    names = [name for _, name in options]
    if current in names:
        return current
    others = [(label, name) for label, name in options if not label.endswith(inference.VISITOR_MARK)] or options
    for kind in prefer:
        for label, name in others:
            if f"· {kind} ·" in label:
                return name
    return others[0][1] if others else None


def refresh_checkpoint(current: Any = None):
    options = choices()
    return gr.update(choices=options, value=pick(current, options))


def refresh_compare(current: Any = None):
    options = choices()
    value = current if current in [n for _, n in options] else ""
    return gr.update(choices=[NONE_CHOICE, *options], value=value)


def need(checkpoint: Any) -> str:
    if not checkpoint:
        raise ValueError("Choose a model first; if the list is empty, train one in the Train tab.")
    return checkpoint


def info(checkpoint: Any) -> dict:
    return inference.checkpoint_info(need(checkpoint))


# ---------------------------------------------------------------------------------- pictures


def digit(arr: np.ndarray, scale: int = DIGIT_SCALE) -> Image.Image:
    return to_pil(arr, scale)


def here_digit(here: Any) -> Image.Image:
    """The Reconstruct tab's digit (the session's ``here`` state) as a picture for another tab's input."""
    if here is None:
        raise gr.Error("Reconstruct a digit first (upload, draw or pick one on the Reconstruct tab).")
    return digit(np.asarray(here, np.float32))


def bundled_thumb(index: int, scale: int = 3) -> Image.Image:
    return digit(inference.bundled()[0][index].astype(np.float32) / 255.0, scale)


def read_static(name: str) -> str:
    return (STATIC_DIR / name).read_text(encoding="utf-8")


def sprite_thumbs(items: list[tuple[int, str]], scale: int = 3) -> str:
    """Bundled digits as HTML thumbnails cut from the page's digit sprite (``sprite_png``, served once and cached
    by the browser), each with its caption: no picture file to send per digit. Captions are escaped."""
    size = 28 * scale
    cells = []
    for index, caption in items:
        row, col = divmod(int(index), SPRITE_COLS)
        cells.append(
            f'<figure class="vd-thumb" data-index="{int(index)}"><div style="width:{size}px;height:{size}px;'
            f"background:#000 url({STATIC_ROUTE}/digits.png) -{col * size}px -{row * size}px / "
            f'{SPRITE_COLS * size}px auto no-repeat"></div>'
            f"<figcaption>{html.escape(str(caption))}</figcaption></figure>"
        )
    return f'<div class="vd-thumbs">{"".join(cells)}</div>'


def strip(images: np.ndarray, scale: int = 3, ncols: int | None = None) -> Image.Image:
    return exports.image_grid(images, ncols=ncols or len(images), scale=scale, pad=2)


def error_image(error: np.ndarray, scale: int = DIGIT_SCALE) -> Image.Image:
    """Signed error (28, 28) → RGB: white if equal, red where the reconstruction adds ink, blue where it lacks it."""
    e = np.clip(np.nan_to_num(np.asarray(error, np.float32)), -1.0, 1.0)
    extra, missing = np.clip(e, 0, 1), np.clip(-e, 0, 1)
    rgb = np.ones(e.shape + (3,), np.float32)
    rgb[..., 0] -= missing
    rgb[..., 1] -= extra + missing
    rgb[..., 2] -= extra
    img = Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB")
    return img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)


@functools.lru_cache(maxsize=1)
def sprite_png() -> bytes:
    """All bundled digits as one PNG sprite (row-major, SPRITE_COLS per row), for hover thumbnails."""
    digits = inference.bundled()[0].astype(np.float32) / 255.0  # (10000, 28, 28)
    buf = io.BytesIO()
    exports.image_grid(digits, ncols=SPRITE_COLS).save(buf, format="PNG", compress_level=6)  # no slow optimize pass
    return buf.getvalue()


# ---------------------------------------------------------------------------------- downloads

_export_lock = threading.Lock()


def sweep_exports(max_age_s: float = EXPORT_TTL_S, now: float | None = None) -> int:
    """Remove download folders older than ``max_age_s``; only regular files directly inside our own folders
    are deleted, never through a symlink. Returns how many files went."""
    removed = 0
    now = time.time() if now is None else now
    if EXPORT_DIR.is_symlink() or not EXPORT_DIR.is_dir():
        return 0
    for old in EXPORT_DIR.iterdir():
        try:
            if old.is_symlink() or not old.is_dir() or now - old.lstat().st_mtime <= max_age_s:
                continue
            for f in old.iterdir():
                if f.is_symlink() or f.is_file():
                    f.unlink(missing_ok=True)  # unlinking a symlink removes the link, not its target
                    removed += 1
            old.rmdir()
        except OSError:
            pass
    return removed


def export_path(filename: str) -> Path:
    """A fresh folder under the system temp dir for one download (Gradio copies it into its cache);
    folders older than an hour are removed on the way."""
    with _export_lock:
        if EXPORT_DIR.is_symlink():  # planted by someone else: never write or delete through it
            EXPORT_DIR.unlink()
        EXPORT_DIR.mkdir(parents=True, exist_ok=True)
        sweep_exports()
        folder = Path(tempfile.mkdtemp(dir=EXPORT_DIR))
    return folder / filename
