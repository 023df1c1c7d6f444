"""Gradio components the tabs share: crisp digit images that reach the cache whole, number fields that answer
bad API values with a sentence, and the small layout helpers every tab uses."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
import gradio.component_meta as component_meta
from PIL import Image

from ..images import MAX_UPLOAD_BYTES
from ..validation import quote

_NAME_SECRET = secrets.token_hex(16)  # per process: an output's URL cannot be guessed from its picture alone


@contextlib.contextmanager
def _no_stub_file():
    """Gradio writes a .pyi copy of the defining module for every Component subclass; not into our package."""
    original = component_meta.create_or_modify_pyi
    component_meta.create_or_modify_pyi = lambda *args, **kwargs: None
    try:
        yield
    finally:
        component_meta.create_or_modify_pyi = original


def png_in_cache(value: Any, cache_dir: str) -> Any:
    """A PIL picture → the path of a PNG copy in Gradio's cache, written under a temporary name and renamed
    into place; anything else is returned as it is.

    Gradio's own save_pil_to_cache rewrites its content-addressed file in place, so when two users get the
    same picture at the same moment (the same seed, the same manifold, a popular neighbour) one of them
    could be served a half-written file. Found by the 20-user load test. The folder name is a keyed hash
    (a secret per process, as Gradio's own paths have), so holding the same picture does not give its URL.
    """
    if not isinstance(value, Image.Image):
        return value
    buf = io.BytesIO()
    value.save(buf, format="PNG")
    data = buf.getvalue()
    path = Path(cache_dir) / hashlib.blake2b(data, key=_NAME_SECRET.encode(), digest_size=32).hexdigest() / "image.png"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".image.png.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    return str(path)


def number_or_error(payload: Any, label: str | None, optional: bool) -> Any:
    """Gradio compares a number field's raw JSON value with its bounds, so null, text or a list from an
    API client would fail there with an empty error; answer them with a sentence instead."""
    if payload is None and optional:
        return None
    if isinstance(payload, bool) or not isinstance(payload, (int, float)):
        raise gr.Error(f"“{label or 'This setting'}” must be a number, not {quote(payload)}.")
    if isinstance(payload, int) and abs(payload) > 2**53:  # beyond a float's exact range: no honest setting
        raise gr.Error(f"“{label or 'This setting'}” must be a number of a sensible size, not {quote(payload)}.")
    return payload  # NaN and ±inf go on: the bounds or the backend's checks answer them with a sentence


with _no_stub_file():

    class PictureOut(gr.Image):
        """gr.Image whose PIL values reach Gradio's cache whole (see png_in_cache)."""

        def get_block_name(self) -> str:
            return "image"

        def postprocess(self, value):
            return super().postprocess(png_in_cache(value, self.GRADIO_CACHE))

    class GalleryOut(gr.Gallery):
        """gr.Gallery whose PIL items reach Gradio's cache whole (see png_in_cache)."""

        def get_block_name(self) -> str:
            return "gallery"

        def postprocess(self, value):
            if isinstance(value, list):
                value = [
                    (png_in_cache(v[0], self.GRADIO_CACHE), *v[1:])
                    if isinstance(v, tuple)
                    else png_in_cache(v, self.GRADIO_CACHE)
                    for v in value
                ]
            return super().postprocess(value)

    class DigitImage(PictureOut):
        """gr.Image that hands the upload's path to vaedemo.images untouched.

        gr.Image would open the file with PIL itself, so a damaged or hostile file would fail inside
        Gradio with a bare traceback; vaedemo.images reads it with size limits and clear sentences.
        """

        def get_block_name(self) -> str:
            return "image"

        def preprocess(self, payload):
            if payload is None:
                return None
            url = getattr(payload, "url", None) or ""
            if url.startswith("data:"):  # an API client may send a data URL instead of uploading
                body = url.partition(",")[2]
                if len(body) > MAX_UPLOAD_BYTES * 4 // 3 + 4:
                    raise gr.Error("The image is larger than the upload limit; send a smaller picture.")
                try:
                    return base64.b64decode(body)
                except ValueError:
                    raise gr.Error("The data URL does not hold base64 image data.") from None
            if not payload.path:
                raise gr.Error("No image arrived; upload it again.")
            return str(payload.path)

    class NumberSlider(gr.Slider):
        """gr.Slider that refuses a value that is not a number with a sentence (see number_or_error)."""

        def get_block_name(self) -> str:
            return "slider"

        def preprocess(self, payload):
            return super().preprocess(number_or_error(payload, self.label, optional=False))

    class NumberBox(gr.Number):
        """gr.Number that refuses a value that is not a number (or empty) with a sentence."""

        def get_block_name(self) -> str:
            return "number"

        def preprocess(self, payload):
            return super().preprocess(number_or_error(payload, self.label, optional=True))


def checkpoint_dropdown(choices, label="Model", info=None, elem_id=None, value=None):
    # allow_custom_value: Gradio checks a value against the choices known when the page was built,
    # so without it an API client could not use a checkpoint trained since; the backend checks names.
    from .shared import pick

    return gr.Dropdown(
        choices=choices,
        value=value if value is not None else pick(None, choices),
        label=label,
        info=info,
        elem_id=elem_id,
        interactive=True,
        allow_custom_value=True,
    )


def out_image(label, elem_id=None, height=None, **kw):
    """A read-only digit picture with crisp pixels and a download button."""
    kw.setdefault("buttons", ["download"])
    return PictureOut(
        label=label,
        type="pil",
        format="png",
        interactive=False,
        elem_id=elem_id,
        elem_classes=["digit"],
        height=height,
        **kw,
    )


def strip_image(caption, elem_id=None, **kw):
    """A wide, short image (a row of digits) with its caption above it: a label inside would hide the digits."""
    gr.Markdown(f"**{caption}**", elem_classes=["vd-caption"])
    kw.setdefault("buttons", [])  # a download badge would cover the last digit
    return out_image(caption, elem_id, show_label=False, **kw)


def digit_picker(image_label: str, index_label: str, index: int):
    """An optional upload, a dataset index, and a button that copies the Reconstruct tab's digit."""
    image = DigitImage(
        label=f"{image_label} (optional upload)",
        type="filepath",
        sources=["upload", "clipboard"],
        format="png",
        height=160,
    )
    number = NumberBox(value=index, label=index_label, precision=None)
    here = gr.Button("Use my Reconstruct digit", size="sm")
    return image, number, here
