"""Live decoding widgets: the pieces every tab's in-browser decoding shares (live_decode.js runs the models with
onnxruntime-web; live_grid.js draws a grid or a digit under sliders), and the server's decode they fall back to."""

from __future__ import annotations

import base64
from typing import Any

import gradio as gr
import numpy as np

from .. import zerogpu
from ..inference import browser
from .shared import STATIC_ROUTE, need, read_static

LIVE_HEAD = f'<script src="{STATIC_ROUTE}/ort/ort.wasm.min.js"></script>'  # onnxruntime-web, for live_decode.js


def page_head() -> str:
    """The page's <head> additions: onnxruntime-web and live_decode.js, whose runtime (about 15 MB of WASM to
    compile and start, seconds on a slow machine) then loads while the visitor is still on the first tab rather
    than when a live widget first appears."""
    return LIVE_HEAD + "<script>" + read_static("live_decode.js") + "</script>"


def b64_array(values: np.ndarray) -> str:
    """An array's bytes, little-endian, as base64 (what live_decode.js reads with f32 / f16 / bytes)."""
    values = np.asarray(values)
    return base64.b64encode(np.ascontiguousarray(values.astype(values.dtype.newbyteorder("<"))).tobytes()).decode()


@zerogpu.gpu("sample")
def decode_codes(request: Any) -> list[list[float]]:
    """The live widgets' fallback where the page cannot decode: ``{"checkpoint", "z": rows of D numbers,
    "labels"}`` → one row of 784 probabilities (rounded to 1/1000) per code. (A gr.HTML server function
    takes one argument.)"""
    request = request if isinstance(request, dict) else {}
    try:
        images = browser.decode_codes(need(request.get("checkpoint")), request.get("z"), request.get("labels"))
    except ValueError as e:
        raise gr.Error(str(e)) from None
    return np.round(images.reshape(len(images), -1).astype(np.float64), 3).tolist()


def live_html(stem: str, elem_id: str, server_function) -> gr.HTML:
    """A gr.HTML that runs ``static/<stem>.js`` (with its .html and .css) after live_decode.js, falling back to
    ``server_function`` where the page cannot run the model."""
    return gr.HTML(
        value=None,
        html_template=read_static(f"{stem}.html"),
        css_template=read_static(f"{stem}.css"),
        js_on_load=read_static("live_decode.js") + read_static(f"{stem}.js"),
        head=LIVE_HEAD,
        elem_id=elem_id,
        apply_default_css=False,
        server_functions=[server_function],
    )


def live_widget(elem_id: str) -> gr.HTML:
    """A live decoding widget (live_grid.html / .js): the Sample grid's temperature, or traversal sliders."""
    return live_html("live_grid", elem_id, decode_codes)


